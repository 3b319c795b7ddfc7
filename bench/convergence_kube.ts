/**
 * bench/convergence.ts in kube mode, in the same table: one real `weft agent --kube-subnet-mgr` against
 * the test Kubernetes API server (HTTPS, bearer token, in the underlay namespace) preloaded with N peer
 * nodes (podCIDR + flannel's annotations), for N = 10, 100, 1000 (or the N given):
 *
 * - start → all N peers' routes in the kernel, agent CPU seconds and RSS at that point;
 * - one node created → its route in the kernel (the kernel's own route notification), p50/p99/max over
 *   100 events (the API server is in the bench process, so the create itself costs nothing measurable);
 * - CPU seconds of one full resync pass with N peers.
 *
 * Each N also runs etcd mode (bench/convergence.ts's runOne) right after, so both rows come from the same
 * conditions. Run: `deno run -A bench/convergence_kube.ts [N…]`. Needs root.
 *
 * @module
 */
import { Netlink } from "../ffi/mod.ts";
import { createTopology } from "../tests/helpers/topology.ts";
import { startAgent, waitFor } from "../tests/helpers/agent.ts";
import { startKubeApiServer } from "../tests/helpers/kube_api_server.ts";
import { lease, pct, procStats, runOne, startRouteMonitor } from "./convergence.ts";

const counts = Deno.args.length ? Deno.args.map(Number) : [10, 100, 1000];
const EVENTS = 100;
const P = "flannel.alpha.coreos.com/";

/** The i-th simulated peer as a Node annotated by a flannel/weft agent. */
function peerNode(i: number) {
  const l = lease(i);
  const attrs = JSON.parse(l.value);
  const cidr = l.key.replace("-", "/");
  return {
    metadata: {
      name: `peer-${i}`,
      annotations: {
        [`${P}kube-subnet-manager`]: "true",
        [`${P}backend-type`]: "vxlan",
        [`${P}public-ip`]: attrs.PublicIP,
        [`${P}backend-data`]: JSON.stringify(attrs.BackendData),
      },
    },
    spec: { podCIDR: cidr, podCIDRs: [cidr] },
  };
}

async function runKube(n: number): Promise<Record<string, string>> {
  await using topo = await createTopology({ nodes: 1 });
  const dir = await Deno.makeTempDir({ prefix: "weft-conv-kube-" });
  await using api = await startKubeApiServer({
    netns: topo.underlay,
    hostname: topo.underlayIP,
    tls: true,
    tokens: { bench: "system:serviceaccount:kube-weft:weft" },
    bookmarkMs: 60_000,
  });
  const Node = api.store.kindByName("Node");
  api.store.create(Node, "", { metadata: { name: "node-0" }, spec: { podCIDR: "10.99.0.0/24" } });
  for (let i = 0; i < n; i++) api.store.create(Node, "", peerNode(i));
  await api.writeKubeconfig(`${dir}/kubeconfig`, { token: "bench" });
  await Deno.writeTextFile(`${dir}/net-conf.json`, '{"Network":"10.0.0.0/8","Backend":{"Type":"vxlan"}}');
  const node = topo.nodes[0]!;
  using nl = Netlink.open({ netns: node.netns });
  const t0 = performance.now();
  const agent = startAgent(node, {
    kube: { kubeconfig: `${dir}/kubeconfig`, netConf: `${dir}/net-conf.json`, nodeName: "node-0" },
    dir,
    args: ["--resync-interval=2"],
  });
  try {
    await waitFor(`${n} routes`, 120_000, () => nl.routeList({ protocol: 87 }).length >= n || undefined);
    const startMs = performance.now() - t0;
    const atStart = procStats(agent.pid);
    await using monitor = startRouteMonitor(node.netns);
    await monitor.ready;
    const lat: number[] = [];
    let firstMs = 0;
    for (let k = 0; k <= EVENTS; k++) {
      const peer = peerNode(n + k);
      const seen = monitor.next(peer.spec.podCIDR);
      const p0 = performance.now();
      api.store.create(Node, "", peer);
      const ms = (await seen) - p0;
      if (k === 0) firstMs = ms;
      else lat.push(ms);
    }
    const c0 = procStats(agent.pid).cpu;
    await new Promise((r) => setTimeout(r, 10_000));
    const c1 = procStats(agent.pid);
    return {
      store: "kube",
      peers: String(n),
      start_to_all_routes_ms: startMs.toFixed(0),
      cpu_s_at_converged: atStart.cpu.toFixed(2),
      rss_mb: c1.rssMB.toFixed(0),
      event_p50_ms: pct(lat, 50).toFixed(1),
      event_p99_ms: pct(lat, 99).toFixed(1),
      event_max_ms: Math.max(...lat).toFixed(1),
      first_event_ms: firstMs.toFixed(1),
      put_ack_p50_ms: "-",
      resync_cpu_s_per_pass: ((c1.cpu - c0) / 5).toFixed(3),
    };
  } finally {
    await agent.stop("SIGKILL");
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) {
  if (Deno.uid() !== 0) {
    console.error("bench/convergence_kube.ts needs root");
    Deno.exit(1);
  }
  const rows: Record<string, string>[] = [];
  for (const n of counts) {
    for (const row of [await runKube(n), { store: "etcd", ...await runOne(n) }]) {
      rows.push(row);
      console.log(JSON.stringify(row));
    }
  }
  const cols = Object.keys(rows[0]!);
  console.log("\n" + cols.join("  "));
  for (const r of rows) console.log(cols.map((c) => (r[c] ?? "").padStart(c.length)).join("  "));
}
