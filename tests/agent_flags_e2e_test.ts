/**
 * flanneld v0.28's flags doing their job in real `weft agent` processes (2 nodes in namespaces, real
 * etcd, vxlan), given as a flanneld manifest gives them: Go's single-dash syntax on one node, `FLANNELD_*`
 * variables on the other.
 *
 * - `-ip-blackhole-route`: each node holds a blackhole route for its own subnet, behind every other
 *   route to it (pods behind the bridge still reachable); an address of the subnet nothing else routes
 *   is dropped on the node; deleted by hand, the route is back within a resync.
 * - `-ip-masq -ip-masq-fully-random-disable -iptables-forward-rules=false`: the nftables rules say so.
 * - klog's `-v=2` logs at debug; `-vmodule` is accepted with one warning.
 */
import assert from "node:assert/strict";
import { Netlink } from "../ffi/mod.ts";
import { formatNet } from "../src/net/ip.ts";
import { runIn } from "../src/lab/lab.ts";
import {
  addPodBridge,
  type AgentProcess,
  gatewayOf,
  metric,
  pingMatrix,
  startAgent,
  waitFor,
  waitReady,
  waitSubnetEnv,
} from "./helpers/agent.ts";
import { etcdctl, startEtcd } from "./helpers/etcd.ts";
import { createTopology, hasBinary, ROOT } from "./helpers/topology.ts";

const PREFIX = "/coreos.com/network";
const CONFIG = JSON.stringify({ Network: "10.244.0.0/16", Backend: { Type: "vxlan" } });
const RESYNC_S = 1;
const LAST_RESORT = 0xffffffff;

Deno.test({
  name:
    "weft agent with flanneld's -ip-blackhole-route, -ip-masq-fully-random-disable, -iptables-forward-rules=false, -v",
  ignore: !ROOT || !hasBinary("etcd") || !hasBinary("nft"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    await using topo = await createTopology({ nodes: 2, underlay: "192.168.78.0/24" });
    const dir = await Deno.makeTempDir({ prefix: "weft-agent-flags-" });
    await using etcd = await startEtcd({ netns: topo.underlay, host: topo.underlayIP });
    await etcdctl(etcd.endpoint, ["put", `${PREFIX}/config`, CONFIG], { netns: topo.underlay });
    const flags = [
      "-ip-blackhole-route",
      "-ip-masq",
      "-ip-masq-fully-random-disable",
      "-iptables-forward-rules=false",
      "-v",
      "2",
      "-vmodule=agent=3",
      `--resync-interval=${RESYNC_S}`,
    ];
    const agents: AgentProcess[] = [
      startAgent(topo.nodes[0]!, { etcd: etcd.endpoint, dir, args: flags }),
      startAgent(topo.nodes[1]!, {
        etcd: etcd.endpoint,
        dir,
        args: [`--resync-interval=${RESYNC_S}`],
        env: {
          FLANNELD_IP_BLACKHOLE_ROUTE: "true",
          FLANNELD_IP_MASQ: "1",
          FLANNELD_IP_MASQ_FULLY_RANDOM_DISABLE: "t",
          FLANNELD_IPTABLES_FORWARD_RULES: "false",
          FLANNELD_V: "2",
        },
      }),
    ];
    try {
      const envs = await Promise.all(agents.map((a) => waitSubnetEnv(a)));
      const blackhole = (i: number) => {
        using nl = Netlink.open({ netns: topo.nodes[i]!.netns });
        return nl.routeList({ family: 4 }).find((r) =>
          r.dst === formatNet(envs[i]!.subnet!) && r.type === "blackhole"
        );
      };
      // The first full pass (after the first list of leases) installs it.
      await Promise.all(
        agents.map((_, i) => waitFor(`node ${i}'s blackhole route`, 20_000, () => blackhole(i))),
      );

      await t.step(
        "a blackhole route for the node's own subnet, behind every other route, on both nodes",
        () => {
          for (const i of [0, 1]) {
            const r = blackhole(i)!;
            assert.equal(r.protocol, 87, "weft's (pruned when the flag goes or the lease changes)");
            assert.equal(r.metric, LAST_RESORT, "never in front of the bridge's connected route");
          }
        },
      );

      await t.step(
        "an address of the own subnet that nothing else routes is dropped on the node",
        async () => {
          const ns = topo.nodes[0]!.netns;
          const stray = gatewayOf(envs[0]!).replace(/\.1$/, ".77");
          const r = await runIn(ns, ["ip", "route", "get", stray]);
          assert.notEqual(r.code, 0, `ip route get ${stray}: ${r.stdout}${r.stderr}`);
          assert.match(r.stderr, /Invalid argument/, "the kernel's answer for a blackholed destination");
        },
      );

      await t.step("with the pod bridge in place its route wins: pods ping across", async () => {
        topo.nodes.forEach((n, i) => addPodBridge(n.netns, envs[i]!));
        await Promise.all(agents.map((a) => waitReady(a)));
        const r = await runIn(topo.nodes[0]!.netns, [
          "ip",
          "-j",
          "route",
          "get",
          gatewayOf(envs[0]!).replace(/\.1$/, ".77"),
        ]);
        assert.equal(r.code, 0, r.stderr);
        assert.equal((JSON.parse(r.stdout) as { dev: string }[])[0]!.dev, "cni0");
        assert.deepEqual(await pingMatrix(topo, envs, 20_000), []);
      });

      await t.step("deleted by hand, the blackhole route is back within a resync", async () => {
        const ns = topo.nodes[0]!.netns;
        const before = await metric(agents[0]!, "weft_drift_repaired_total");
        const del = await runIn(ns, [
          "ip",
          "route",
          "del",
          "blackhole",
          formatNet(envs[0]!.subnet!),
          "metric",
          String(LAST_RESORT),
        ]);
        assert.equal(del.code, 0, del.stderr);
        assert.equal(blackhole(0), undefined);
        const t0 = Date.now();
        await waitFor("the blackhole route re-added", 20_000, () => blackhole(0), 50);
        const ms = Date.now() - t0;
        await waitFor(
          "the repair counted",
          10_000,
          async () => (await metric(agents[0]!, "weft_drift_repaired_total")) > before,
        );
        console.log(`blackhole route re-added ${ms} ms after its deletion (resync interval ${RESYNC_S} s)`);
        assert.equal(blackhole(0)!.metric, LAST_RESORT);
      });

      await t.step("masquerade without fully-random, no forward chain, on both nodes", async () => {
        // EnableNFTables is false (flanneld's default): the rules are flanneld's chains in iptables, in
        // the nft backend on a host that holds no rules yet.
        for (const n of topo.nodes) {
          const nat = await runIn(n.netns, ["iptables-nft-save", "-t", "nat"]);
          assert.equal(nat.code, 0, nat.stderr);
          assert.match(nat.stdout, /-A FLANNEL-POSTRTG .* -j MASQUERADE/);
          assert.doesNotMatch(nat.stdout, /random-fully/);
          const filter = await runIn(n.netns, ["iptables-nft-save", "-t", "filter"]);
          assert.equal(filter.code, 0, filter.stderr);
          assert.doesNotMatch(filter.stdout, /FLANNEL-FWD/);
        }
      });

      await t.step(
        "-v 2 logs at debug; -vmodule is accepted with exactly one warning saying why",
        async () => {
          const log0 = await Deno.readTextFile(agents[0]!.logFile);
          const log1 = await Deno.readTextFile(agents[1]!.logFile);
          assert.match(log0, / DEBUG /);
          assert.match(log1, / DEBUG /, "FLANNELD_V=2");
          assert.equal(
            log0.split("\n").filter((l) => /-vmodule=agent=3 has no effect/.test(l)).length,
            1,
            log0,
          );
        },
      );
    } finally {
      await Promise.all(agents.map((a) => a.stop()));
    }
  },
});
