/**
 * Running real `weft agent` processes inside node namespaces for end-to-end tests, through main.ts (the
 * entry point the binary has).
 *
 * @module
 */
import { Netlink, withNetns } from "../../ffi/mod.ts";
import { readSubnetEnv, type SubnetEnv } from "../../src/config/subnet_env.ts";
import { DENO_FLAGS } from "../../src/self_command.ts";
import { alive, runIn, terminateChild } from "../../src/lab/lab.ts";
import type { LabNode } from "../../src/lab/lab.ts";
import { parsePrometheusText } from "../../src/cli/status.ts";
import { addIP, formatIP } from "../../src/net/ip.ts";
import type { Topology } from "./topology.ts";
import { PRIVATE_MOUNTS_SH } from "./private_mounts.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** A running agent. */
export interface AgentProcess {
  /** Its node. */
  node: LabNode;
  /** subnet.env path. */
  subnetFile: string;
  /** Health port (inside the node namespace). */
  healthPort: number;
  /** Health address (127.0.0.1 unless the test chose another). */
  healthIp: string;
  /** Current pid. */
  pid: number;
  /** Log file. */
  logFile: string;
  /** Stops it with `signal` and waits for it to exit. */
  stop(signal?: Deno.Signal): Promise<void>;
  /** Starts it again with the same arguments. */
  start(): void;
}

/**
 * Starts an agent on `node` that talks to etcd at `etcd`, or, with `kube`, to a Kubernetes API server
 * (`--kube-subnet-mgr` with that kubeconfig and net-conf.json, NODE_NAME = `kube.nodeName`).
 */
export function startAgent(
  node: LabNode,
  opts: {
    etcd?: string;
    kube?: { kubeconfig: string; netConf: string; nodeName: string };
    dir: string;
    args?: string[];
    healthPort?: number;
    /**
     * `--healthz-ip` (default 127.0.0.1); null passes none, so `FLANNELD_HEALTHZ_IP` in `env` decides, as
     * in the DaemonSets.
     */
    healthzIp?: string | null;
    /** Flags for `deno run` itself (e.g. `--v8-flags=…`). */
    denoFlags?: string[];
    /** The weft command to run (e.g. `["dist/weft-x86_64-linux"]`, the compiled binary) instead of `deno run main.ts`. */
    exe?: string[];
    /** Extra environment variables. */
    env?: Record<string, string>;
    /**
     * Directories the agent sees in place of others (target → host directory), through a private mount
     * namespace (`unshare --mount`): e.g. each node's own `/run/wireguard`, as separate machines would
     * have. The agent's pid stays the process's own (unshare and sh exec).
     */
    binds?: Record<string, string>;
    /** Run under this open-files limit (`prlimit --nofile=N:N`, which execs: the pid is the agent's). */
    fdLimit?: number;
  },
): AgentProcess {
  const subnetFile = `${opts.dir}/${node.netns}.subnet.env`;
  const logFile = `${opts.dir}/${node.netns}.agent.log`;
  const healthPort = opts.healthPort ?? 8471;
  let child: Deno.ChildProcess | undefined;
  const [exe, ...exeArgs] = opts.exe ?? [
    Deno.execPath(),
    "run",
    "-A",
    "--no-check",
    // The flags the compiled binary carries, so tests and benches measure what ships.
    ...(opts.denoFlags ?? DENO_FLAGS),
    MAIN,
  ];
  const args = [
    ...exeArgs,
    "agent",
    ...(opts.etcd ? [`--etcd-endpoints=${opts.etcd}`] : []),
    ...(opts.kube
      ? [
        "--kube-subnet-mgr",
        `--kubeconfig-file=${opts.kube.kubeconfig}`,
        `--net-config-path=${opts.kube.netConf}`,
      ]
      : []),
    `--iface=${node.iface}`,
    `--subnet-file=${subnetFile}`,
    ...(opts.healthzIp === null ? [] : [`--healthz-ip=${opts.healthzIp ?? "127.0.0.1"}`]),
    `--healthz-port=${healthPort}`,
    ...(opts.args ?? []),
  ];
  const binds = Object.entries(opts.binds ?? {});
  for (const [target, source] of binds) {
    Deno.mkdirSync(target, { recursive: true });
    Deno.mkdirSync(source, { recursive: true });
  }
  // unshare --mount gives the agent its own mount table; sh binds the directories, then execs the agent.
  const [cmd, cmdArgs] = binds.length
    ? [
      PRIVATE_MOUNTS_SH[0]!,
      [
        ...PRIVATE_MOUNTS_SH.slice(1),
        `${binds.map((_, i) => `mount --bind "$${2 * i + 1}" "$${2 * i + 2}"`).join(" && ")} && shift ${
          2 * binds.length
        } && exec "$@"`,
        "sh",
        ...binds.flatMap(([target, source]) => [source, target]),
        exe!,
        ...args,
      ],
    ]
    : [exe!, args];
  // prlimit execs too: the pid is still the agent's.
  const limited: [string, string[]] = opts.fdLimit
    ? ["prlimit", [`--nofile=${opts.fdLimit}:${opts.fdLimit}`, cmd, ...cmdArgs]]
    : [cmd, cmdArgs];
  const agent: AgentProcess = {
    node,
    subnetFile,
    healthPort,
    healthIp: opts.healthzIp ?? opts.env?.FLANNELD_HEALTHZ_IP ?? "127.0.0.1",
    logFile,
    pid: 0,
    start() {
      const log = Deno.openSync(logFile, { create: true, append: true });
      child = withNetns(
        node.netns,
        () =>
          new Deno.Command(limited[0], {
            args: limited[1],
            stdin: "null",
            stdout: "piped",
            stderr: "piped",
            ...(opts.env || opts.kube
              ? { env: { ...opts.env, ...(opts.kube ? { NODE_NAME: opts.kube.nodeName } : {}) } }
              : {}),
          }).spawn(),
      );
      const pump = async (s: ReadableStream<Uint8Array>) => {
        for await (const c of s) log.writeSync(c);
      };
      Promise.all([pump(child.stdout), pump(child.stderr)]).catch(() => {}).finally(() => log.close());
      agent.pid = child.pid;
    },
    async stop(signal: Deno.Signal = "SIGTERM") {
      if (!child) return;
      const c = child;
      child = undefined;
      await terminateChild(c, signal);
    },
  };
  agent.start();
  return agent;
}

/**
 * The shortest deadline {@linkcode waitFor} uses, whatever its caller asked: a deadline only bounds a
 * failure (a condition that never comes), so a generous one costs a passing test nothing, while a tight
 * one fails a loaded machine's test for being slow.
 */
export const MIN_WAIT_MS = 30_000;

/**
 * Waits until `probe` returns a value other than undefined/false (polling every `everyMs`), for `ms`
 * at most but never less than {@linkcode MIN_WAIT_MS}. A time budget is asserted on a measurement,
 * never through this deadline.
 */
export async function waitFor<T>(
  what: string,
  ms: number,
  probe: () => Promise<T | undefined> | T | undefined,
  everyMs = 100,
): Promise<T> {
  ms = Math.max(ms, MIN_WAIT_MS);
  const end = Date.now() + ms;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const v = await probe();
      if (v !== undefined && v !== false) return v as T;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(
    `timed out after ${ms} ms waiting for ${what}${last ? ` (${(last as Error).message})` : ""}`,
  );
}

/** Waits for the agent's subnet.env. */
export function waitSubnetEnv(a: AgentProcess, ms = 20_000): Promise<SubnetEnv> {
  return waitFor(`${a.subnetFile}`, ms, () => {
    try {
      return readSubnetEnv(a.subnetFile);
    } catch {
      return undefined;
    }
  });
}

/** GETs a path of the agent's health endpoint from inside its node; returns [status, body]. */
export async function agentHttp(a: AgentProcess, path: string): Promise<[number, string]> {
  const r = await runIn(a.node.netns, [
    Deno.execPath(),
    "eval",
    `const r = await fetch("http://${a.healthIp}:${a.healthPort}${path}"); console.log(r.status); console.log(await r.text());`,
  ]);
  if (r.code !== 0) throw new Error(`GET ${path}: ${r.stderr}`);
  const nl = r.stdout.indexOf("\n");
  return [Number(r.stdout.slice(0, nl)), r.stdout.slice(nl + 1)];
}

/** Whether a pid is running. */
export { alive };

/** Waits until the agent's /readyz answers 200; returns how long that took, ms. */
export async function waitReady(a: AgentProcess, ms = 30_000): Promise<number> {
  const t0 = Date.now();
  await waitFor(
    `${a.node.netns} ready`,
    ms,
    async () => (await agentHttp(a, "/readyz").catch(() => [0]))[0] === 200,
  );
  return Date.now() - t0;
}

/** One sample of the agent's /metrics (NaN when absent). */
export async function metric(a: AgentProcess, name: string): Promise<number> {
  const [, body] = await agentHttp(a, "/metrics");
  return parsePrometheusText(body).find((s) => s.name === name)?.value ?? NaN;
}

/**
 * The first address of a node's subnet (FLANNEL_SUBNET's address: the pods' gateway), or of its IPv6
 * subnet (FLANNEL_IPV6_SUBNET's) with `family` 6.
 */
export function gatewayOf(env: SubnetEnv, family: 4 | 6 = 4): string {
  return formatIP(addIP((family === 4 ? env.subnet : env.ipv6Subnet)!.ip, 1n));
}

/**
 * Gives a node a "pods" bridge `cni0` holding its subnet's first address, and its IPv6 subnet's first
 * address when the node is dual-stack (as weft's CNI mode does).
 */
export function addPodBridge(netns: string, env: SubnetEnv): void {
  using nl = Netlink.open({ netns });
  const br = nl.linkGet("cni0") ?? nl.linkAddBridge({ name: "cni0" });
  nl.addrReplace(br.index, `${gatewayOf(env)}/${env.subnet!.prefix}`);
  if (env.ipv6Subnet) {
    nl.addrReplace(br.index, `${gatewayOf(env, 6)}/${env.ipv6Subnet.prefix}`, { nodad: true });
  }
  nl.linkSetUp(br.index);
}

/**
 * Pings every node's subnet address from every other node's (source = its own subnet address) until all
 * answer or `ms` pass (never less than {@linkcode MIN_WAIT_MS}); returns the pairs that never answered, as `"i->j"`. `family` 6 pings the IPv6
 * subnets' addresses.
 */
export async function pingMatrix(
  topo: Pick<Topology, "nodes" | "ping">,
  envs: SubnetEnv[],
  ms: number,
  family: 4 | 6 = 4,
): Promise<string[]> {
  const end = Date.now() + Math.max(ms, MIN_WAIT_MS);
  let failed: string[] = [];
  do {
    failed = [];
    for (let i = 0; i < topo.nodes.length; i++) {
      for (let j = 0; j < topo.nodes.length; j++) {
        if (i === j) continue;
        const ok = await topo.ping(topo.nodes[i]!.netns, gatewayOf(envs[j]!, family), {
          source: gatewayOf(envs[i]!, family),
          timeoutS: 1,
        });
        if (!ok) failed.push(`${i}->${j}`);
      }
    }
    if (!failed.length) return [];
    await new Promise((r) => setTimeout(r, 200));
  } while (Date.now() < end);
  return failed;
}

/** What one `ping -i 0.01` saw. */
export interface PingResult {
  /** Source node index. */
  from: number;
  /** Destination node index. */
  to: number;
  /** Echo requests sent. */
  sent: number;
  /** Replies received. */
  received: number;
  /** Sequence numbers never answered, up to the last answered one (none in flight at the end). */
  lost: number;
}

/** Replies each ping must have before `during` starts, and again after it ended (see pingWhile). */
const PING_REPLIES_AROUND = 20;

/**
 * Runs `ping -i 0.01` between the subnet addresses of each `[from, to]` pair while `during` runs. Before
 * `during`, every ping has had {@linkcode PING_REPLIES_AROUND} replies; after it, every ping gets as many
 * replies to echoes sent once `during` was over (30 s at most each, else it throws: the path did not
 * come back) — conditions, not fixed times, so a slow machine only makes the run longer. Losses are
 * counted from the reply sequence numbers, so the one request in flight when ping is stopped is not
 * mistaken for a loss.
 */
export async function pingWhile(
  topo: Pick<Topology, "nodes">,
  pairs: [number, number][],
  envs: SubnetEnv[],
  during: () => Promise<void>,
): Promise<PingResult[]> {
  const children = pairs.map(([from, to]) =>
    withNetns(topo.nodes[from]!.netns, () =>
      new Deno.Command("ping", {
        args: ["-n", "-i", "0.01", "-W", "1", "-I", gatewayOf(envs[from]!), gatewayOf(envs[to]!)],
        stdout: "piped",
        stderr: "null",
      }).spawn())
  );
  // Read the output as it comes: a full pipe (~1000 reply lines) would block ping and stop the pings.
  const answered = children.map(() => new Set<number>());
  const outputs = children.map(async (c, i) => {
    let text = "";
    let rest = "";
    const dec = new TextDecoder();
    for await (const chunk of c.stdout) {
      const lines = (rest + dec.decode(chunk, { stream: true })).split("\n");
      rest = lines.pop()!;
      for (const line of lines) {
        const m = /bytes from .* icmp_seq=(\d+)/.exec(line);
        if (m) answered[i]!.add(Number(m[1]));
        else text += line + "\n";
      }
    }
    await c.status;
    return text + rest;
  });
  const repliesAfter = async (what: string, marks: number[]) => {
    const enough = () =>
      answered.every((seqs, i) => [...seqs].filter((q) => q > marks[i]!).length >= PING_REPLIES_AROUND);
    await waitFor(what, 30_000, enough, 20).catch((err) => {
      const got = answered.map((seqs, i) => [...seqs].filter((q) => q > marks[i]!).length);
      throw new Error(
        `${(err as Error).message}: replies ${got.join(", ")} (pairs ${JSON.stringify(pairs)})`,
      );
    });
  };
  try {
    await repliesAfter(`${PING_REPLIES_AROUND} replies before`, pairs.map(() => 0));
    await during();
    await repliesAfter(
      `${PING_REPLIES_AROUND} replies to echoes sent after`,
      answered.map((seqs) => Math.max(0, ...seqs)),
    );
  } finally {
    for (const c of children) {
      try {
        c.kill("SIGINT");
      } catch { /* gone */ }
    }
  }
  const results: PingResult[] = [];
  for (const [i, out] of (await Promise.all(outputs)).entries()) {
    const seqs = answered[i]!;
    const sent = Number(out.match(/(\d+) packets transmitted/)?.[1] ?? NaN);
    const last = Math.max(0, ...seqs);
    let lost = 0;
    for (let q = 1; q <= last; q++) if (!seqs.has(q)) lost++;
    results.push({ from: pairs[i]![0], to: pairs[i]![1], sent, received: seqs.size, lost });
  }
  return results;
}

/** Idle TCP connections held open from inside a namespace (see {@linkcode holdConnections}). */
export interface HeldConnections extends AsyncDisposable {
  /** Connections the client managed to open. */
  opened: number;
  /** Connections the kernel refused outright. */
  refused: number;
  /** Of those opened, how many the server has closed so far (asked on demand). */
  closedByServer(): Promise<number>;
  /** Closes them all and ends the client. */
  release(): Promise<void>;
}

const HOLDER = `
const [port, n] = Deno.args.map(Number);
const conns = []; let refused = 0;
for (let i = 0; i < n; i++) {
  try { conns.push(await Deno.connect({ hostname: "127.0.0.1", port })); } catch { refused++; }
}
console.log(JSON.stringify({ opened: conns.length, refused }));
// On each line of stdin: how many of the connections the server closed (a read sees EOF or an error).
const dec = new TextDecoder();
for await (const _ of Deno.stdin.readable) {
  let closed = 0;
  await Promise.all(conns.map(async (c) => {
    const r = await Promise.race([c.read(new Uint8Array(64)).catch(() => null),
      new Promise((res) => setTimeout(() => res("open"), 200))]);
    if (r === null) closed++;
  }));
  console.log(JSON.stringify({ closed }));
}
// stdin closed: let go of everything (reads still pending on open connections would keep us alive).
for (const c of conns) { try { c.close(); } catch { /* closed */ } }
Deno.exit(0);
`;

/**
 * Opens `n` idle connections to 127.0.0.1:`port` inside `netns` and holds them until released (a client
 * process of its own, with room for the descriptors). Resolves once they are all attempted.
 */
export async function holdConnections(netns: string, port: number, n: number): Promise<HeldConnections> {
  const child = withNetns(netns, () =>
    new Deno.Command("prlimit", {
      args: [`--nofile=${n + 256}:${n + 256}`, Deno.execPath(), "eval", HOLDER, String(port), String(n)],
      stdin: "piped",
      stdout: "piped",
      stderr: "null",
    }).spawn());
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  const nextLine = async (): Promise<Record<string, number>> => {
    while (!buf.includes("\n")) {
      const { value, done } = await lines.read();
      if (done) throw new Error("the connection holder ended early");
      buf += value;
    }
    const i = buf.indexOf("\n");
    const line = buf.slice(0, i);
    buf = buf.slice(i + 1);
    return JSON.parse(line);
  };
  const stdin = child.stdin.getWriter();
  const first = await nextLine();
  let released = false;
  const release = async () => {
    if (released) return;
    released = true;
    await stdin.close().catch(() => {});
    await lines.cancel().catch(() => {});
    await child.status;
  };
  return {
    opened: first.opened!,
    refused: first.refused!,
    async closedByServer() {
      await stdin.write(new TextEncoder().encode("?\n"));
      return (await nextLine()).closed!;
    },
    release,
    [Symbol.asyncDispose]: release,
  };
}
