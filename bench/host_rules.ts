/**
 * The masquerade/forward rules at rest, over 60 s at the default `--iptables-resync` (5 s): nft monitor
 * events (every rule write through iptables-nft or nftables is one), the agent's own pass, read and write
 * counters, and the agent's CPU time — with `EnableNFTables: false` (iptables-nft, FORWARD policy DROP and a
 * REJECT as a hostile host has them) beside `EnableNFTables: true` on the same host, in the same run.
 *
 * Usage: `deno run -A bench/host_rules.ts [seconds]` (root; one node namespace each, removed afterwards).
 *
 * @module
 */
import { withNetns } from "../ffi/mod.ts";
import { agentHttp, startAgent, waitReady, waitSubnetEnv } from "../tests/helpers/agent.ts";
import { etcdctl, startEtcd } from "../tests/helpers/etcd.ts";
import { createTopology } from "../tests/helpers/topology.ts";
import { parsePrometheusText } from "../src/cli/status.ts";

const SECONDS = Number(Deno.args[0] ?? 60);
const TICK = 100; // /proc/<pid>/stat times are in clock ticks (USER_HZ)

/** The agent's CPU time and its children's (iptables-save, iptables-restore), seconds. */
function cpuSeconds(pid: number): number {
  const f = Deno.readTextFileSync(`/proc/${pid}/stat`).split(") ")[1]!.split(" ");
  return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / TICK; // u/stime + cu/cstime
}

async function sum(a: Parameters<typeof agentHttp>[0], name: string): Promise<number> {
  const [, body] = await agentHttp(a, "/metrics");
  return parsePrometheusText(body).filter((s) => s.name === name).reduce((x, s) => x + s.value, 0);
}

await using topo = await createTopology({ nodes: 2 });
const dir = await Deno.makeTempDir({ prefix: "weft-bench-rules-" });
await using etcd = await startEtcd({ netns: topo.underlay, host: topo.underlayIP });
for (const [prefix, nft] of [["/b/ipt", false], ["/b/nft", true]] as const) {
  await etcdctl(etcd.endpoint, [
    "put",
    `${prefix}/config`,
    JSON.stringify({ Network: "10.244.0.0/16", EnableNFTables: nft, Backend: { Type: "vxlan" } }),
  ], { netns: topo.underlay });
}
for (const n of topo.nodes) {
  await topo.exec(n, ["iptables-nft", "-P", "FORWARD", "DROP"]);
  await topo.exec(n, ["iptables-nft", "-A", "FORWARD", "-j", "REJECT"]);
}
const agents = topo.nodes.map((n, i) =>
  startAgent(n, {
    etcd: etcd.endpoint,
    dir,
    args: ["--ip-masq", `--etcd-prefix=/b/${i === 0 ? "ipt" : "nft"}`],
  })
);
try {
  await Promise.all(agents.map((a) => waitSubnetEnv(a)));
  await Promise.all(agents.map((a) => waitReady(a)));
  await new Promise((r) => setTimeout(r, 6000)); // past the first passes
  const monitors = topo.nodes.map((n) =>
    withNetns(
      n.netns,
      () => new Deno.Command("nft", { args: ["monitor"], stdout: "piped", stderr: "null" }).spawn(),
    )
  );
  const heard = monitors.map(async (m) => {
    let t = "";
    for await (const c of m.stdout) t += new TextDecoder().decode(c);
    return t.split("\n").filter((l) => l.trim() && !l.startsWith("#")).length;
  });
  const before = await Promise.all(agents.map(async (a) => ({
    writes: await sum(a, "weft_host_rules_writes_total"),
    passes: await sum(a, "weft_host_rules_passes_total"),
    reads: await sum(a, "weft_host_rules_reads_total"),
    cpu: cpuSeconds(a.pid),
  })));
  await new Promise((r) => setTimeout(r, SECONDS * 1000));
  const after = await Promise.all(agents.map(async (a) => ({
    writes: await sum(a, "weft_host_rules_writes_total"),
    passes: await sum(a, "weft_host_rules_passes_total"),
    reads: await sum(a, "weft_host_rules_reads_total"),
    cpu: cpuSeconds(a.pid),
  })));
  for (const m of monitors) m.kill("SIGTERM");
  const events = await Promise.all(heard);
  console.log(
    `masquerade/forward rules at rest, ${SECONDS} s, --iptables-resync 5 s, --resync-interval 10 s`,
  );
  console.log("mode                      passes  reads  writes  nft events  CPU (s, agent + its children)");
  for (const [i, name] of ["EnableNFTables false", "EnableNFTables true "].entries()) {
    const d = {
      passes: after[i]!.passes - before[i]!.passes,
      reads: after[i]!.reads - before[i]!.reads,
      writes: after[i]!.writes - before[i]!.writes,
    };
    const cpu = after[i]!.cpu - before[i]!.cpu;
    console.log(
      `${name} (${i ? "nftables    " : "iptables-nft"})  ${String(d.passes).padStart(4)}  ${
        String(d.reads).padStart(5)
      }  ${String(d.writes).padStart(6)}  ${String(events[i]).padStart(10)}  ${cpu.toFixed(2).padStart(12)}`,
    );
  }
  const ratio = (after[0]!.cpu - before[0]!.cpu) / Math.max(0.01, after[1]!.cpu - before[1]!.cpu);
  console.log(`CPU ratio iptables mode / nftables mode (same run): ${ratio.toFixed(2)}`);
} finally {
  await Promise.all(agents.map((a) => a.stop("SIGKILL")));
  await Deno.remove(dir, { recursive: true }).catch(() => {});
}
