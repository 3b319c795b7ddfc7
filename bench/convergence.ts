/**
 * Convergence, scale and memory of one real `weft agent` with N simulated peers (vxlan leases written
 * straight to etcd), for N = 10, 100, 1000, 5000 (or the N given):
 *
 * - start → all N peers' routes in the kernel (wall time), agent CPU seconds and RSS at that point;
 * - one new lease put → its route in the kernel, p50/p99 over 40 events;
 * - CPU seconds of one full resync pass with N peers (agent CPU over an idle period of resyncs);
 * - agent RSS idle (no peers) for reference.
 *
 * Reference in the same run: the time `etcdctl put` itself takes (the floor of any watch-driven
 * reaction), and flanneld's figures measured on this kind of machine (shared/ANCHORS.md §7) are quoted
 * in BENCHMARKS.md.
 *
 * Run: `deno run -A bench/convergence.ts [N…]`. Needs root.
 *
 * @module
 */
import { Netlink } from "../ffi/mod.ts";
import { runIn } from "../src/cli/lab.ts";
import { leaseAttrsJSON } from "../src/subnet/lease.ts";
import { createTopology } from "../tests/helpers/topology.ts";
import { startEtcd } from "../tests/helpers/etcd.ts";
import { startAgent, waitFor } from "../tests/helpers/agent.ts";

const PREFIX = "/coreos.com/network";
const counts = Deno.args.length ? Deno.args.map(Number) : [10, 100, 1000, 5000];
const CLK_TCK = 100;

function procStats(pid: number): { cpu: number; rssMB: number } {
  // The agent runs as `deno run …` directly (no wrapper), so its pid is the agent.
  const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const cpu = (Number(f[11]) + Number(f[12])) / CLK_TCK;
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  const rss = Number(status.match(/VmRSS:\s+(\d+)/)?.[1] ?? 0) / 1024;
  return { cpu, rssMB: rss };
}

function lease(i: number): { key: string; value: string } {
  const hi = i >> 8, lo = i & 255;
  return {
    key: `10.${100 + hi}.${lo}.0-24`,
    value: leaseAttrsJSON({
      PublicIP: `192.168.${80 + hi}.${lo === 0 ? 254 : lo}`,
      PublicIPv6: null,
      BackendType: "vxlan",
      BackendData: {
        VNI: 1,
        VtepMAC: `0a:00:00:00:${hi.toString(16).padStart(2, "0")}:${lo.toString(16).padStart(2, "0")}`,
      },
    }),
  };
}

function pct(xs: number[], p: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

async function runOne(n: number): Promise<Record<string, string>> {
  await using topo = await createTopology({ nodes: 1 });
  await using etcd = await startEtcd({ netns: topo.underlay, host: topo.underlayIP });
  const dir = await Deno.makeTempDir({ prefix: "weft-conv-" });
  // etcd lives in the underlay namespace, unreachable from here: leases are written by a small deno
  // child (etcd3 client, 200 puts in flight) started inside the underlay.
  const put = async (entries: { key: string; value: string }[]) => {
    const code = `
      import { openEtcdRegistry } from "${new URL("../src/subnet/mod.ts", import.meta.url).href}";
      const reg = await openEtcdRegistry({ endpoints: ["${etcd.endpoint}"], prefix: "${PREFIX}" });
      const entries = JSON.parse(await new Response(Deno.stdin.readable).text());
      for (let i = 0; i < entries.length; i += 200) {
        await Promise.all(entries.slice(i, i + 200).map((e) => reg.reserveSubnet(e.key, e.value)));
      }
      await reg.close();`;
    const r = await runIn(topo.underlay, [Deno.execPath(), "eval", code], { stdin: JSON.stringify(entries) });
    if (r.code !== 0) throw new Error(`writing leases failed: ${r.stderr}`);
  };
  const cfg = await runIn(topo.underlay, [
    "etcdctl",
    `--endpoints=${etcd.endpoint}`,
    "put",
    `${PREFIX}/config`,
    '{"Network":"10.0.0.0/8","SubnetLen":24}',
  ], {
    env: { ETCDCTL_API: "3", PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" },
  });
  if (cfg.code !== 0) throw new Error(cfg.stderr);
  await put(Array.from({ length: n }, (_, i) => lease(i)));

  const node = topo.nodes[0]!;
  using nl = Netlink.open({ netns: node.netns });
  const t0 = performance.now();
  const agent = startAgent(node, { etcd: etcd.endpoint, dir, args: ["--resync-interval=2"] });
  try {
    await waitFor(`${n} routes`, 120_000, () => nl.routeList({ protocol: 87 }).length >= n || undefined);
    const startMs = performance.now() - t0;
    const atStart = procStats(agent.pid);

    // Event latency: put one lease at a time, wait for its route.
    const lat: number[] = [];
    const putFloor: number[] = [];
    for (let k = 0; k < 40; k++) {
      const l = lease(n + k);
      const dst = l.key.replace("-", "/");
      const p0 = performance.now();
      const r = await runIn(topo.underlay, [
        "etcdctl",
        `--endpoints=${etcd.endpoint}`,
        "put",
        `${PREFIX}/subnets/${l.key}`,
        l.value,
      ], {
        env: { ETCDCTL_API: "3", PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" },
      });
      if (r.code !== 0) throw new Error(r.stderr);
      const p1 = performance.now();
      putFloor.push(p1 - p0);
      await waitFor(
        `route ${dst}`,
        10_000,
        () => nl.routeList({ protocol: 87 }).some((x) => x.dst === dst) || undefined,
      );
      lat.push(performance.now() - p1);
    }

    if (Deno.env.get("WEFT_BENCH_VERBOSE")) {
      console.log(`  event latencies (ms, in order): ${lat.map((x) => x.toFixed(1)).join(" ")}`);
    }
    // Resync cost: agent CPU over 5 idle resync periods (2 s each) with n+40 peers.
    const c0 = procStats(agent.pid).cpu;
    await new Promise((r) => setTimeout(r, 10_000));
    const c1 = procStats(agent.pid);
    const perPass = (c1.cpu - c0) / 5;
    return {
      peers: String(n),
      start_to_all_routes_ms: startMs.toFixed(0),
      cpu_s_at_converged: atStart.cpu.toFixed(2),
      rss_mb: c1.rssMB.toFixed(0),
      event_p50_ms: pct(lat, 50).toFixed(1),
      event_p99_ms: pct(lat, 99).toFixed(1),
      etcdctl_put_p50_ms: pct(putFloor, 50).toFixed(1),
      resync_cpu_s_per_pass: perPass.toFixed(3),
    };
  } finally {
    await agent.stop("SIGKILL");
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) {
  if (Deno.uid() !== 0) {
    console.error("bench/convergence.ts needs root");
    Deno.exit(1);
  }
  const rows: Record<string, string>[] = [];
  for (const n of counts) {
    const row = await runOne(n);
    rows.push(row);
    console.log(JSON.stringify(row));
  }
  const cols = Object.keys(rows[0]!);
  console.log("\n" + cols.join("  "));
  for (const r of rows) console.log(cols.map((c) => r[c]!.padStart(c.length)).join("  "));
}
