/**
 * How the agent's cost grows with the number of peers: one real `weft agent` (vxlan) in a node
 * namespace, started the way the README tells users to start it, with N peer leases already in etcd,
 * for N = 1000, 5000 and 10 000 (or the N given). Per N it measures
 *
 * - start → N peers' routes in the kernel (wall seconds from spawning the process), the agent's CPU
 *   seconds at that moment and its RSS then;
 * - its RSS once settled: sampled every 0.5 s for `--settle` seconds (two full resync passes at the
 *   default 10 s interval; the JS heap rises and falls with each pass, so one sample would be luck),
 *   the median and the highest, and its peak RSS since start (VmHWM);
 *
 * and, in the same run, the references:
 *
 * - `ip -batch` + `bridge -batch` programming the same N peers (neighbour, FDB entry, onlink route) into
 *   a fresh namespace: wall, CPU and peak RSS of the three processes;
 * - an empty Deno script (`deno run empty.ts`): the runtime's floor of start-up time and RSS;
 * - Deno importing `npm:etcd3` and nothing else: the floor of any agent that uses that client;
 *
 * and the ratio of weft's figures to flanneld's (shared/ANCHORS.md §7, measured on this kind of
 * machine: the lower end of each range is used, so "met" holds against every measurement of it).
 * Medians over `--rounds` rounds; the CSV (`--csv`, default bench/results/agent_scale.csv) feeds
 * bench/plot_agent_scale.ts.
 *
 * Run: `deno run -A bench/agent_scale.ts [N…] [--rounds R] [--settle S] [--csv FILE] [--binary PATH]`.
 * Needs root. From source the agent runs as `deno run -A main.ts agent …` from the repository root;
 * `--binary dist/weft-x86_64-linux` runs a compiled binary as `weft agent …` instead.
 * `WEFT_BENCH_DENO_FLAGS="--v8-flags=…"` adds flags to the `deno run` (experiments only).
 *
 * Start is seen by polling the kernel's route count every 50 ms with one raw netlink dump
 * (bench/route_count.ts), so it carries up to 50 ms of probe granularity.
 *
 * @module
 */
import { Netlink, netnsCreate, netnsDelete, WEFT_ROUTE_PROTOCOL, withNetns } from "../ffi/mod.ts";
import { runIn } from "../src/lab/lab.ts";
import { readSubnetEnv } from "../src/config/subnet_env.ts";
import { subnetKey } from "../src/lease/lease.ts";
import { etcdctl, startEtcd } from "../tests/helpers/etcd.ts";
import { createTopology, type TopologyNode } from "../tests/helpers/topology.ts";
import { lease } from "./convergence.ts";
import { RouteCounter } from "./route_count.ts";
import { BenchArgs } from "./args.ts";

const PREFIX = "/coreos.com/network";
const ROOT = new URL("..", import.meta.url).pathname;
const MAIN = new URL("../main.ts", import.meta.url).pathname;
const CLK_TCK = 100;

/** flanneld v0.20.2 on this kind of machine (shared/ANCHORS.md §7), lower end of each range. */
export const FLANNELD: Record<number, { startS: number; cpuS: number; rssMB: number }> = {
  1000: { startS: 1.46, cpuS: 0.75, rssMB: 37 },
  5000: { startS: 7.3, cpuS: 3.48, rssMB: 38 },
};

/** The issue's goals, as ratios to flanneld (issue 15). */
export const GOALS = {
  start: { 1000: 0.5, 5000: 0.3 } as Record<number, number>,
  cpu: { 5000: 0.5 } as Record<number, number>,
  rss: { 5000: 1.5 } as Record<number, number>,
};

/** CPU seconds, RSS and peak RSS (MB) of a running process, from /proc. */
function procSample(pid: number): { cpuS: number; rssMB: number; hwmMB: number } {
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

/** Wall seconds, CPU seconds and peak RSS (MB) of a command run to completion under GNU time. */
async function timed(
  cmd: string[],
  opts: { cwd?: string; stdin?: string } = {},
): Promise<{ wallS: number; cpuS: number; rssMB: number }> {
  const out = await Deno.makeTempFile({ prefix: "weft-bench-time-" });
  try {
    const child = new Deno.Command("/usr/bin/time", {
      args: ["-o", out, "-f", "%e %U %S %M", ...cmd],
      stdin: opts.stdin !== undefined ? "piped" : "null",
      stdout: "null",
      stderr: "piped",
      ...(opts.cwd ? { cwd: opts.cwd } : {}),
    }).spawn();
    if (opts.stdin !== undefined) {
      const w = child.stdin.getWriter();
      await w.write(new TextEncoder().encode(opts.stdin));
      await w.close();
    }
    const r = await child.output();
    if (r.code !== 0) throw new Error(`${cmd.join(" ")}: ${new TextDecoder().decode(r.stderr)}`);
    const [wall, user, sys, maxKB] = (await Deno.readTextFile(out)).trim().split("\n").at(-1)!.split(" ")
      .map(Number);
    return { wallS: wall!, cpuS: user! + sys!, rssMB: maxKB! / 1024 };
  } finally {
    await Deno.remove(out).catch(() => {});
  }
}

/** The `ip -batch` reference: N peers into a fresh namespace holding eth0 and flannel.1, as the agent does. */
async function ipBatch(n: number, made: string[]): Promise<{ wallS: number; cpuS: number; rssMB: number }> {
  const ns = `wbscale-${Math.floor(Math.random() * 36 ** 6).toString(36)}`;
  netnsCreate(ns);
  made.push(ns);
  {
    using nl = Netlink.open({ netns: ns });
    const br = nl.linkAddBridge({ name: "eth0" });
    nl.linkSetUp(br.index);
    nl.addrReplace(br.index, "192.168.99.1/16");
    const vx = nl.linkAddVxlan({
      name: "flannel.1",
      vni: 1,
      local: "192.168.99.1",
      dev: br.index,
      mtu: 1450,
    });
    nl.addrReplace(vx.index, "10.9.0.0/32");
    nl.linkSetUp(vx.index);
  }
  const neigh: string[] = [], fdb: string[] = [], route: string[] = [];
  for (let i = 0; i < n; i++) {
    const l = lease(i);
    const attrs = JSON.parse(l.value);
    const net = l.key.split("-")[0]!;
    neigh.push(`neigh replace ${net} lladdr ${attrs.BackendData.VtepMAC} dev flannel.1 nud permanent`);
    fdb.push(`fdb replace ${attrs.BackendData.VtepMAC} dev flannel.1 dst ${attrs.PublicIP} self permanent`);
    route.push(`route replace ${net}/24 via ${net} dev flannel.1 onlink proto ${WEFT_ROUTE_PROTOCOL}`);
  }
  const parts = [
    await timed(["ip", "-n", ns, "-batch", "-"], { stdin: neigh.join("\n") + "\n" }),
    await timed(["bridge", "-n", ns, "-batch", "-"], { stdin: fdb.join("\n") + "\n" }),
    await timed(["ip", "-n", ns, "-batch", "-"], { stdin: route.join("\n") + "\n" }),
  ];
  return {
    wallS: parts.reduce((s, p) => s + p.wallS, 0),
    cpuS: parts.reduce((s, p) => s + p.cpuS, 0),
    rssMB: Math.max(...parts.map((p) => p.rssMB)),
  };
}

/** The runtime floors: an empty script, and a script that only imports npm:etcd3 (in this project). */
async function denoFloors(): Promise<{ empty: Awaited<ReturnType<typeof timed>>; etcd3RssMB: number }> {
  const dir = await Deno.makeTempDir({ prefix: "weft-bench-empty-" });
  try {
    await Deno.writeTextFile(`${dir}/empty.ts`, "\n");
    const empty = await timed([Deno.execPath(), "run", "empty.ts"], { cwd: dir });
    const etcd3 = await timed([Deno.execPath(), "eval", 'await import("etcd3");'], { cwd: ROOT });
    return { empty, etcd3RssMB: etcd3.rssMB };
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** Writes the network config and `n` peer leases (200 puts in flight, from inside the underlay). */
async function writeLeases(underlay: string, endpoint: string, n: number): Promise<void> {
  await etcdctl(endpoint, [
    "put",
    `${PREFIX}/config`,
    '{"Network":"10.0.0.0/8","SubnetLen":24,"Backend":{"Type":"vxlan"}}',
  ], {
    netns: underlay,
  });
  const code = `
    import { openEtcdRegistry } from "${new URL("../src/lease/etcd/mod.ts", import.meta.url).href}";
    const reg = await openEtcdRegistry({ endpoints: ["${endpoint}"], prefix: "${PREFIX}" });
    const entries = JSON.parse(await new Response(Deno.stdin.readable).text());
    for (let i = 0; i < entries.length; i += 200) {
      await Promise.all(entries.slice(i, i + 200).map((e) => reg.reserveSubnet(e.key, e.value)));
    }
    await reg.close();`;
  const entries = Array.from({ length: n }, (_, i) => lease(i));
  const r = await runIn(underlay, [Deno.execPath(), "eval", code], { stdin: JSON.stringify(entries) });
  if (r.code !== 0) throw new Error(`writing leases failed: ${r.stderr}`);
}

/** The agent under test right now (killed when the bench is interrupted). */
let current: Deno.ChildProcess | undefined;

/** What one agent start measured. */
interface AgentRun {
  startS: number;
  cpuS: number;
  rssAtStartMB: number;
  /** Median of the settle window's samples. */
  rssMB: number;
  /** Highest of the settle window's samples. */
  rssMaxMB: number;
  hwmMB: number;
}

/** The agent's command line: the README's (`deno run -A main.ts agent`) or a compiled binary's. */
function agentCommand(binary: string | undefined, args: string[]): string[] {
  if (binary) return [binary, "agent", ...args];
  const extra = Deno.env.get("WEFT_BENCH_DENO_FLAGS")?.split(" ").filter(Boolean) ?? [];
  return [Deno.execPath(), "run", "-A", ...extra, MAIN, "agent", ...args];
}

/** Starts one agent on `node`, waits for `n` routes, lets it settle, stops it and drops its lease. */
async function runAgent(
  node: TopologyNode,
  underlay: string,
  endpoint: string,
  n: number,
  opts: { binary: string | undefined; settleS: number; dir: string },
): Promise<AgentRun> {
  const subnetFile = `${opts.dir}/${node.netns}.subnet.env`;
  const log = await Deno.open(`${opts.dir}/${node.netns}.agent.log`, { create: true, append: true });
  const cmd = agentCommand(opts.binary, [
    `--etcd-endpoints=${endpoint}`,
    `--iface=${node.iface}`,
    `--subnet-file=${subnetFile}`,
  ]);
  using counter = new RouteCounter(node.netns, WEFT_ROUTE_PROTOCOL);
  const t0 = performance.now();
  const child = withNetns(node.netns, () =>
    new Deno.Command(cmd[0]!, {
      args: cmd.slice(1),
      cwd: ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn());
  current = child;
  const pumping = Promise.all([child.stdout, child.stderr].map(async (s) => {
    for await (const c of s) log.writeSync(c);
  })).catch(() => {}).finally(() => log.close());
  try {
    let startS = NaN;
    while (performance.now() - t0 < 180_000) {
      if (counter.count() >= n) {
        startS = (performance.now() - t0) / 1000;
        break;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    if (Number.isNaN(startS)) throw new Error(`agent on ${node.netns}: ${n} routes not in within 180 s`);
    const atStart = procSample(child.pid);
    const samples: number[] = [];
    for (const end = Date.now() + opts.settleS * 1000; Date.now() < end;) {
      await new Promise((r) => setTimeout(r, 500));
      samples.push(procSample(child.pid).rssMB);
    }
    return {
      startS,
      cpuS: atStart.cpuS,
      rssAtStartMB: atStart.rssMB,
      rssMB: samples.length ? median(samples) : atStart.rssMB,
      rssMaxMB: samples.length ? Math.max(...samples) : atStart.rssMB,
      hwmMB: procSample(child.pid).hwmMB,
    };
  } finally {
    child.kill("SIGKILL");
    await child.status;
    current = undefined;
    await pumping;
    // Its own lease would be one more peer for the next round's agent.
    try {
      const env = readSubnetEnv(subnetFile);
      await etcdctl(endpoint, ["del", `${PREFIX}/subnets/${subnetKey(env.subnet)}`], { netns: underlay });
    } catch { /* no subnet.env: it never got a lease */ }
  }
}

function median(xs: number[]): number {
  const s = [...xs].filter((x) => !Number.isNaN(x)).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function loadAvg(): string {
  return Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ");
}

/** One CSV/table row: medians of one N. */
export type Row = Record<string, string>;

const fmt = (x: number, d = 2) => Number.isFinite(x) ? x.toFixed(d) : "";

/** Parses the command line. */
function parseArgs(argv: string[]) {
  const args = new BenchArgs(argv);
  const rounds = Number(args.take("--rounds") ?? 3);
  const settleS = Number(args.take("--settle") ?? 25);
  const csv = args.take("--csv") ?? new URL("results/agent_scale.csv", import.meta.url).pathname;
  const binary = args.take("--binary");
  const counts = args.rest.length ? args.rest.map(Number) : [1000, 5000, 10000];
  if (
    counts.some((n) => !Number.isInteger(n) || n < 1 || n > 60000) || !(rounds >= 1) || !(settleS >= 0)
  ) {
    console.error("usage: agent_scale.ts [N…] [--rounds R] [--settle S] [--csv FILE] [--binary PATH]");
    Deno.exit(2);
  }
  return { rounds, settleS, csv, binary, counts };
}

if (import.meta.main) {
  if (Deno.uid() !== 0) {
    console.error("bench/agent_scale.ts needs root (it builds network namespaces)");
    Deno.exit(1);
  }
  const { rounds, settleS, csv, binary, counts } = parseArgs(Deno.args);
  const mode = binary ? `compiled ${binary}` : "source (deno run -A main.ts agent)";
  const extra = Deno.env.get("WEFT_BENCH_DENO_FLAGS");
  console.log(
    `# agent: ${mode}${extra && !binary ? ` + ${extra}` : ""}; ${rounds} rounds, settle ${settleS} s; ` +
      `${navigator.hardwareConcurrency} cores, kernel ${Deno.osRelease()}, Deno ${Deno.version.deno}; ` +
      `load ${loadAvg()}`,
  );
  const made: string[] = [];
  const rows: Row[] = [];
  // Interrupted: stop the agent under test and remove what this run made (the topology and etcd
  // helpers clean up on unload, which Deno.exit runs).
  const interrupted = () => {
    current?.kill("SIGKILL");
    for (const ns of made) netnsDelete(ns);
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", interrupted);
  Deno.addSignalListener("SIGTERM", interrupted);
  const dir = await Deno.makeTempDir({ prefix: "weft-scale-" });
  try {
    for (const n of counts) {
      await using topo = await createTopology({ nodes: rounds + 1 });
      await using etcd = await startEtcd({ netns: topo.underlay, host: topo.underlayIP });
      await writeLeases(topo.underlay, etcd.endpoint, n);
      // Warm-up (discarded): the module cache, V8's code cache, the binaries in the page cache.
      await runAgent(topo.nodes[rounds]!, topo.underlay, etcd.endpoint, n, { binary, settleS: 0, dir });
      const runs: AgentRun[] = [];
      const ip: Awaited<ReturnType<typeof ipBatch>>[] = [];
      const floors: Awaited<ReturnType<typeof denoFloors>>[] = [];
      const loads: string[] = [];
      for (let r = 0; r < rounds; r++) {
        loads.push(loadAvg().split(" ")[0]!);
        runs.push(await runAgent(topo.nodes[r]!, topo.underlay, etcd.endpoint, n, { binary, settleS, dir }));
        ip.push(await ipBatch(n, made));
        floors.push(await denoFloors());
        const a = runs.at(-1)!;
        console.log(
          `  N=${n} round ${r + 1}: start ${fmt(a.startS)} s, CPU ${fmt(a.cpuS)} s, RSS ${
            fmt(a.rssMB, 1)
          } MB ` +
            `(settled max ${fmt(a.rssMaxMB, 1)}, at start ${fmt(a.rssAtStartMB, 1)}, peak ${
              fmt(a.hwmMB, 1)
            }); ip -batch ${fmt(ip.at(-1)!.wallS)} s; ` +
            `load ${loads.at(-1)}`,
        );
      }
      const fl = FLANNELD[n];
      const row: Row = {
        mode: binary ? "compiled" : "source",
        peers: String(n),
        rounds: String(rounds),
        agent_start_s: fmt(median(runs.map((x) => x.startS))),
        agent_cpu_s: fmt(median(runs.map((x) => x.cpuS))),
        agent_rss_mb: fmt(median(runs.map((x) => x.rssMB)), 1),
        agent_rss_max_mb: fmt(median(runs.map((x) => x.rssMaxMB)), 1),
        agent_peak_mb: fmt(median(runs.map((x) => x.hwmMB)), 1),
        agent_rss_at_start_mb: fmt(median(runs.map((x) => x.rssAtStartMB)), 1),
        ip_batch_s: fmt(median(ip.map((x) => x.wallS))),
        ip_batch_cpu_s: fmt(median(ip.map((x) => x.cpuS))),
        ip_batch_rss_mb: fmt(median(ip.map((x) => x.rssMB)), 1),
        empty_deno_s: fmt(median(floors.map((x) => x.empty.wallS))),
        empty_deno_rss_mb: fmt(median(floors.map((x) => x.empty.rssMB)), 1),
        deno_etcd3_rss_mb: fmt(median(floors.map((x) => x.etcd3RssMB)), 1),
        flanneld_start_s: fmt(fl?.startS ?? NaN),
        flanneld_cpu_s: fmt(fl?.cpuS ?? NaN),
        flanneld_rss_mb: fmt(fl?.rssMB ?? NaN, 0),
        start_vs_flanneld: fmt(median(runs.map((x) => x.startS)) / (fl?.startS ?? NaN)),
        cpu_vs_flanneld: fmt(median(runs.map((x) => x.cpuS)) / (fl?.cpuS ?? NaN)),
        rss_vs_flanneld: fmt(median(runs.map((x) => x.rssMB)) / (fl?.rssMB ?? NaN)),
        load1: fmt(median(loads.map(Number))),
      };
      rows.push(row);
      console.log(JSON.stringify(row));
    }
  } finally {
    for (const ns of made) netnsDelete(ns);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  printTable(rows);
  await Deno.mkdir(new URL(".", `file://${csv}`).pathname, { recursive: true });
  const cols = Object.keys(rows[0]!);
  await Deno.writeTextFile(
    csv,
    [cols.join(","), ...rows.map((r) => cols.map((c) => r[c]).join(","))].join("\n") + "\n",
  );
  console.log(`\nwrote ${csv}`);
}

/** The human-readable summary: weft beside its references, and each ratio against its goal. */
function printTable(rows: Row[]): void {
  const verdict = (ratio: string, goal: number | undefined) =>
    goal === undefined || ratio === ""
      ? ""
      : Number(ratio) <= goal
      ? ` (≤ ${goal}: met)`
      : ` (≤ ${goal}: NOT met)`;
  console.log(
    "\npeers | start s (flanneld, ratio) | CPU s (flanneld, ratio) | RSS MB settled median / max / peak (flanneld, ratio) |" +
      " ip -batch s / CPU s / MB | empty Deno s / MB | Deno+etcd3 MB",
  );
  for (const r of rows) {
    const n = Number(r.peers);
    console.log(
      `${r.peers} | ${r.agent_start_s} (${r.flanneld_start_s || "—"}, ${r.start_vs_flanneld || "—"}${
        verdict(r.start_vs_flanneld!, GOALS.start[n])
      }) | ${r.agent_cpu_s} (${r.flanneld_cpu_s || "—"}, ${r.cpu_vs_flanneld || "—"}${
        verdict(r.cpu_vs_flanneld!, GOALS.cpu[n])
      }) | ${r.agent_rss_mb} / ${r.agent_rss_max_mb} / ${r.agent_peak_mb} (${r.flanneld_rss_mb || "—"}, ${
        r.rss_vs_flanneld || "—"
      }${
        verdict(r.rss_vs_flanneld!, GOALS.rss[n])
      }) | ${r.ip_batch_s} / ${r.ip_batch_cpu_s} / ${r.ip_batch_rss_mb} | ${r.empty_deno_s} / ${r.empty_deno_rss_mb} | ${r.deno_etcd3_rss_mb}`,
    );
  }
}
