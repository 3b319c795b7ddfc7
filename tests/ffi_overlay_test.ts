/**
 * A two-node VXLAN overlay built purely through the FFI layer, flannel's way: device, /32 address,
 * permanent neighbour, FDB entry and onlink route on each side — then traffic crosses it.
 */
import assert from "node:assert/strict";
import { Netlink } from "../ffi/mod.ts";
import { createTopology, hasBinary, requireRoot, skipUnless, type Topology } from "./helpers/topology.ts";

const MACS = ["0a:00:00:00:01:01", "0a:00:00:00:02:02"];

/** Packets counted by flannel.1 in a node, read with `ip -s -j` (independent of the FFI layer). */
async function vxlanPackets(topo: Topology, netns: string): Promise<{ tx: number; rx: number }> {
  const r = await topo.exec(netns, ["ip", "-s", "-j", "link", "show", "flannel.1"]);
  assert.equal(r.code, 0, r.stderr);
  const stats = JSON.parse(r.stdout)[0].stats64 as { tx: { packets: number }; rx: { packets: number } };
  return { tx: stats.tx.packets, rx: stats.rx.packets };
}

Deno.test({
  name: "a two-node VXLAN overlay programmed only through FFI passes ping, and stops when its route goes",
  ignore: requireRoot() ||
    skipUnless(hasBinary("ping"), "ping is not installed (apt-get install iputils-ping)"),
  async fn() {
    await using topo = await createTopology({ nodes: 2 });
    const [a, b] = topo.nodes as [typeof topo.nodes[0], typeof topo.nodes[0]];
    const sides = [
      { node: a, net: 1, peer: b, peerNet: 2, mac: MACS[0]!, peerMac: MACS[1]! },
      { node: b, net: 2, peer: a, peerNet: 1, mac: MACS[1]!, peerMac: MACS[0]! },
    ];
    for (const s of sides) {
      using nl = Netlink.open({ netns: s.node.netns });
      const vx = nl.linkAddVxlan({
        name: "flannel.1",
        vni: 1,
        local: s.node.ip,
        port: 8472,
        dev: "eth0",
        learning: false,
        mtu: 1450,
        mac: s.mac,
      });
      nl.addrReplace(vx.index, `10.244.${s.net}.0/32`);
      nl.linkSetUp(vx.index);
      const pods = nl.linkAddBridge({ name: "cni0", mtu: 1450 });
      nl.addrReplace(pods.index, `10.244.${s.net}.1/24`);
      nl.linkSetUp(pods.index);
      nl.neighReplace({ dev: vx.index, ip: `10.244.${s.peerNet}.0`, mac: s.peerMac });
      nl.fdbReplace({ dev: vx.index, mac: s.peerMac, dst: s.peer.ip });
      nl.routeReplace({
        dst: `10.244.${s.peerNet}.0/24`,
        gateway: `10.244.${s.peerNet}.0`,
        dev: vx.index,
        onlink: true,
      });
    }
    const fast = { count: 3, timeoutS: 2, intervalS: 0.2 };
    const before = await vxlanPackets(topo, a.netns);
    assert.ok(
      await topo.ping(a.netns, "10.244.2.1", { source: "10.244.1.1", ...fast }),
      "A → B across VXLAN",
    );
    assert.ok(
      await topo.ping(b.netns, "10.244.1.1", { source: "10.244.2.1", ...fast }),
      "B → A across VXLAN",
    );
    // The replies really went through the tunnel device (not some other path).
    const after = await vxlanPackets(topo, a.netns);
    assert.ok(after.tx - before.tx >= 3, `flannel.1 on A sent ${after.tx - before.tx} packets`);
    assert.ok(after.rx - before.rx >= 3, `flannel.1 on A received ${after.rx - before.rx} packets`);
    {
      using nl = Netlink.open({ netns: a.netns });
      assert.equal(nl.routeDelete({ dst: "10.244.2.0/24" }), true);
    }
    assert.equal(
      await topo.ping(a.netns, "10.244.2.1", { source: "10.244.1.1", count: 1, timeoutS: 1 }),
      false,
      "no route, no traffic",
    );
    {
      using nl = Netlink.open({ netns: a.netns });
      nl.routeReplace({ dst: "10.244.2.0/24", gateway: "10.244.2.0", dev: "flannel.1", onlink: true });
    }
    assert.ok(
      await topo.ping(a.netns, "10.244.2.1", { source: "10.244.1.1", ...fast }),
      "route back, traffic back",
    );
  },
});
