/**
 * Network policy costs.
 *
 * Throughput: iperf3 TCP pod to pod (across the two nodes over weft vxlan, and within one node over
 * cni0) with 100 NetworkPolicies in force — all selecting the server pod, one of them allowing the
 * client — against no policy table at all, in interleaved rounds (the machine's bandwidth drifts;
 * medians of interleaved runs compare like with like). Goal: ≥ 0.95× (only a connection's first packet
 * walks the policy chains; the rest match `ct state established` first).
 *
 * Run: `deno run -A bench/policy.ts [seconds]` (default 5 s per iperf3 run; WEFT_BENCH_ROUNDS rounds,
 * default 3). Needs root, etcd, iperf3.
 *
 * @module
 */
import { withNetns } from "../ffi/mod.ts";
import { runIn } from "../src/lab/lab.ts";
import { compilePolicies } from "../src/policy/compile.ts";
import { PolicyTable } from "../src/policy/nft_table.ts";
import type { NetworkPolicy } from "../src/policy/types.ts";
import { NODE_NAMES, policy } from "../tests/helpers/netpol_cases.ts";
import type { ModelCluster } from "../tests/helpers/netpol_model.ts";
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

function install(m: NetpolMatrix, tables: PolicyTable[], cluster: ModelCluster | undefined): void {
  m.topo.nodes.forEach((n, i) =>
    withNetns(n.netns, () => {
      if (!cluster) return tables[i]!.remove();
      tables[i]!.apply(compilePolicies({
        policies: cluster.policies.values(),
        pods: cluster.podObjects(),
        namespaces: cluster.namespaceObjects(),
        nodeName: NODE_NAMES[i]!,
      }));
    })
  );
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
  const tables = m.topo.nodes.map(() => new PolicyTable());
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
      install(m, tables, mode === "none" ? undefined : cluster);
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

if (import.meta.main) {
  if (Deno.uid() !== 0) {
    console.error("bench/policy.ts needs root");
    Deno.exit(1);
  }
  await throughput();
}
