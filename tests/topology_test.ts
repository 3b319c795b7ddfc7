/**
 * The test topology helper itself: nodes reach each other over the underlay, pods reach their node and
 * — with forwarding and routes — other nodes, and cleanup leaves no namespace behind.
 */
import assert from "node:assert/strict";
import { Netlink, netnsList } from "../ffi/mod.ts";
import { createTopology, hasBinary, requireRoot } from "./helpers/topology.ts";

Deno.test({
  name: "createTopology() builds nodes that ping each other, pods behind them, and removes it all",
  ignore: requireRoot(),
  async fn() {
    const topo = await createTopology({ nodes: 3, underlay: "192.168.78.0/24" });
    let names: string[] = [];
    try {
      assert.deepEqual(topo.nodes.map((n) => [n.ip, n.iface, n.index, n.name === n.netns]), [
        ["192.168.78.11", "eth0", 0, true],
        ["192.168.78.12", "eth0", 1, true],
        ["192.168.78.13", "eth0", 2, true],
      ]);
      assert.equal(topo.underlayIP, "192.168.78.1");
      const [a, b, c] = topo.nodes as [typeof topo.nodes[0], typeof topo.nodes[0], typeof topo.nodes[0]];
      assert.ok(await topo.ping(a, c.ip, { timeoutS: 2 }), "node 0 → node 2 over the underlay");
      assert.ok(await topo.ping(topo.underlay, b.ip, { timeoutS: 2 }), "underlay → node 1");
      const fwd = await topo.exec(a, ["cat", "/proc/sys/net/ipv4/ip_forward"]);
      assert.equal(fwd.stdout.trim(), "1", "nodes forward");
      topo.sysctl(a, "net.ipv4.ip_forward", "0");
      assert.equal((await topo.exec(a, ["cat", "/proc/sys/net/ipv4/ip_forward"])).stdout.trim(), "0");
      topo.sysctl(a, "net.ipv4.ip_forward", "1");

      // A pod on node 0 behind a bridge, and one on node 1 straight on its veth; routes between nodes.
      {
        using nl = Netlink.open({ netns: a.netns });
        const br = nl.linkAddBridge({ name: "cni0" });
        nl.addrReplace(br.index, "10.88.1.1/24");
        nl.linkSetUp(br.index);
        nl.routeReplace({ dst: "10.88.2.0/24", gateway: b.ip, dev: "eth0" });
      }
      const p1 = await topo.addPod(a, { cidr: "10.88.1.2/24", gateway: "10.88.1.1", bridge: "cni0" });
      const p2 = await topo.addPod(b, {
        name: "web",
        cidr: "10.88.2.2/24",
        gateway: "10.88.2.1",
        hostCidr: "10.88.2.1/24",
      });
      {
        using nl = Netlink.open({ netns: b.netns });
        nl.routeReplace({ dst: "10.88.1.0/24", gateway: a.ip, dev: "eth0" });
        assert.equal(nl.linkGet(p2.hostIface)?.up, true);
      }
      assert.equal(p1.ip, "10.88.1.2");
      assert.match(p2.netns, /-web\d+$/);
      assert.ok(await topo.ping(p1, "10.88.1.1", { timeoutS: 2 }), "pod → its gateway");
      assert.ok(await topo.ping(p1, p2.ip, { timeoutS: 2 }), "pod on node 0 → pod on node 1");
      if (hasBinary("ip")) {
        const r = await topo.exec(p2, ["ip", "-j", "route", "show", "default"]);
        assert.equal(JSON.parse(r.stdout)[0].gateway, "10.88.2.1");
      }
      names = [topo.underlay, ...topo.nodes.map((n) => n.netns), p1.netns, p2.netns];
      for (const n of names) assert.ok(netnsList().includes(n), `${n} exists`);
    } finally {
      await topo.cleanup();
      await topo.cleanup(); // idempotent
    }
    const left = netnsList();
    assert.deepEqual(names.filter((n) => left.includes(n)), [], "every namespace removed");
  },
});
