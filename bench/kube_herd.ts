/**
 * A herd of agents against one API server that restarts: `--agents` (default 50) processes of
 * bench/kube_herd_agent.ts (the agent's whole API side, production timing, no datapath), each with its own
 * credentials, against one test API server (HTTPS) holding their Nodes plus `--peers` realistic peer Nodes.
 * Once all have synced, the server stops for `--down` seconds (default 10) and starts again with its
 * history (no 410). Measured:
 *
 * - when each agent came back (its first accepted watch after the restart, server side): a histogram —
 *   with full jitter the returns spread over the back-off window instead of arriving in lock-step;
 * - every attempt the agents made during and after the outage (their retry log lines): a histogram over
 *   time, and attempts per agent;
 * - requests per second the server saw after the restart (peak, 1 s buckets), and LISTs (goal 0);
 * - convergence: a Node created after the restart, seen by every agent (time to the last one).
 *
 * Run: `deno run -A bench/kube_herd.ts [--agents N] [--peers P] [--down S] [--csv FILE]`. No root needed.
 *
 * @module
 */
import { startKubeApiServer } from "../tests/helpers/kube_api_server.ts";
import { realisticNode } from "../tests/helpers/kube_nodes.ts";
import { peerNode } from "./kube_scale.ts";

const AGENT = new URL("./kube_herd_agent.ts", import.meta.url).pathname;
const ROOT = new URL("..", import.meta.url).pathname;

function arg(name: string, dflt: number): number {
  const i = Deno.args.indexOf(name);
  return i >= 0 ? Number(Deno.args[i + 1]) : dflt;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A text histogram of `values` (ms) in `bucketMs` buckets from `from`. */
export function histogram(values: number[], bucketMs: number, from = 0): string[] {
  if (!values.length) return ["(none)"];
  const buckets = new Map<number, number>();
  for (const v of values) {
    const b = Math.floor((v - from) / bucketMs);
    buckets.set(b, (buckets.get(b) ?? 0) + 1);
  }
  const last = Math.max(...buckets.keys());
  const out: string[] = [];
  for (let b = Math.min(0, ...buckets.keys()); b <= last; b++) {
    const n = buckets.get(b) ?? 0;
    const lo = ((from + b * bucketMs) / 1000).toFixed(1),
      hi = ((from + (b + 1) * bucketMs) / 1000).toFixed(1);
    out.push(`${lo.padStart(6)}–${hi.padEnd(6)} s | ${"#".repeat(n)} ${n}`);
  }
  return out;
}

interface Agent {
  name: string;
  child: Deno.ChildProcess;
  synced: boolean;
  saw: Map<string, number>;
  /** Retry log lines: [time ms, delay ms]. */
  retries: [number, number][];
}

async function pump(a: Agent): Promise<void> {
  const dec = new TextDecoder();
  const read = async (s: ReadableStream<Uint8Array>, onLine: (o: Record<string, unknown>) => void) => {
    let buf = "";
    for await (const c of s) {
      buf += dec.decode(c, { stream: true });
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        try {
          onLine(JSON.parse(line));
        } catch { /* not JSON */ }
      }
    }
  };
  await Promise.all([
    read(a.child.stdout, (o) => {
      if (o.ev === "synced") a.synced = true;
      if (o.ev === "saw") a.saw.set(String(o.key), Number(o.t));
    }),
    read(a.child.stderr, (o) => {
      if (typeof o.ms === "number" && /retrying in/.test(String(o.msg))) {
        a.retries.push([Date.parse(String(o.ts)), o.ms]);
      }
    }),
  ]);
}

if (import.meta.main) {
  const n = arg("--agents", 50), peers = arg("--peers", 200), downS = arg("--down", 10);
  const csvI = Deno.args.indexOf("--csv");
  const csv = csvI >= 0 ? Deno.args[csvI + 1]! : new URL("results/kube_herd.csv", import.meta.url).pathname;
  console.log(
    `# ${new Date().toISOString()} kube_herd: ${n} agents, ${peers} peers, server down ${downS} s; load ${
      Deno.readTextFileSync("/proc/loadavg").split(" ").slice(0, 3).join(" ")
    }`,
  );
  const tokens = Object.fromEntries([...Array(n).keys()].map((i) => [`t${i}`, `herd-${i}`]));
  await using api = await startKubeApiServer({ tls: true, tokens, bookmarkMs: 60_000, historySize: 10_000 });
  const Node = api.store.kindByName("Node");
  for (let i = 0; i < peers; i++) api.store.create(Node, "", peerNode(i));
  const dir = await Deno.makeTempDir({ prefix: "weft-kube-herd-" });
  await Deno.writeTextFile(`${dir}/net-conf.json`, '{"Network":"10.0.0.0/8","Backend":{"Type":"vxlan"}}');
  const agents: Agent[] = [];
  try {
    for (let i = 0; i < n; i++) {
      api.store.create(
        Node,
        "",
        realisticNode({ name: `herd-${i}`, podCIDR: `10.200.${i}.0/24`, internalIP: `192.168.100.${i}` }),
      );
      await api.writeKubeconfig(`${dir}/kc${i}`, { token: `t${i}` });
    }
    const t0 = Date.now();
    for (let i = 0; i < n; i++) {
      const child = new Deno.Command(Deno.execPath(), {
        args: ["run", "-A", "--no-check", AGENT, `${dir}/kc${i}`, `${dir}/net-conf.json`, `herd-${i}`],
        cwd: ROOT,
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const a: Agent = { name: `herd-${i}`, child, synced: false, saw: new Map(), retries: [] };
      agents.push(a);
      void pump(a);
    }
    while (!agents.every((a) => a.synced)) {
      if (Date.now() - t0 > 600_000) throw new Error("agents did not all sync in 10 min");
      await sleep(200);
    }
    console.log(`all ${n} agents synced in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    await sleep(3000);
    const mark = api.mark();
    for (const a of agents) a.retries.length = 0;
    await api.stop();
    const stopAt = Date.now();
    await sleep(downS * 1000);
    api.start();
    const upAt = Date.now();
    const back = () =>
      agents.map((a) =>
        api.requests.find((r) => r.seq > mark && r.user === a.name && r.verb === "watch" && r.status === 200)
      );
    while (back().some((r) => !r)) {
      if (Date.now() - upAt > 180_000) throw new Error("not every agent came back in 3 min");
      await sleep(200);
    }
    const returns = back().map((r) => r!.at - upAt).sort((x, y) => x - y);
    await sleep(2000);
    // Converge on a change made after the restart.
    const late = peerNode(peers + 1);
    const key = `${(late.spec as { podCIDR: string }).podCIDR.replace("/", "-")}`;
    const c0 = Date.now();
    api.store.create(Node, "", late);
    while (!agents.every((a) => a.saw.has(key))) {
      if (Date.now() - c0 > 60_000) throw new Error("not every agent saw the late node");
      await sleep(100);
    }
    const convergeMs = Math.max(...agents.map((a) => a.saw.get(key)! - c0));
    const after = api.requests.filter((r) => r.seq > mark && r.verb);
    const perSecond = new Map<number, number>();
    for (const r of after) {
      perSecond.set(
        Math.floor((r.at - upAt) / 1000),
        (perSecond.get(Math.floor((r.at - upAt) / 1000)) ?? 0) + 1,
      );
    }
    const attempts = agents.map((a) => a.retries.length);
    const allRetries = agents.flatMap((a) => a.retries.map(([t]) => t - stopAt));
    console.log(
      `\nreturns after the restart (first accepted watch per agent, ms after the server was back):`,
    );
    console.log(`  min ${returns[0]} median ${returns[returns.length >> 1]} max ${returns.at(-1)}`);
    for (const l of histogram(returns, 1000)) console.log("  " + l);
    console.log(
      `\nfailed attempts over time (each agent's retry log lines; 0 = server stopped, server back at ${downS} s):`,
    );
    for (const l of histogram(allRetries, 1000)) console.log("  " + l);
    console.log(
      `\nfailed attempts per agent: min ${Math.min(...attempts)} median ${
        attempts.sort((x, y) => x - y)[attempts.length >> 1]
      } max ${Math.max(...attempts)}`,
    );
    console.log(
      `requests after the restart: ${after.length} (${JSON.stringify(api.counts(mark))}); peak ${
        Math.max(...perSecond.values())
      }/s; LISTs ${api.count({ verb: "list" }, mark)}`,
    );
    console.log(`a Node created after the restart reached all ${n} agents in ${convergeMs} ms`);
    const row = {
      agents: n,
      peers,
      down_s: downS,
      return_min_ms: returns[0],
      return_median_ms: returns[returns.length >> 1],
      return_max_ms: returns.at(-1),
      attempts_max: Math.max(...attempts),
      requests_after: after.length,
      peak_per_s: Math.max(...perSecond.values()),
      lists_after: api.count({ verb: "list" }, mark),
      converge_ms: convergeMs,
    };
    await Deno.mkdir(new URL(".", `file://${csv}`).pathname, { recursive: true });
    await Deno.writeTextFile(csv, `${Object.keys(row).join(",")}\n${Object.values(row).join(",")}\n`);
    await Deno.writeTextFile(
      csv.replace(/\.csv$/, "_returns.csv"),
      "return_ms\n" + returns.join("\n") + "\n",
    );
    console.log(`\nwrote ${csv}`);
  } finally {
    for (const a of agents) {
      try {
        a.child.kill("SIGKILL");
      } catch { /* gone */ }
      await a.child.status.catch(() => {});
    }
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
