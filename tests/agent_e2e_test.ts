/**
 * End to end: 3 nodes in namespaces, a real etcd in the underlay namespace, real `weft agent` processes.
 * Each node gets a bridge holding its subnet's first address (standing in for pods).
 */
import assert from "node:assert/strict";
import { Netlink } from "../ffi/mod.ts";
import { parsePrometheusText } from "../src/cli/status.ts";
import { formatIP, formatNet } from "../src/net/ip.ts";
import type { SubnetEnv } from "../src/config/subnet_env.ts";
import { agentHttp, type AgentProcess, startAgent, waitFor, waitSubnetEnv } from "./helpers/agent.ts";
import { etcdctl, startEtcd } from "./helpers/etcd.ts";
import { createTopology, ROOT, type Topology } from "./helpers/topology.ts";

const PREFIX = "/coreos.com/network";
const RESYNC = "1";

function gatewayOf(env: SubnetEnv): string {
  return formatIP({ family: 4, value: env.subnet!.ip.value + 1n });
}

/** Gives each node a "pods" bridge with its subnet's first address. */
function addPodBridge(netns: string, env: SubnetEnv): void {
  using nl = Netlink.open({ netns });
  const br = nl.linkGet("cni0") ?? nl.linkAddBridge({ name: "cni0" });
  nl.addrReplace(br.index, `${gatewayOf(env)}/${env.subnet!.prefix}`);
  nl.linkSetUp(br.index);
}

async function cluster(
  topo: Topology,
  etcdEndpoint: string,
  dir: string,
  backend: string,
): Promise<{ agents: AgentProcess[]; envs: SubnetEnv[] }> {
  await etcdctl(etcdEndpoint, [
    "put",
    `${PREFIX}/config`,
    JSON.stringify({ Network: "10.244.0.0/16", Backend: { Type: backend } }),
  ], {
    netns: topo.underlay,
  });
  const agents = topo.nodes.map((n) =>
    startAgent(n, { etcd: etcdEndpoint, dir, args: [`--resync-interval=${RESYNC}`, "--ip-masq"] })
  );
  const envs = await Promise.all(agents.map((a) => waitSubnetEnv(a)));
  topo.nodes.forEach((n, i) => addPodBridge(n.netns, envs[i]!));
  return { agents, envs };
}

async function pingAll(topo: Topology, envs: SubnetEnv[]): Promise<string[]> {
  const failed: string[] = [];
  for (let i = 0; i < topo.nodes.length; i++) {
    for (let j = 0; j < topo.nodes.length; j++) {
      if (i === j) continue;
      const ok = await topo.ping(topo.nodes[i]!.netns, gatewayOf(envs[j]!), {
        source: gatewayOf(envs[i]!),
        count: 1,
        timeoutS: 2,
      });
      if (!ok) failed.push(`${i}->${j}`);
    }
  }
  return failed;
}

async function metric(a: AgentProcess, name: string): Promise<number> {
  const [, body] = await agentHttp(a, "/metrics");
  return parsePrometheusText(body).find((s) => s.name === name)?.value ?? NaN;
}

/** Runs `ping -i 0.01` from a to b while `during` runs; returns [sent, received]. */
async function pingDuring(
  topo: Topology,
  from: number,
  to: number,
  envs: SubnetEnv[],
  during: () => Promise<void>,
): Promise<[number, number]> {
  const { withNetns } = await import("../ffi/mod.ts");
  const child = withNetns(topo.nodes[from]!.netns, () =>
    new Deno.Command("ping", {
      args: ["-i", "0.01", "-W", "1", "-I", gatewayOf(envs[from]!), gatewayOf(envs[to]!)],
      stdout: "piped",
      stderr: "piped",
    }).spawn());
  await new Promise((r) => setTimeout(r, 500));
  try {
    await during();
    await new Promise((r) => setTimeout(r, 500));
  } finally {
    child.kill("SIGINT");
  }
  const out = new TextDecoder().decode((await child.output()).stdout);
  const m = out.match(/(\d+) packets transmitted, (\d+) received/);
  assert.ok(m, out);
  return [Number(m[1]), Number(m[2])];
}

Deno.test({
  name:
    "weft agent: 3-node vxlan overlay pings, survives restarts without loss, repairs drift, prunes stale entries, rides out etcd outages",
  ignore: !ROOT,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    await using topo = await createTopology({ nodes: 3 });
    const dir = await Deno.makeTempDir({ prefix: "weft-agent-e2e-" });
    await using etcd = await startEtcd({ netns: topo.underlay, host: topo.underlayIP });
    let agents: AgentProcess[] = [];
    try {
      // A stale weft route (protocol 87) for a subnet nobody leases, present before the agent starts.
      {
        using nl = Netlink.open({ netns: topo.nodes[0]!.netns });
        nl.routeReplace({ dst: "10.244.250.0/24", type: "blackhole" });
      }
      await etcdctl(
        etcd.endpoint,
        ["put", `${PREFIX}/config`, JSON.stringify({ Network: "10.244.0.0/16" })],
        {
          netns: topo.underlay,
        },
      );
      const first = startAgent(topo.nodes[0]!, {
        etcd: etcd.endpoint,
        dir,
        args: [`--resync-interval=${RESYNC}`],
      });
      agents.push(first);
      await t.step("/readyz is 503 before the first apply and 200 after", async () => {
        const early = await waitFor("health endpoint", 20_000, async () => {
          try {
            return await agentHttp(first, "/readyz");
          } catch {
            return undefined;
          }
        });
        if (early[0] === 200) {
          console.log("  (agent was already ready at the first probe; 503 phase too short to observe)");
        } else assert.equal(early[0], 503);
        await waitFor("ready", 20_000, async () => (await agentHttp(first, "/readyz"))[0] === 200);
        assert.ok((await metric(first, "weft_pruned_total")) >= 1, "the stale route was counted as pruned");
      });
      await first.stop();
      agents = [];

      const built = await cluster(topo, etcd.endpoint, dir, "vxlan");
      agents = built.agents;
      const envs = built.envs;
      await Promise.all(
        agents.map((a) => waitFor("ready", 20_000, async () => (await agentHttp(a, "/readyz"))[0] === 200)),
      );

      await t.step("every node reaches every other node's subnet across VXLAN", async () => {
        const failed = await waitFor("all pings", 15_000, async () => {
          const f = await pingAll(topo, envs);
          return f.length ? undefined : f;
        }).catch(async () => await pingAll(topo, envs));
        assert.deepEqual(failed, []);
      });

      await t.step("the stale protocol-87 route present before start was pruned", async () => {
        using nl = Netlink.open({ netns: topo.nodes[0]!.netns });
        await waitFor(
          "prune",
          5000,
          () => !nl.routeList({ protocol: 87 }).some((r) => r.dst === "10.244.250.0/24"),
        );
      });

      await t.step("/metrics parses as Prometheus text and counts peers", async () => {
        const [code, body] = await agentHttp(agents[0]!, "/metrics");
        assert.equal(code, 200);
        const samples = parsePrometheusText(body);
        assert.equal(samples.find((s) => s.name === "weft_peers_programmed")?.value, 2);
        assert.equal(samples.find((s) => s.name === "weft_leases_known")?.value, 2);
      });

      await t.step("SIGTERM then SIGKILL restarts of an agent lose no packet", async () => {
        const a = agents[1]!;
        const [sent, received] = await pingDuring(topo, 0, 1, envs, async () => {
          await a.stop("SIGTERM");
          a.start();
          await waitFor(
            "ready after SIGTERM restart",
            20_000,
            async () => (await agentHttp(a, "/readyz").catch(() => [0]))[0] === 200,
          );
          await a.stop("SIGKILL");
          a.start();
          await waitFor(
            "ready after SIGKILL restart",
            20_000,
            async () => (await agentHttp(a, "/readyz").catch(() => [0]))[0] === 200,
          );
        });
        console.log(`  ping -i 0.01 across two restarts: ${sent} sent, ${received} received`);
        assert.ok(sent > 100, `sent ${sent}`);
        assert.equal(sent - received, 0, `${sent - received} packets lost`);
      });

      await t.step(
        "a deleted route, neighbour entry and device are repaired within a resync, and counted",
        async () => {
          const node0 = topo.nodes[0]!.netns;
          const before = await metric(agents[0]!, "weft_drift_repaired_total");
          const remote = envs[1]!.subnet!;
          await topo.exec(node0, ["ip", "route", "del", formatNet(remote)]);
          await topo.exec(node0, ["ip", "neigh", "del", formatIP(remote.ip), "dev", "flannel.1"]);
          const t0 = Date.now();
          await waitFor(
            "route repaired",
            10_000,
            () => topo.ping(node0, gatewayOf(envs[1]!), { source: gatewayOf(envs[0]!) }),
          );
          console.log(`  route+neighbour repaired in ${Date.now() - t0} ms`);
          const after = await metric(agents[0]!, "weft_drift_repaired_total");
          assert.ok(after >= before + 2, `drift metric ${before} → ${after}`);
          await topo.exec(node0, ["ip", "link", "del", "flannel.1"]);
          const t1 = Date.now();
          await waitFor(
            "device recreated",
            10_000,
            async () =>
              (await topo.ping(node0, gatewayOf(envs[1]!), { source: gatewayOf(envs[0]!) })) &&
              (await topo.ping(node0, gatewayOf(envs[2]!), { source: gatewayOf(envs[0]!) })),
          );
          console.log(`  flannel.1 recreated and all peers replayed in ${Date.now() - t1} ms`);
          assert.ok((await metric(agents[0]!, "weft_device_recreated_total")) >= 1);
        },
      );

      await t.step("etcd stopped for 20 s: pings keep flowing, the agent recovers", async () => {
        const [sent, received] = await pingDuring(topo, 0, 2, envs, async () => {
          await etcd.stop();
          await new Promise((r) => setTimeout(r, 20_000));
          await etcd.restart();
        });
        console.log(`  during a 20 s etcd outage: ${sent} sent, ${received} received`);
        assert.equal(sent - received, 0);
        await waitFor("etcd_up again", 30_000, async () => (await metric(agents[0]!, "weft_etcd_up")) === 1);
      });

      await t.step("a stopped node whose lease is deleted disappears from its peers' datapath", async () => {
        const gone = agents[2]!;
        await gone.stop();
        const key = `${PREFIX}/subnets/${formatNet(envs[2]!.subnet!).replace("/", "-")}`;
        await etcdctl(etcd.endpoint, ["del", key], { netns: topo.underlay });
        using nl = Netlink.open({ netns: topo.nodes[0]!.netns });
        const dst = formatNet(envs[2]!.subnet!);
        await waitFor(
          "route removed",
          10_000,
          () => !nl.routeList({ protocol: 87 }).some((r) => r.dst === dst),
        );
        const vx = nl.linkGet("flannel.1")!;
        assert.ok(!nl.neighList({ dev: vx.index }).some((n) => n.ip === formatIP(envs[2]!.subnet!.ip)));
        assert.equal(nl.fdbList({ dev: vx.index }).filter((f) => f.dst === topo.nodes[2]!.ip).length, 0);
      });
    } finally {
      await Promise.all(agents.map((a) => a.stop("SIGKILL")));
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name: "weft agent: 3-node host-gw network pings across nodes",
  ignore: !ROOT,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using topo = await createTopology({ nodes: 3 });
    const dir = await Deno.makeTempDir({ prefix: "weft-hostgw-e2e-" });
    await using etcd = await startEtcd({ netns: topo.underlay, host: topo.underlayIP });
    let agents: AgentProcess[] = [];
    try {
      const built = await cluster(topo, etcd.endpoint, dir, "host-gw");
      agents = built.agents;
      const failed = await waitFor("all pings", 15_000, async () => {
        const f = await pingAll(topo, built.envs);
        return f.length ? undefined : f;
      }).catch(async () => await pingAll(topo, built.envs));
      assert.deepEqual(failed, []);
      using nl = Netlink.open({ netns: topo.nodes[0]!.netns });
      const r = nl.routeList({ protocol: 87 }).find((x) => x.dst === formatNet(built.envs[1]!.subnet!));
      assert.equal(r?.gateway, topo.nodes[1]!.ip, "host-gw routes go via the peer's public IP");
    } finally {
      await Promise.all(agents.map((a) => a.stop("SIGKILL")));
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
