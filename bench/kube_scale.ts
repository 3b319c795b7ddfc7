/**
 * Kubernetes mode at scale, weft beside flanneld (built from source, for measuring only): each agent
 * alone on one test API server (HTTPS, bearer token, in the underlay namespace) holding N realistic
 * Nodes (~13 KB each: images, conditions, managedFields; tests/helpers/kube_nodes.ts) annotated as
 * flannel peers, for N = 500, 2000, 5000 (or the N given). Per agent:
 *
 * - start → all N peers' routes in the kernel (wall s from spawning it), its CPU s and RSS then;
 * - requests it makes in a quiet `--quiet` seconds (after a 5 s settle): goal 0, one watch open; its CPU s
 *   over that window (its own periodic work) and the median of its RSS sampled every second there;
 * - RSS after that quiet window (settled) and its peak (VmHWM);
 * - CPU s under kubelet churn: 200 heartbeats/s (status writes that change nothing routed) for
 *   `--churn` seconds, round robin over all N Nodes;
 * - LISTs after the server closes every watch, and after a server restart that keeps its history (stop,
 *   2 s down, start on the same port): goal 0 — the watch resumes from its resourceVersion.
 *
 * and in the same run the reference floor: Deno with weft's Kubernetes client loaded and nothing else
 * (bench/kube_client_floor.ts, same V8 flags as the agent), whose RSS the agent's is compared to.
 * Agents run interleaved (weft, flanneld, weft, flanneld, …) so both see the same machine load; ratios
 * are taken within a round, medians over `--rounds`. CSV (default bench/results/kube_scale.csv) feeds
 * bench/plot_kube_scale.ts.
 *
 * flanneld: `git --git-dir=/work/.mirror/flannel-io+flannel/repo archive v0.20.2 | tar -x -C <dir>`,
 * `CGO_ENABLED=1 go build -mod=vendor` there; pass the binary with `--flanneld PATH` (default:
 * `WEFT_FLANNELD`, as the tests that run flanneld, else /tmp/flannel-kube/flanneld). Never shipped or committed.
 *
 * Run: `deno run -A bench/kube_scale.ts [N…] [--rounds R] [--quiet S] [--churn S] [--flanneld PATH]
 * [--csv FILE] [--only weft|flanneld] [--trace-rss]` (`--trace-rss`: every 10 s of the quiet window, the
 * agent's RSS by where it lies — executable, libraries, malloc heap, anonymous). Needs root.
 *
 * @module
 */
import { withNetns } from "../ffi/mod.ts";
import { DENO_FLAGS, selfCommand } from "../src/self_command.ts";
import { type KubeApiServer, startKubeApiServer } from "../tests/helpers/kube_api_server.ts";
import { realisticNode, startHeartbeats } from "../tests/helpers/kube_nodes.ts";
import { rssByMapping } from "../tests/helpers/smaps.ts";
import { createTopology, type TopologyNode } from "../tests/helpers/topology.ts";
import { lease } from "./convergence.ts";
import { RouteCounter } from "./route_count.ts";
import { BenchArgs } from "./args.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const FLOOR = new URL("./kube_client_floor.ts", import.meta.url).pathname;
const CLK_TCK = 100;
/** flanneld's routes carry no protocol of their own: the kernel's "boot". */
const PROTO_BOOT = 3, PROTO_WEFT = 87;

type Kind = "weft" | "flanneld";

/** What one agent run measured. */
export interface AgentRun {
  kind: Kind;
  startS: number;
  cpuAtStartS: number;
  rssAtStartMB: number;
  quietRequests: number;
  quietDetail: string;
  /** CPU s over the quiet window (nothing changes: the agent's own periodic work). */
  quietCpuS: number;
  /** Median of RSS sampled every second over the quiet window. */
  rssQuietMedianMB: number;
  rssMB: number;
  peakMB: number;
  churnCpuS: number;
  churnWrites: number;
  listsAfterCut: number;
  listsAfterRestart: number;
  resumeAfterRestartS: number;
}

/** CPU seconds, RSS and peak RSS (MB) of a running process, from /proc. */
export function procSample(pid: number): { cpuS: number; rssMB: number; hwmMB: number } {
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const kb = (k: string) => Number(status.match(new RegExp(`${k}:\\s+(\\d+)`))?.[1] ?? NaN);
  return {
    cpuS: (Number(f[11]) + Number(f[12])) / CLK_TCK,
    rssMB: kb("VmRSS") / 1024,
    hwmMB: kb("VmHWM") / 1024,
  };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * A process's resident memory by where it lies (MB, from /proc/<pid>/smaps): its executable's pages
 * (`binary`), the shared libraries' (`libs`), malloc's main heap (`heap`), and anonymous mappings (`anon`:
 * V8's heap, thread arenas, stacks).
 */
export function rssParts(pid: number): { binary: number; libs: number; heap: number; anon: number } {
  const exe = Deno.readLinkSync(`/proc/${pid}/exe`);
  const kb = rssByMapping(
    pid,
    (name) => name === exe ? "binary" : name === "[heap]" ? "heap" : name.startsWith("/") ? "libs" : "anon",
  );
  const mb = (part: string) => (kb[part] ?? 0) / 1024;
  return { binary: mb("binary"), libs: mb("libs"), heap: mb("heap"), anon: mb("anon") };
}

/** The i-th peer as a kubelet, kubeadm, the controller-manager and flannel leave its Node. */
export function peerNode(i: number): Record<string, unknown> {
  const l = lease(i);
  const attrs = JSON.parse(l.value);
  return realisticNode({
    name: `peer-${i}`,
    podCIDR: l.key.replace("-", "/"),
    internalIP: attrs.PublicIP,
    flannel: { publicIP: attrs.PublicIP, vtepMac: attrs.BackendData.VtepMAC },
  });
}

/** The command line of one agent under test. */
function command(kind: Kind, node: TopologyNode, dir: string, flanneld: string): string[] {
  const common = [`--iface=${node.iface}`, `--subnet-file=${dir}/${node.netns}.subnet.env`];
  const kube = [
    "--kube-subnet-mgr",
    `--kubeconfig-file=${dir}/${kind}.kubeconfig`,
    `--net-config-path=${dir}/net-conf.json`,
  ];
  if (kind === "flanneld") return [flanneld, ...kube, ...common, "--ip-masq=false"];
  return [...selfCommand(), "agent", ...kube, ...common];
}

async function waitFor(what: string, ms: number, pred: () => boolean): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

/** Runs one agent through every measure (see the module comment). */
async function runAgent(
  kind: Kind,
  api: KubeApiServer,
  node: TopologyNode,
  n: number,
  o: { dir: string; flanneld: string; quietS: number; churnS: number; names: string[]; traceRss: boolean },
): Promise<AgentRun> {
  const user = `${kind}-user`;
  const Node = api.store.kindByName("Node");
  const own = node.netns;
  api.store.create(
    Node,
    "",
    realisticNode({ name: own, podCIDR: `10.99.${node.index}.0/24`, internalIP: node.ip }),
  );
  const cmd = command(kind, node, o.dir, o.flanneld);
  const log = await Deno.open(`${o.dir}/${kind}-${own}.log`, { create: true, append: true });
  const proto = kind === "weft" ? PROTO_WEFT : PROTO_BOOT;
  using counter = new RouteCounter(node.netns, proto);
  const base = counter.count();
  // The previous agent's churn replaced every Node: encode them now, so neither agent's list waits for it.
  api.warm();
  const t0 = performance.now();
  const child = withNetns(node.netns, () =>
    new Deno.Command(cmd[0]!, {
      args: cmd.slice(1),
      cwd: ROOT,
      env: { NODE_NAME: own },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn());
  const pumping = Promise.all([child.stdout, child.stderr].map(async (s) => {
    for await (const c of s) log.writeSync(c);
  })).catch(() => {}).finally(() => log.close());
  try {
    await waitFor(`${kind}: ${n} routes`, 300_000, () => counter.count() - base >= n);
    const startS = (performance.now() - t0) / 1000;
    const atStart = procSample(child.pid);
    await sleep(5000);
    const quiet = api.mark();
    const q0 = procSample(child.pid).cpuS;
    const rssQuiet: number[] = [];
    for (let s = 0; s < o.quietS; s++) {
      await sleep(1000);
      rssQuiet.push(procSample(child.pid).rssMB);
      if (o.traceRss && s % 10 === 0) {
        const p = rssParts(child.pid), c = procSample(child.pid);
        console.log(
          `    ${kind} quiet +${s}s: RSS ${c.rssMB.toFixed(1)} MB (binary ${p.binary.toFixed(1)}, libs ${
            p.libs.toFixed(1)
          }, malloc heap ${p.heap.toFixed(1)}, anon ${p.anon.toFixed(1)}), CPU ${c.cpuS.toFixed(2)} s`,
        );
      }
    }
    const quietCpuS = procSample(child.pid).cpuS - q0;
    const quietRequests = api.count({ user }, quiet);
    const detail = Object.entries(countsBy(api, user, quiet)).map(([k, v]) => `${k}=${v}`).join(" ");
    const settled = procSample(child.pid);
    // Kubelet churn: heartbeats to every Node, nothing routed changes.
    const c0 = procSample(child.pid).cpuS;
    const beats = startHeartbeats(api.store, o.names, 200);
    await sleep(o.churnS * 1000);
    beats.stop();
    await sleep(1000); // the last events in flight
    const churnCpuS = procSample(child.pid).cpuS - c0;
    // Every watch closed by the server (its watch timeout): resumed, or listed again?
    const cut = api.mark();
    api.closeWatches();
    await waitFor(
      `${kind}: watch again after the cut`,
      60_000,
      () => api.count({ user, verb: "watch", status: 200 }, cut) > 0,
    );
    await sleep(3000);
    const listsAfterCut = api.count({ user, verb: "list" }, cut);
    // A restart with the history kept (one replica restarted, the watch cache refilled).
    const rs = api.mark();
    const r0 = performance.now();
    await api.restart({ downMs: 2000 });
    await waitFor(
      `${kind}: watch again after the restart`,
      120_000,
      () => api.count({ user, verb: "watch", status: 200 }, rs) > 0,
    );
    const resumeAfterRestartS = (performance.now() - r0) / 1000 - 2;
    await sleep(3000);
    const listsAfterRestart = api.count({ user, verb: "list" }, rs);
    const end = procSample(child.pid);
    return {
      kind,
      startS,
      cpuAtStartS: atStart.cpuS,
      rssAtStartMB: atStart.rssMB,
      quietRequests,
      quietDetail: detail,
      quietCpuS,
      rssQuietMedianMB: median(rssQuiet),
      rssMB: settled.rssMB,
      peakMB: end.hwmMB,
      churnCpuS,
      churnWrites: beats.writes,
      listsAfterCut,
      listsAfterRestart,
      resumeAfterRestartS,
    };
  } finally {
    child.kill("SIGKILL");
    await child.status;
    await pumping;
    api.store.delete(Node, "", own);
  }
}

function countsBy(api: KubeApiServer, user: string, since: number): Record<string, number> {
  const out: Record<string, number> = {};
  for (const r of api.requests) {
    if (r.seq <= since || r.user !== user || !r.verb) continue;
    const k = `${r.verb}:${r.resource}`;
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

/**
 * RSS (MB) of Deno with weft's Kubernetes client loaded and nothing else, settled; with `watch`, also
 * connected (TLS) and watching `watch.node` alone (bench/kube_client_floor.ts), inside `watch.netns`.
 */
async function clientFloor(watch?: { netns: string; kubeconfig: string; node: string }): Promise<number> {
  const spawn = () =>
    new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--no-check",
        ...DENO_FLAGS,
        FLOOR,
        ...(watch ? [watch.kubeconfig, watch.node] : []),
      ],
      cwd: ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
  const child = watch ? withNetns(watch.netns, spawn) : spawn();
  const reader = child.stdout.getReader();
  await reader.read(); // "ready"
  await sleep(3000);
  const rss = procSample(child.pid).rssMB;
  child.kill("SIGKILL");
  await child.status;
  reader.releaseLock();
  await child.stdout.cancel().catch(() => {});
  return rss;
}

function median(xs: number[]): number {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

const fmt = (x: number, d = 2) => Number.isFinite(x) ? x.toFixed(d) : "";

function loadAvg(): string {
  return Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");
}

function parseArgs(argv: string[]) {
  const args = new BenchArgs(argv);
  const rounds = Number(args.take("--rounds") ?? 2);
  const quietS = Number(args.take("--quiet") ?? 30);
  const churnS = Number(args.take("--churn") ?? 30);
  const flanneld = args.take("--flanneld") ?? Deno.env.get("WEFT_FLANNELD") ?? "/tmp/flannel-kube/flanneld";
  const csv = args.take("--csv") ?? new URL("results/kube_scale.csv", import.meta.url).pathname;
  const only = args.take("--only") as Kind | undefined;
  const traceRss = args.flag("--trace-rss");
  const counts = args.rest.length ? args.rest.map(Number) : [500, 2000, 5000];
  return { rounds, quietS, churnS, flanneld, csv, only, counts, traceRss };
}

/** One N: rounds of weft and flanneld, interleaved, each in a fresh node namespace. */
async function measure(
  n: number,
  a: ReturnType<typeof parseArgs>,
  dir: string,
): Promise<Record<string, string>> {
  const kinds: Kind[] = a.only ? [a.only] : ["weft", "flanneld"];
  await using topo = await createTopology({ nodes: a.rounds * kinds.length });
  await using api = await startKubeApiServer({
    netns: topo.underlay,
    hostname: topo.underlayIP,
    tls: true,
    tokens: { "weft-token": "weft-user", "flanneld-token": "flanneld-user" },
    bookmarkMs: 60_000,
    historySize: 2000, // enough to resume after a cut or a restart; more would only grow this process's heap
  });
  const Node = api.store.kindByName("Node");
  const names: string[] = [];
  for (let i = 0; i < n; i++) {
    const p = peerNode(i);
    api.store.create(Node, "", p);
    names.push((p.metadata as { name: string }).name);
  }
  for (const k of kinds) await api.writeKubeconfig(`${dir}/${k}.kubeconfig`, { token: `${k}-token` });
  await Deno.writeTextFile(`${dir}/net-conf.json`, '{"Network":"10.0.0.0/8","Backend":{"Type":"vxlan"}}');
  const runs: AgentRun[] = [];
  const floors: number[] = [], watchingFloors: number[] = [];
  let slot = 0;
  for (let r = 0; r < a.rounds; r++) {
    // Alternate who goes first, so neither always meets the machine in the same state.
    for (const k of r % 2 ? [...kinds].reverse() : kinds) {
      const run = await runAgent(k, api, topo.nodes[slot++]!, n, { ...a, dir, names });
      runs.push(run);
      console.log(
        `  N=${n} round ${r + 1} ${k}: start ${fmt(run.startS)} s (CPU ${fmt(run.cpuAtStartS)} s), RSS ${
          fmt(run.rssMB, 1)
        } MB ` +
          `(peak ${fmt(run.peakMB, 1)}), quiet ${run.quietRequests} req [${run.quietDetail}] CPU ${
            fmt(run.quietCpuS)
          } s RSS median ${fmt(run.rssQuietMedianMB, 1)} MB, churn CPU ${fmt(run.churnCpuS)} s ` +
          `(${run.churnWrites} writes), LISTs after cut ${run.listsAfterCut} / restart ${run.listsAfterRestart} ` +
          `(resumed ${fmt(run.resumeAfterRestartS, 1)} s after), load ${loadAvg()}`,
      );
    }
    floors.push(await clientFloor());
    watchingFloors.push(
      await clientFloor({
        netns: topo.nodes[0]!.netns,
        kubeconfig: `${dir}/weft.kubeconfig`,
        node: names[0]!,
      }),
    );
  }
  const of = (k: Kind, f: (x: AgentRun) => number) => median(runs.filter((x) => x.kind === k).map(f));
  // Ratios within each round, then their median.
  const ratio = (f: (x: AgentRun) => number) => {
    const w = runs.filter((x) => x.kind === "weft"), fl = runs.filter((x) => x.kind === "flanneld");
    return median(w.map((x, i) => f(x) / (fl[i] ? f(fl[i]!) : NaN))); // the i-th of each: the same round
  };
  const floor = median(floors), watchingFloor = median(watchingFloors);
  return {
    nodes: String(n),
    rounds: String(a.rounds),
    weft_start_s: fmt(of("weft", (x) => x.startS)),
    flanneld_start_s: fmt(of("flanneld", (x) => x.startS)),
    start_ratio: fmt(ratio((x) => x.startS)),
    weft_cpu_start_s: fmt(of("weft", (x) => x.cpuAtStartS)),
    flanneld_cpu_start_s: fmt(of("flanneld", (x) => x.cpuAtStartS)),
    weft_churn_cpu_s: fmt(of("weft", (x) => x.churnCpuS)),
    flanneld_churn_cpu_s: fmt(of("flanneld", (x) => x.churnCpuS)),
    churn_ratio: fmt(ratio((x) => x.churnCpuS)),
    weft_rss_mb: fmt(of("weft", (x) => x.rssMB), 1),
    flanneld_rss_mb: fmt(of("flanneld", (x) => x.rssMB), 1),
    rss_ratio: fmt(ratio((x) => x.rssMB)),
    weft_peak_mb: fmt(of("weft", (x) => x.peakMB), 1),
    flanneld_peak_mb: fmt(of("flanneld", (x) => x.peakMB), 1),
    client_floor_mb: fmt(floor, 1),
    weft_above_floor_mb: fmt(of("weft", (x) => x.rssMB) - floor, 1),
    client_watching_floor_mb: fmt(watchingFloor, 1),
    weft_above_watching_floor_mb: fmt(of("weft", (x) => x.rssMB) - watchingFloor, 1),
    weft_quiet_cpu_s: fmt(of("weft", (x) => x.quietCpuS)),
    flanneld_quiet_cpu_s: fmt(of("flanneld", (x) => x.quietCpuS)),
    weft_rss_quiet_median_mb: fmt(of("weft", (x) => x.rssQuietMedianMB), 1),
    flanneld_rss_quiet_median_mb: fmt(of("flanneld", (x) => x.rssQuietMedianMB), 1),
    weft_quiet_requests: fmt(of("weft", (x) => x.quietRequests), 0),
    flanneld_quiet_requests: fmt(of("flanneld", (x) => x.quietRequests), 0),
    weft_lists_after_cut: fmt(of("weft", (x) => x.listsAfterCut), 0),
    flanneld_lists_after_cut: fmt(of("flanneld", (x) => x.listsAfterCut), 0),
    weft_lists_after_restart: fmt(of("weft", (x) => x.listsAfterRestart), 0),
    flanneld_lists_after_restart: fmt(of("flanneld", (x) => x.listsAfterRestart), 0),
    weft_resume_after_restart_s: fmt(of("weft", (x) => x.resumeAfterRestartS), 1),
    flanneld_resume_after_restart_s: fmt(of("flanneld", (x) => x.resumeAfterRestartS), 1),
  };
}

if (import.meta.main) {
  if (Deno.uid() !== 0) {
    console.error("bench/kube_scale.ts needs root (it builds network namespaces)");
    Deno.exit(1);
  }
  const a = parseArgs(Deno.args);
  if (a.only !== "weft") {
    try {
      Deno.statSync(a.flanneld);
    } catch {
      console.error(`no flanneld at ${a.flanneld}: build it (see the module comment) or pass --flanneld`);
      Deno.exit(1);
    }
  }
  console.log(
    `# ${new Date().toISOString()} kube_scale ${
      Deno.args.join(" ")
    }; ${a.rounds} rounds, quiet ${a.quietS} s, churn ${a.churnS} s; ` +
      `${navigator.hardwareConcurrency} cores, Deno ${Deno.version.deno}; load ${loadAvg()}`,
  );
  const dir = await Deno.makeTempDir({ prefix: "weft-kube-scale-" });
  const rows: Record<string, string>[] = [];
  try {
    for (const n of a.counts) {
      const row = await measure(n, a, dir);
      rows.push(row);
      console.log(JSON.stringify(row));
    }
  } finally {
    for (const f of Deno.readDirSync(dir)) {
      if (f.name.endsWith(".log")) Deno.copyFileSync(`${dir}/${f.name}`, `/tmp/${f.name}`);
    }
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  const cols = Object.keys(rows[0]!);
  await Deno.mkdir(new URL(".", `file://${a.csv}`).pathname, { recursive: true });
  await Deno.writeTextFile(
    a.csv,
    [cols.join(","), ...rows.map((r) => cols.map((c) => r[c]).join(","))].join("\n") + "\n",
  );
  console.log(`\nwrote ${a.csv}`);
}
