/**
 * Real etcd servers for tests: child processes with temp data dirs and free ports, stopped by PID.
 *
 * ```ts
 * await using etcd = await startEtcd();                 // 127.0.0.1, free ports
 * await using e2 = await startEtcd({ netns: ul, host: "192.168.77.1" });  // inside a namespace
 * await etcd.stop(); await etcd.restart();              // same ports and data
 * ```
 *
 * @module
 */
import { withNetns } from "../../ffi/mod.ts";
import { terminateChild } from "../../src/cli/lab.ts";

/** Options of {@linkcode startEtcd}. */
export interface EtcdOptions {
  /** Run inside this network namespace (name or path). */
  netns?: string;
  /** Listen address. Default 127.0.0.1. */
  host?: string;
  /** Client port; default a free one. */
  clientPort?: number;
  /** Peer port; default a free one. */
  peerPort?: number;
  /** Member name. */
  name?: string;
  /** `--initial-cluster` for multi-member clusters. */
  initialCluster?: string;
  /** Extra flags. */
  extraArgs?: string[];
  /** TLS: serve clients over https with these files and require client certificates signed by `ca`. */
  tls?: { cert: string; key: string; ca: string };
}

/** A running (or stopped) etcd member. */
export interface EtcdServer extends AsyncDisposable {
  /** Client URL, e.g. `http://127.0.0.1:23791`. */
  readonly endpoint: string;
  /** Peer URL. */
  readonly peerUrl: string;
  /** Member name. */
  readonly name: string;
  /** Current pid (changes on restart). */
  readonly pid: number;
  /** Data directory. */
  readonly dataDir: string;
  /** Stops the member with SIGTERM (SIGKILL after 5 s); keeps its data. */
  stop(): Promise<void>;
  /** Kills the member with SIGKILL; keeps its data. */
  kill(): Promise<void>;
  /** Starts the member again on the same ports and data. */
  restart(): Promise<void>;
  /** Stops it for good and removes its data. */
  close(): Promise<void>;
}

/** A free TCP port on 127.0.0.1 (the kernel picks it). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/** Runs etcdctl (v3 API) against `endpoint` and returns stdout; throws on failure. */
export async function etcdctl(
  endpoint: string,
  args: string[],
  opts: { netns?: string } = {},
): Promise<string> {
  const cmd = () =>
    new Deno.Command("etcdctl", {
      args: [`--endpoints=${endpoint}`, ...args],
      env: { ETCDCTL_API: "3" },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
  const child = opts.netns ? withNetns(opts.netns, cmd) : cmd();
  const out = await child.output();
  const dec = new TextDecoder();
  if (out.code !== 0) throw new Error(`etcdctl ${args.join(" ")}: ${dec.decode(out.stderr).trim()}`);
  return dec.decode(out.stdout);
}

async function healthy(endpoint: string, tls: EtcdOptions["tls"], netns?: string): Promise<boolean> {
  try {
    const extra = tls ? [`--cacert=${tls.ca}`, `--cert=${tls.cert}`, `--key=${tls.key}`] : [];
    await etcdctl(endpoint, [...extra, "--command-timeout=1s", "endpoint", "health"], netns ? { netns } : {});
    return true;
  } catch {
    return false;
  }
}

/** Starts one etcd member and waits until it answers (unless `wait` is false, for cluster members). */
export async function startEtcd(opts: EtcdOptions = {}, wait = true): Promise<EtcdServer> {
  const host = opts.host ?? "127.0.0.1";
  const clientPort = opts.clientPort ?? freePort();
  const peerPort = opts.peerPort ?? freePort();
  const name = opts.name ?? `e${clientPort}`;
  const scheme = opts.tls ? "https" : "http";
  const endpoint = `${scheme}://${host}:${clientPort}`;
  const peerUrl = `http://${host}:${peerPort}`;
  const dataDir = await Deno.makeTempDir({ prefix: "weft-etcd-" });
  const args = [
    `--name=${name}`,
    `--data-dir=${dataDir}`,
    `--listen-client-urls=${endpoint}`,
    `--advertise-client-urls=${endpoint}`,
    `--listen-peer-urls=${peerUrl}`,
    `--initial-advertise-peer-urls=${peerUrl}`,
    `--initial-cluster=${opts.initialCluster ?? `${name}=${peerUrl}`}`,
    "--initial-cluster-state=new",
    "--log-level=error",
    ...(opts.tls
      ? [
        `--cert-file=${opts.tls.cert}`,
        `--key-file=${opts.tls.key}`,
        `--trusted-ca-file=${opts.tls.ca}`,
        "--client-cert-auth",
      ]
      : []),
    ...(opts.extraArgs ?? []),
  ];
  let child: Deno.ChildProcess | undefined;
  const spawn = () => {
    const make = () =>
      new Deno.Command("etcd", { args, stdin: "null", stdout: "null", stderr: "piped" }).spawn();
    child = opts.netns ? withNetns(opts.netns, make) : make();
    // Drain stderr so etcd never blocks on a full pipe.
    child.stderr.pipeTo(new WritableStream()).catch(() => {});
  };
  const waitHealthy = async () => {
    const end = Date.now() + 15_000;
    while (Date.now() < end) {
      if (await healthy(endpoint, opts.tls, opts.netns)) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    throw new Error(`etcd ${name} did not become healthy at ${endpoint}`);
  };
  const terminate = async (signal: Deno.Signal) => {
    if (!child) return;
    const c = child;
    child = undefined;
    await terminateChild(c, signal);
  };
  spawn();
  if (wait) {
    try {
      await waitHealthy();
    } catch (err) {
      await terminate("SIGKILL");
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
      throw err;
    }
  }
  const server: EtcdServer = {
    endpoint,
    peerUrl,
    name,
    dataDir,
    get pid() {
      return child?.pid ?? 0;
    },
    stop: () => terminate("SIGTERM"),
    kill: () => terminate("SIGKILL"),
    async restart() {
      await terminate("SIGTERM");
      args.splice(args.indexOf("--initial-cluster-state=new"), 1, "--initial-cluster-state=existing");
      spawn();
      await waitHealthy();
    },
    async close() {
      await terminate("SIGKILL");
      await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    },
    [Symbol.asyncDispose]() {
      return this.close();
    },
  };
  return server;
}

/** A 3-member (or `size`) etcd cluster on loopback. */
export async function startEtcdCluster(size = 3): Promise<EtcdServer[] & AsyncDisposable> {
  const ports = Array.from({ length: size }, () => ({ client: freePort(), peer: freePort() }));
  const initialCluster = ports.map((p, i) => `m${i}=http://127.0.0.1:${p.peer}`).join(",");
  const members = await Promise.all(
    ports.map((p, i) =>
      startEtcd({ name: `m${i}`, clientPort: p.client, peerPort: p.peer, initialCluster }, false)
    ),
  );
  const all = Object.assign(members, {
    async [Symbol.asyncDispose]() {
      await Promise.all(members.map((m) => m.close()));
    },
  });
  const end = Date.now() + 20_000;
  for (const m of members) {
    while (!(await healthy(m.endpoint, undefined))) {
      if (Date.now() > end) {
        await all[Symbol.asyncDispose]();
        throw new Error("etcd cluster did not become healthy");
      }
      await new Promise((r) => setTimeout(r, 150));
    }
  }
  return all;
}
