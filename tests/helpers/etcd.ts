/**
 * Real etcd servers for tests: `/usr/bin/etcd` child processes on free ports with temp data dirs,
 * always stopped by PID and cleaned up (also when a test fails or the test process exits).
 *
 * ```ts
 * await using etcd = await startEtcd();                  // http://127.0.0.1:<free port>
 * etcd.endpoint; etcd.endpoints; etcd.pid; etcd.dataDir;
 * await etcd.etcdctl(["put", "/k", "v"]);                // etcdctl with this server's TLS/auth flags
 * await etcd.stop(); await etcd.restart();               // SIGTERM; same ports and data
 * await etcd.kill();                                     // SIGKILL, data kept
 * await etcd.compact();                                  // compact to the current revision
 *
 * await using tls = await startEtcd({ tls: true });      // https, client certificates required;
 * tls.certs!.clientCert; tls.certs!.rogueCert;           // certs made with openssl in its temp dir
 *
 * await using auth = await startEtcd();
 * await enableEtcdAuth(auth, "rootpw");                  // user root, auth on; etcdctl() logs in
 *
 * await using members = await startEtcdCluster(3);       // 3 members on loopback
 * members.endpoints; await members[0]!.kill(); await members[0]!.restart();
 *
 * await using e2 = await startEtcd({ netns: ul, host: "192.168.77.1" });  // inside a namespace
 * ```
 *
 * Every server is closed by `await using` (SIGKILL + data dir removed). As a safety net, servers still
 * running when the test process exits are SIGKILLed by PID and their directories removed.
 *
 * @module
 */
import { DEFAULT_ETCD_PREFIX } from "../../src/lease/etcd/options.ts";
import { skipUnless } from "./skip.ts";
import { withNetns } from "../../ffi/mod.ts";
import { terminateChild } from "../../src/lab/lab.ts";

/** Certificates made by {@linkcode generateEtcdCerts} (paths, PEM). */
export interface EtcdCerts {
  /** The CA that signed the server and client certificates; etcd trusts it for clients. */
  ca: string;
  /** Server certificate with SAN IP 127.0.0.1 (and the `host` given). */
  serverCert: string;
  /** Server key. */
  serverKey: string;
  /** A client certificate signed by `ca` (CN weft). */
  clientCert: string;
  /** Its key. */
  clientKey: string;
  /** A second CA, unrelated to `ca`. */
  rogueCa: string;
  /** A client certificate signed by `rogueCa`: etcd must refuse it. */
  rogueCert: string;
  /** Its key. */
  rogueKey: string;
}

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
  /**
   * TLS for clients (https, client certificates required): `true` generates certificates with openssl
   * in the server's temp dir (see {@linkcode EtcdServer.certs}); or give the files.
   */
  tls?: true | { cert: string; key: string; ca: string };
}

/** A running (or stopped) etcd member. */
export interface EtcdServer extends AsyncDisposable {
  /** Client URL, e.g. `http://127.0.0.1:23791` (`https://` with TLS). */
  readonly endpoint: string;
  /** `[endpoint]`, the shape `EtcdOptions.endpoints` of the product wants. */
  readonly endpoints: string[];
  /** Peer URL. */
  readonly peerUrl: string;
  /** Member name. */
  readonly name: string;
  /** Current pid, 0 while stopped (changes on restart). */
  readonly pid: number;
  /** Data directory (under the server's temp dir). */
  readonly dataDir: string;
  /** Certificates when started with `tls: true`. */
  readonly certs: EtcdCerts | undefined;
  /** Username/password etcdctl() uses, once {@linkcode enableEtcdAuth} ran. */
  auth: { username: string; password: string } | undefined;
  /** Runs etcdctl against this member with its TLS/auth flags; returns stdout, throws on failure. */
  etcdctl(args: string[]): Promise<string>;
  /** The current revision. */
  revision(): Promise<number>;
  /** Compacts the history up to the current revision (or `revision`); returns it. */
  compact(revision?: number): Promise<number>;
  /** Stops the member with SIGTERM (SIGKILL after 5 s); keeps its data. */
  stop(): Promise<void>;
  /** Kills the member with SIGKILL; keeps its data. */
  kill(): Promise<void>;
  /** Starts the member again on the same ports and data and waits until it answers. */
  restart(): Promise<void>;
  /** Stops it for good (SIGKILL) and removes its temp dir. Idempotent. */
  close(): Promise<void>;
}

/** A free TCP port on 127.0.0.1 (the kernel picks it). */
export function freePort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

/**
 * True when etcd, etcdctl (and openssl, for TLS tests) are installed: tests use it in `ignore`. When
 * they are not, it says so once on stderr (the tests are reported as ignored, with this reason).
 */
export function haveEtcd(opts: { openssl?: boolean } = {}): boolean {
  const bins = ["/usr/bin/etcd", "/usr/bin/etcdctl", ...(opts.openssl ? ["/usr/bin/openssl"] : [])];
  const missing = bins.filter((b) => {
    try {
      return !Deno.statSync(b).isFile;
    } catch {
      return true;
    }
  });
  return !skipUnless(
    !missing.length,
    `${missing.join(", ")} not installed (apt: etcd-server etcd-client openssl)`,
  );
}

/** Runs etcdctl (v3 API) against `endpoint` and returns stdout; throws with etcdctl's stderr. */
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

/**
 * Writes flannel's network config (net-conf.json's content) where flanneld and weft read it, under the
 * default prefix (`/coreos.com/network/config`), as an operator's `etcdctl put` does.
 */
export async function putNetworkConfig(
  endpoint: string,
  config: Record<string, unknown>,
  opts: { netns?: string } = {},
): Promise<void> {
  await etcdctl(endpoint, ["put", `${DEFAULT_ETCD_PREFIX}/config`, JSON.stringify(config)], opts);
}

async function openssl(dir: string, ...args: string[]): Promise<void> {
  const out = await new Deno.Command("openssl", { args, cwd: dir, stdout: "null", stderr: "piped" }).output();
  if (out.code !== 0) throw new Error(`openssl ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
}

/**
 * Makes, in `dir`, a CA, a server certificate for 127.0.0.1 (and `hosts`), a client certificate, and an
 * unrelated second CA with its own client certificate (for "wrong certificate" tests). ~0.3 s.
 */
export async function generateEtcdCerts(dir: string, hosts: string[] = []): Promise<EtcdCerts> {
  const sans = ["IP:127.0.0.1", ...hosts.filter((h) => h !== "127.0.0.1").map((h) => `IP:${h}`)];
  await Deno.writeTextFile(
    `${dir}/server.cnf`,
    `subjectAltName=${sans.join(",")}\nextendedKeyUsage=serverAuth,clientAuth\n`,
  );
  await Deno.writeTextFile(`${dir}/client.cnf`, "extendedKeyUsage=clientAuth\n");
  const key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  await Promise.all(
    ["ca", "rogue-ca"].map((ca) =>
      openssl(
        dir,
        "req",
        "-x509",
        ...key,
        "-days",
        "2",
        "-subj",
        `/CN=${ca}`,
        "-keyout",
        `${ca}.key`,
        "-out",
        `${ca}.crt`,
      )
    ),
  );
  const sign = async (name: string, ca: string, ext: string, cn: string) => {
    await openssl(dir, "req", ...key, "-subj", `/CN=${cn}`, "-keyout", `${name}.key`, "-out", `${name}.csr`);
    await openssl(
      dir,
      ...["x509", "-req", "-in", `${name}.csr`, "-CA", `${ca}.crt`, "-CAkey", `${ca}.key`],
      ...["-CAcreateserial", "-days", "2", "-extfile", ext, "-out", `${name}.crt`],
    );
  };
  await Promise.all([
    sign("server", "ca", "server.cnf", "etcd"),
    sign("client", "ca", "client.cnf", "weft"),
    sign("rogue", "rogue-ca", "client.cnf", "mallory"),
  ]);
  return {
    ca: `${dir}/ca.crt`,
    serverCert: `${dir}/server.crt`,
    serverKey: `${dir}/server.key`,
    clientCert: `${dir}/client.crt`,
    clientKey: `${dir}/client.key`,
    rogueCa: `${dir}/rogue-ca.crt`,
    rogueCert: `${dir}/rogue.crt`,
    rogueKey: `${dir}/rogue.key`,
  };
}

/**
 * Turns on username/password auth: adds `root` with `password` (etcd requires root before `auth
 * enable`), enables auth, and makes `server.etcdctl()` log in from then on.
 */
export async function enableEtcdAuth(server: EtcdServer, password: string): Promise<void> {
  await server.etcdctl(["user", "add", `root:${password}`]);
  await server.etcdctl(["auth", "enable"]);
  server.auth = { username: "root", password };
}

/** Servers not closed yet: killed by PID when the test process exits, whatever happened. */
const live = new Map<string, { pid: () => number; dir: string }>();
globalThis.addEventListener("unload", () => {
  for (const { pid, dir } of live.values()) {
    const p = pid();
    if (p) {
      try {
        Deno.kill(p, "SIGKILL");
      } catch { /* gone */ }
    }
    try {
      Deno.removeSync(dir, { recursive: true });
    } catch { /* gone */ }
  }
});

/** Starts one etcd member and waits until it answers (unless `wait` is false, for cluster members). */
export async function startEtcd(opts: EtcdOptions = {}, wait = true): Promise<EtcdServer> {
  const host = opts.host ?? "127.0.0.1";
  const clientPort = opts.clientPort ?? freePort();
  const peerPort = opts.peerPort ?? freePort();
  const name = opts.name ?? `e${clientPort}`;
  const scheme = opts.tls ? "https" : "http";
  const h = host.includes(":") ? `[${host}]` : host; // an IPv6 host in a URL is bracketed
  const endpoint = `${scheme}://${h}:${clientPort}`;
  const peerUrl = `http://${h}:${peerPort}`;
  const baseDir = await Deno.makeTempDir({ prefix: "weft-etcd-" });
  const dataDir = `${baseDir}/data`;
  let child: Deno.ChildProcess | undefined;
  live.set(baseDir, { pid: () => child?.pid ?? 0, dir: baseDir });
  let certs: EtcdCerts | undefined;
  let tlsFiles: { cert: string; key: string; ca: string } | undefined;
  try {
    if (opts.tls === true) {
      certs = await generateEtcdCerts(baseDir, [host]);
      tlsFiles = { cert: certs.serverCert, key: certs.serverKey, ca: certs.ca };
    } else if (opts.tls) {
      tlsFiles = opts.tls;
    }
  } catch (err) {
    live.delete(baseDir);
    await Deno.remove(baseDir, { recursive: true }).catch(() => {});
    throw err;
  }
  // etcdctl as a client of this member: the CA and, with client-cert auth, a client certificate.
  const clientFlags = (): string[] => [
    ...(tlsFiles ? [`--cacert=${tlsFiles.ca}`] : []),
    ...(certs ? [`--cert=${certs.clientCert}`, `--key=${certs.clientKey}`] : []),
    ...(tlsFiles && !certs ? [`--cert=${tlsFiles.cert}`, `--key=${tlsFiles.key}`] : []),
    ...(server.auth ? [`--user=${server.auth.username}:${server.auth.password}`] : []),
  ];
  const ctl = (args: string[]) =>
    etcdctl(endpoint, [...clientFlags(), ...args], opts.netns ? { netns: opts.netns } : {});
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
    ...(tlsFiles
      ? [
        `--cert-file=${tlsFiles.cert}`,
        `--key-file=${tlsFiles.key}`,
        `--trusted-ca-file=${tlsFiles.ca}`,
        "--client-cert-auth",
      ]
      : []),
    ...(opts.extraArgs ?? []),
  ];
  const spawn = () => {
    const make = () =>
      new Deno.Command("etcd", { args, stdin: "null", stdout: "null", stderr: "piped" }).spawn();
    child = opts.netns ? withNetns(opts.netns, make) : make();
    // Drain stderr so etcd never blocks on a full pipe.
    child.stderr.pipeTo(new WritableStream()).catch(() => {});
  };
  const healthy = async () => {
    try {
      await ctl(["--command-timeout=1s", "endpoint", "health"]);
      return true;
    } catch {
      return false;
    }
  };
  // Only bounds a failure: a loaded machine may take long to start etcd, or to elect a leader.
  const waitHealthy = async (ms = 60_000) => {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      if (!child) throw new Error(`etcd ${name} was stopped while starting`);
      if (await healthy()) return;
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
  const revision = async () => {
    const status = JSON.parse(await ctl(["endpoint", "status", "-w", "json"])) as {
      Status: { header: { revision: number } };
    }[];
    return status[0]!.Status.header.revision;
  };
  let closed = false;
  const server: EtcdServer & { waitHealthy: typeof waitHealthy } = {
    endpoint,
    endpoints: [endpoint],
    peerUrl,
    name,
    dataDir,
    certs,
    auth: undefined,
    get pid() {
      return child?.pid ?? 0;
    },
    etcdctl: ctl,
    revision,
    async compact(rev?: number) {
      const r = rev ?? await revision();
      await ctl(["compaction", "--physical", String(r)]);
      return r;
    },
    stop: () => terminate("SIGTERM"),
    kill: () => terminate("SIGKILL"),
    async restart() {
      await terminate("SIGTERM");
      const i = args.indexOf("--initial-cluster-state=new");
      if (i >= 0) args.splice(i, 1, "--initial-cluster-state=existing");
      spawn();
      await waitHealthy();
    },
    async close() {
      if (closed) return;
      closed = true;
      await terminate("SIGKILL");
      live.delete(baseDir);
      await Deno.remove(baseDir, { recursive: true }).catch(() => {});
    },
    [Symbol.asyncDispose]() {
      return this.close();
    },
    waitHealthy,
  };
  spawn();
  if (wait) {
    try {
      await waitHealthy();
    } catch (err) {
      await server.close();
      throw err;
    }
  }
  return server;
}

/** A cluster of members on loopback; `endpoints` lists every member's client URL. */
export type EtcdCluster = EtcdServer[] & AsyncDisposable & { readonly endpoints: string[] };

/**
 * A 3-member (or `size`) etcd cluster on loopback, the way production runs it. Waits until every member
 * answers. Kill and restart members one at a time to keep quorum.
 */
export async function startEtcdCluster(size = 3): Promise<EtcdCluster> {
  const ports = Array.from({ length: size }, () => ({ client: freePort(), peer: freePort() }));
  const initialCluster = ports.map((p, i) => `m${i}=http://127.0.0.1:${p.peer}`).join(",");
  const started = await Promise.allSettled(
    ports.map((p, i) =>
      startEtcd({ name: `m${i}`, clientPort: p.client, peerPort: p.peer, initialCluster }, false)
    ),
  );
  const members = started.flatMap((s) => s.status === "fulfilled" ? [s.value] : []);
  const all = Object.assign(members, {
    endpoints: members.map((m) => m.endpoint),
    async [Symbol.asyncDispose]() {
      await Promise.all(members.map((m) => m.close()));
    },
  });
  try {
    const failed = started.find((s): s is PromiseRejectedResult => s.status === "rejected");
    if (failed) throw failed.reason;
    // Members only answer once a quorum has formed: wait for all of them together.
    await Promise.all(
      members.map((m) =>
        (m as EtcdServer & { waitHealthy: (ms: number) => Promise<void> }).waitHealthy(20_000)
      ),
    );
  } catch (err) {
    await all[Symbol.asyncDispose]();
    throw err;
  }
  return all;
}

/** A TCP proxy in front of an etcd member, to cut one client off while etcd stays up for others. */
export interface EtcdProxy extends AsyncDisposable {
  /** Client URL of the proxy (same scheme as the member). */
  readonly endpoint: string;
  /** Closes every proxied connection and refuses new ones (a partition between client and etcd). */
  cut(): void;
  /** Accepts connections again. */
  heal(): void;
  /** Stops the proxy. */
  close(): Promise<void>;
}

/** Starts a {@linkcode EtcdProxy} on 127.0.0.1 (a free port) forwarding to `server`. */
export function startEtcdProxy(server: Pick<EtcdServer, "endpoint">): EtcdProxy {
  const target = new URL(server.endpoint);
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const conns = new Set<Deno.Conn>();
  let up = true;
  const drop = (c: Deno.Conn) => {
    conns.delete(c);
    try {
      c.close();
    } catch { /* closed */ }
  };
  const serving = (async () => {
    for await (const client of listener) {
      if (!up) {
        drop(client);
        continue;
      }
      let upstream: Deno.Conn;
      try {
        upstream = await Deno.connect({ hostname: target.hostname, port: Number(target.port) });
      } catch {
        drop(client);
        continue;
      }
      conns.add(client);
      conns.add(upstream);
      const end = () => {
        drop(client);
        drop(upstream);
      };
      client.readable.pipeTo(upstream.writable).catch(() => {}).finally(end);
      upstream.readable.pipeTo(client.writable).catch(() => {}).finally(end);
    }
  })().catch(() => {});
  const proxy: EtcdProxy = {
    endpoint: `${target.protocol}//127.0.0.1:${port}`,
    cut() {
      up = false;
      for (const c of [...conns]) drop(c);
    },
    heal() {
      up = true;
    },
    async close() {
      proxy.cut();
      try {
        listener.close();
      } catch { /* closed */ }
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([serving, new Promise((r) => timer = setTimeout(r, 1000))]);
      clearTimeout(timer);
    },
    [Symbol.asyncDispose]() {
      return proxy.close();
    },
  };
  return proxy;
}
