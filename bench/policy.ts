/**
 * Network policy costs.
 *
 * Throughput: iperf3 TCP pod to pod (across the two nodes over weft vxlan, and within one node over
 * cni0) with 100 NetworkPolicies in force — all selecting the server pod, one of them allowing the
 * client — against no policy table at all, in interleaved rounds (the machine's bandwidth drifts;
 * medians of interleaved runs compare like with like). Goal: ≥ 0.95× (only a connection's first packet
 * walks the policy chains; the rest match `ct state established` first).
 *
 * Latency: a policy change through the Kubernetes API → the agent's nftables commit, p50/p99 over 100
 * changes, beside a plain API watcher's latency for the same writes (see {@linkcode latency}).
 *
 * Run: `deno run -A bench/policy.ts [seconds]` (default 5 s per iperf3 run; WEFT_BENCH_ROUNDS rounds,
 * default 3; WEFT_BENCH_CHANGES changes, default 100; WEFT_BENCH_ONLY=latency|throughput). Needs root,
 * etcd, iperf3, nft.
 *
 * @module
 */
import { withNetns } from "../ffi/mod.ts";
import { runIn } from "../src/lab/lab.ts";
import { compilePolicies } from "../src/policy/compile.ts";
import { NodeTable } from "../tests/helpers/netpol_direct.ts";
import type { NetworkPolicy } from "../src/policy/types.ts";
import { NODE_NAMES, policy } from "../tests/helpers/netpol_cases.ts";
import type { ModelCluster } from "../tests/helpers/netpol_model.ts";
import { metric } from "../tests/helpers/agent.ts";
import type { KubeApiServer } from "../tests/helpers/kube_api_server.ts";
import { KUBE_TOKEN, kubeControlPlane, KubeDriver } from "../tests/helpers/netpol_kube.ts";
import { NetpolMatrix } from "../tests/helpers/netpol_matrix.ts";

const SECONDS = Number(Deno.args[0] ?? 5);
const ROUNDS = Number(Deno.env.get("WEFT_BENCH_ROUNDS") ?? 3);

/** 100 policies selecting x/a: 99 allowing other namespaces on other ports, one allowing y on 5201. */
export function hundredPolicies(): NetworkPolicy[] {
  const out: NetworkPolicy[] = [];
  for (let i = 0; i < 99; i++) {
    out.push(policy("x", `filler-${i}`, {
      podSelector: i % 2 ? {} : { matchLabels: { pod: "a" } },
      ingress: [{
        from: [{ namespaceSelector: { matchLabels: { ns: `other-${i}` } } }, {
          ipBlock: { cidr: `10.${i}.0.0/16` },
        }],
        ports: [{ port: 1000 + i }, { protocol: "UDP", port: 2000 + i, endPort: 2010 + i }],
      }],
    }));
  }
  out.push(policy("x", "iperf", {
    podSelector: { matchLabels: { pod: "a" } },
    ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: "y" } } }], ports: [{ port: 5201 }] }],
  }));
  return out;
}

async function install(
  tables: NodeTable[],
  cluster: ModelCluster | undefined,
): Promise<void> {
  for (const [i, t] of tables.entries()) {
    if (!cluster) {
      await t.table.remove();
      continue;
    }
    await t.apply(compilePolicies({
      policies: cluster.policies.values(),
      pods: cluster.podObjects(),
      namespaces: cluster.namespaceObjects(),
      nodeName: NODE_NAMES[i]!,
    }));
  }
}

async function iperf(m: NetpolMatrix, from: string, to: string): Promise<number> {
  const server = m.pods.get(to)!, client = m.pods.get(from)!;
  const srv = withNetns(
    server.netns,
    () =>
      new Deno.Command("iperf3", { args: ["-s", "-1", "-B", server.ip], stdout: "null", stderr: "null" })
        .spawn(),
  );
  try {
    await new Promise((r) => setTimeout(r, 300));
    const c = await runIn(client.netns, ["iperf3", "-c", server.ip, "-t", String(SECONDS), "-J"]);
    if (c.code !== 0) throw new Error(`iperf3 ${from} -> ${to}: ${c.stdout.slice(0, 300)} ${c.stderr}`);
    return (JSON.parse(c.stdout) as { end: { sum_received: { bits_per_second: number } } })
      .end.sum_received.bits_per_second / 1e9;
  } finally {
    try {
      srv.kill("SIGKILL");
    } catch { /* exited after one test */ }
    await srv.status;
  }
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** Throughput with 100 policies vs none; prints and returns the medians. */
export async function throughput(): Promise<Record<string, { none: number; policies: number }>> {
  // x/a (node 0) serves; y/b (node 1) crosses the nodes, y/c (node 0) stays on the node.
  await using m = await NetpolMatrix.create({
    backend: "vxlan",
    pods: [{ key: "x/a", node: 0 }, { key: "y/b", node: 1 }, { key: "y/c", node: 0 }],
    agentArgs: ["--ip-masq"],
  });
  const tables = m.topo.nodes.map((n, i) => new NodeTable(n.netns, [m.envs[i]!.subnet!]));
  const cluster = m.newCluster();
  for (const p of hundredPolicies()) cluster.apply({ put: p });
  const rules = compilePolicies({
    policies: cluster.policies.values(),
    pods: cluster.podObjects(),
    namespaces: cluster.namespaceObjects(),
    nodeName: NODE_NAMES[0]!,
  });
  console.log(`x/a isolated by ${rules.pods[0]?.ingress?.policies.length} policies`);
  const samples: Record<string, { none: number[]; policies: number[] }> = {
    "cross-node (vxlan)": { none: [], policies: [] },
    "same node (cni0)": { none: [], policies: [] },
  };
  const pairs: [string, string, string][] = [["cross-node (vxlan)", "y/b", "x/a"], [
    "same node (cni0)",
    "y/c",
    "x/a",
  ]];
  for (let r = 0; r < ROUNDS; r++) {
    for (const mode of ["none", "policies"] as const) {
      await install(tables, mode === "none" ? undefined : cluster);
      for (const [name, from, to] of pairs) samples[name]![mode].push(await iperf(m, from, to));
    }
  }
  const out: Record<string, { none: number; policies: number }> = {};
  console.log(`medians of ${ROUNDS} interleaved ${SECONDS} s iperf3 runs`);
  console.log("path                  none Gbit/s  100 policies Gbit/s  ratio");
  for (const [name, s] of Object.entries(samples)) {
    out[name] = { none: median(s.none), policies: median(s.policies) };
    const fmt = (xs: number[]) => xs.map((x) => x.toFixed(2)).join(" ");
    // Each round measured both back to back: the median of the per-round ratios is the least drift-prone.
    const paired = median(s.policies.map((p, i) => p / s.none[i]!));
    console.log(`  ${name}: median of per-round ratios ${paired.toFixed(3)}`);
    console.log(`  ${name} samples: none [${fmt(s.none)}]  policies [${fmt(s.policies)}]`);
    console.log(
      `${name.padEnd(22)}${out[name].none.toFixed(2).padStart(11)}  ${
        out[name].policies.toFixed(2).padStart(19)
      }  ${(out[name].policies / out[name].none).toFixed(3)}`,
    );
  }
  return out;
}

/** Percentile (0–100) of `xs`. */
function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
}

/** High-resolution wall-clock time, ms (comparable across processes). */
const wallNow = () => performance.timeOrigin + performance.now();

/** Reads a child's stdout lines as they come, with their arrival time (wall clock, ms). */
function lines(child: Deno.ChildProcess, onLine: (line: string, at: number) => void): Promise<void> {
  return (async () => {
    let buf = "";
    const dec = new TextDecoder();
    for await (const chunk of child.stdout) {
      const at = wallNow();
      buf += dec.decode(chunk, { stream: true });
      let nl;
      while ((nl = buf.indexOf("\n")) >= 0) {
        onLine(buf.slice(0, nl), at);
        buf = buf.slice(nl + 1);
      }
    }
  })();
}

/**
 * Policy change → enforced: `weft agent --kube-subnet-mgr --network-policy` on two nodes, 100 policies
 * selecting x/a, and one more ("flip") switched `n` times between "allow namespace y on TCP 80" and
 * "allow namespace z on TCP 80" through the API. Timed from the API write to the agent's nftables commit
 * in x/a's node (`nft monitor`: "# new generation … by process <agent pid>"); after each change a probe
 * checks the verdict (untimed). Reference, same run: the same write seen by a plain list+watch client
 * (src/kube's, as the agent uses) in the same node — what any API watcher pays before doing anything.
 */
export async function latency(n = 100): Promise<{ agent: number[]; watch: number[] }> {
  let api!: KubeApiServer;
  await using m = await NetpolMatrix.create({
    backend: "vxlan",
    pods: [{ key: "x/a", node: 0 }, { key: "y/b", node: 1 }],
    controlPlane: kubeControlPlane((a) => api = a),
  });
  const driver = new KubeDriver(api);
  const flip = (ns: string) =>
    policy("x", "flip", {
      podSelector: { matchLabels: { pod: "a" } },
      ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns } } }], ports: [{ port: 80 }] }],
    });
  const cluster = m.newCluster();
  for (const p of [...hundredPolicies(), flip("z")]) cluster.apply({ put: p });
  await driver.sync(cluster, m);
  const node = m.topo.nodes[0]!;
  const commits: { at: number; pid: number }[] = [];
  const monitor = withNetns(
    node.netns,
    () => new Deno.Command("nft", { args: ["monitor"], stdout: "piped", stderr: "null" }).spawn(),
  );
  const monitoring = lines(monitor, (l, at) => {
    const g = l.match(/^# new generation \d+ by process (\d+)/);
    if (g) commits.push({ at, pid: Number(g[1]) });
  });
  const ca = `${m.dir}/ca.pem`;
  Deno.writeTextFileSync(ca, api.caPem!);
  const seen: number[] = [];
  const ready = Promise.withResolvers<void>();
  const watcher = withNetns(node.netns, () =>
    new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--no-check",
        new URL("./policy_watch.ts", import.meta.url).pathname,
        api.url,
        KUBE_TOKEN,
        ca,
      ],
      stdout: "piped",
      stderr: "inherit",
    }).spawn());
  const watching = lines(watcher, (l) => l === "ready" ? ready.resolve() : seen.push(Number(l)));
  await ready.promise;
  const agentPid = m.agents[0]!.pid;
  // nft monitor names the committing thread: the agent commits from a thread of its blocking pool.
  const ofAgent = (tid: number) => {
    if (tid === agentPid) return true;
    try {
      Deno.statSync(`/proc/${agentPid}/task/${tid}`);
      return true;
    } catch {
      return false;
    }
  };
  // The agent's own view (its histogram): from the change seen by its watch to the table installed.
  const inside = async () => ({
    sum: await metric(m.agents[0]!, "weft_policy_update_latency_seconds_sum"),
    count: await metric(m.agents[0]!, "weft_policy_update_latency_seconds_count"),
  });
  const before = await inside();
  const NetworkPolicy = api.store.kindByName("NetworkPolicy");
  const agent: number[] = [], watch: number[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const ns = i % 2 === 0 ? "y" : "z";
      const c0 = commits.length, s0 = seen.length;
      const t0 = wallNow();
      api.store.update(NetworkPolicy, "x", "flip", flip(ns));
      const found = () => commits.slice(c0).find((c) => ofAgent(c.pid));
      while ((!found() || seen.length === s0) && wallNow() - t0 < 10_000) {
        await new Promise((r) => setTimeout(r, 1));
      }
      if (!found() || seen.length === s0) throw new Error(`change ${i}: not enforced and seen within 10 s`);
      agent.push(found()!.at - t0);
      watch.push(seen[s0]! - t0);
      const ok = await m.probeOnce("y/b", "x/a", { proto: "tcp", port: 80 }, ns === "y" ? 3000 : 300);
      if (ok !== (ns === "y")) throw new Error(`change ${i}: y/b -> x/a ${ok}, expected ${ns === "y"}`);
    }
  } finally {
    for (const c of [monitor, watcher]) {
      try {
        c.kill("SIGTERM");
      } catch { /* gone */ }
    }
    await Promise.all([monitoring, watching, monitor.status, watcher.status]);
    driver.close();
  }
  const row = (name: string, xs: number[]) =>
    console.log(
      `${name.padEnd(40)}${pct(xs, 50).toFixed(1).padStart(8)}${pct(xs, 99).toFixed(1).padStart(8)}${
        Math.max(...xs).toFixed(1).padStart(8)
      }`,
    );
  const after = await inside();
  console.log(`policy change -> enforced, ${n} changes, 101 policies on x/a (ms)     p50     p99     max`);
  row("agent: API write -> nftables commit", agent);
  row("reference: API write -> watch event", watch);
  const mean = ((after.sum - before.sum) / (after.count - before.count)) * 1000;
  console.log(
    `agent's own histogram: change seen -> installed, mean ${mean.toFixed(1)} ms over ${
      after.count - before.count
    }`,
  );
  return { agent, watch };
}

if (import.meta.main) {
  if (Deno.uid() !== 0) {
    console.error("bench/policy.ts needs root");
    Deno.exit(1);
  }
  const only = Deno.env.get("WEFT_BENCH_ONLY");
  if (only !== "throughput") await latency(Number(Deno.env.get("WEFT_BENCH_CHANGES") ?? 100));
  if (only !== "latency") await throughput();
}
