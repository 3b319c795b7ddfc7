/**
 * The host changes under a running agent, which heals without a restart (flannel's long outages): on
 * node 0 of a 2-node vxlan overlay, flannel.1's MAC is rewritten (udev's MACAddressPolicy=persistent,
 * NetworkManager: flannel #1155, #1474), the underlay interface is deleted and re-added with the same
 * address (a VPN or bond restart: flannel #2247 — the kernel deletes flannel.1 with it), and re-added
 * with another address (a clear error naming the fix). Pings between the nodes' pod subnets resume within
 * a resync each time; flannel.1's TX checksum offload stays off across its recreation.
 */
import assert from "node:assert/strict";
import { Netlink, netnsPath, txChecksumOffload } from "../ffi/mod.ts";
import {
  addPodBridge,
  type AgentProcess,
  pingMatrix,
  startAgent,
  waitFor,
  waitReady,
  waitSubnetEnv,
} from "./helpers/agent.ts";
import { putNetworkConfig, startEtcd } from "./helpers/etcd.ts";
import { createTopology, ROOT, type Topology } from "./helpers/topology.ts";
import { needBinaries } from "./helpers/skip.ts";

/** Deletes node `i`'s eth0 (its veth pair with it) and makes a new one on the underlay bridge. */
function replaceUnderlay(topo: Topology, i: number, cidr: string, mac: string): number {
  const node = topo.nodes[i]!;
  {
    using nl = Netlink.open({ netns: node.netns });
    nl.linkDelete("eth0");
  }
  using ul = Netlink.open({ netns: topo.underlay });
  const port = `rp${Date.now() % 100000}${i}`;
  const p = ul.linkAddVeth({ name: port, peerName: "eth0", peerNetns: netnsPath(node.netns) });
  ul.linkSetMaster(p.index, "br0");
  ul.linkSetUp(p.index);
  using nl = Netlink.open({ netns: node.netns });
  // A NIC keeps its MAC when it comes back: the peers' ARP entries for it stay right.
  nl.linkSetMac("eth0", mac);
  nl.addrReplace("eth0", cidr);
  nl.linkSetUp("eth0");
  return nl.linkIndex("eth0");
}

Deno.test({
  name: "weft agent heals without a restart: flannel.1's MAC rewritten, the underlay deleted and re-added",
  ignore: !ROOT || needBinaries("etcd", "ping"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    await using topo = await createTopology({ nodes: 2 });
    const dir = await Deno.makeTempDir({ prefix: "weft-hostchg-" });
    await using etcd = await startEtcd({ netns: topo.underlay, host: topo.underlayIP });
    await putNetworkConfig(etcd.endpoint, {
      Network: "10.244.0.0/16",
      Backend: { Type: "vxlan", TxChecksumOffload: false },
    }, { netns: topo.underlay });
    let agents: AgentProcess[] = [];
    try {
      agents = topo.nodes.map((n) =>
        startAgent(n, { etcd: etcd.endpoint, dir, args: ["--resync-interval=1"] })
      );
      const envs = await Promise.all(agents.map((a) => waitSubnetEnv(a)));
      await Promise.all(agents.map((a) => waitReady(a)));
      topo.nodes.forEach((n, i) => addPodBridge(n.netns, envs[i]!));
      assert.deepEqual(await pingMatrix(topo, envs, 15_000), []);
      using nl0 = Netlink.open({ netns: topo.nodes[0]!.netns });
      const published = nl0.linkGet("flannel.1")!.mac;
      assert.equal(txChecksumOffload("flannel.1", nl0.netns), false, "switched off at creation");

      await t.step(
        "flannel.1's MAC rewritten by hand: set back to the published VtepMAC, pings resume",
        async () => {
          nl0.linkSetMac("flannel.1", "02:de:ad:be:ef:01");
          await waitFor("MAC set back", 10_000, () => nl0.linkGet("flannel.1")?.mac === published);
          assert.deepEqual(await pingMatrix(topo, envs, 10_000), []);
        },
      );

      await t.step(
        "eth0 deleted and re-added, same address: flannel.1 bound to it again, pings resume",
        async () => {
          const mac = nl0.linkGet("eth0")!.mac;
          const before = nl0.linkIndex("eth0");
          const after = replaceUnderlay(topo, 0, `${topo.nodes[0]!.ip}/24`, mac);
          assert.notEqual(after, before);
          const dev = await waitFor("flannel.1 on the new eth0", 10_000, () => {
            const d = nl0.linkGet("flannel.1");
            return d?.vxlan?.link === after ? d : undefined;
          });
          assert.equal(dev.mac, published, "the published VtepMAC, not a new one");
          // The device is made first, then its offload switched off in the same pass: wait for the pass.
          await waitFor(
            "offload off again after recreation",
            10_000,
            () => txChecksumOffload("flannel.1", nl0.netns) === false,
          );
          assert.deepEqual(await pingMatrix(topo, envs, 15_000), []);
        },
      );

      await t.step(
        "eth0 re-added with another address: a clear error, then healed when the address is back",
        async () => {
          const mac = nl0.linkGet("eth0")!.mac;
          replaceUnderlay(topo, 0, "192.168.77.61/24", mac);
          await waitFor(
            "the error in the log",
            10_000,
            () =>
              /eth0 no longer has 192\.168\.77\.11 \(it has 192\.168\.77\.61\).*Put 192\.168\.77\.11 back, or restart the agent/
                .test(Deno.readTextFileSync(agents[0]!.logFile)),
          );
          nl0.addrReplace("eth0", `${topo.nodes[0]!.ip}/24`);
          assert.deepEqual(await pingMatrix(topo, envs, 15_000), []);
        },
      );
    } finally {
      await Promise.all(agents.map((a) => a.stop("SIGKILL")));
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
