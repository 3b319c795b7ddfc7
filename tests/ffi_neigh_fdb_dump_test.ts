/**
 * `neighAndFdbList()`, the one-dump read of a full reconcile pass, against the two separate listings
 * it replaces and against `ip -j neigh` / `bridge -j fdb`.
 */
import assert from "node:assert/strict";
import { requireRoot } from "./helpers/topology.ts";
import { iprouteJson, vxlanOverEth0, withScratchNetns } from "./helpers/scratch_netns.ts";

Deno.test({
  name:
    "neighAndFdbList() gives exactly the neighbour and FDB entries of the given devices, as neighList()/fdbList() and ip/bridge do",
  ignore: requireRoot(),
  async fn() {
    await withScratchNetns("nfd", async (ns, nl) => {
      const { eth, vx } = vxlanOverEth0(nl);
      nl.addrReplace(eth.index, "fd00:1::1/64");
      for (let i = 1; i <= 40; i++) {
        const mac = `0a:00:00:00:00:${i.toString(16).padStart(2, "0")}`;
        nl.neighReplace({ dev: vx.index, ip: `10.244.${i}.0`, mac });
        nl.fdbReplace({ dev: vx.index, mac, dst: `10.1.0.${i + 10}` });
      }
      // Entries of another device, which must be left out.
      nl.neighReplace({ dev: eth.index, ip: "10.1.0.99", mac: "0a:00:00:00:99:99" });
      nl.neighReplace({ dev: eth.index, ip: "fd00:1::99", mac: "0a:00:00:00:99:98" });

      const both = nl.neighAndFdbList(new Set([vx.index]));
      // The kernel adds entries of its own at any moment (IPv6 multicast neighbours such as ff02::16 on a
      // device that just came up): compare the permanent ones, which are weft's.
      const perm = <T extends { state: number }>(xs: T[]) => xs.filter((x) => x.state & 0x80);
      const byKey = <T>(xs: T[], key: (x: T) => string) => [...xs].sort((a, b) => key(a) < key(b) ? -1 : 1);
      const nk = (n: { ip: string }) => n.ip, fk = (f: { mac: string; dst?: string }) => `${f.mac} ${f.dst}`;
      assert.deepEqual(byKey(perm(both.neighs), nk), byKey(perm(nl.neighList({ dev: vx.index })), nk));
      assert.deepEqual(byKey(perm(both.fdbs), fk), byKey(perm(nl.fdbList({ dev: vx.index })), fk));
      assert.ok(
        both.neighs.every((n) => n.index === vx.index) && both.fdbs.every((f) => f.index === vx.index),
      );
      assert.equal(perm(both.neighs).length, 40);
      assert.equal(perm(both.fdbs).filter((f) => f.dst).length, 40);

      const ipNeigh = await iprouteJson(ns, "ip", "neigh", "show", "dev", "flannel.1", "nud", "permanent");
      assert.deepEqual(
        ipNeigh.map((n) => `${n.dst} ${n.lladdr}`).sort(),
        both.neighs.filter((n) => n.state & 0x80).map((n) => `${n.ip} ${n.mac}`).sort(),
      );
      const bridgeFdb = await iprouteJson(ns, "bridge", "fdb", "show", "dev", "flannel.1");
      assert.deepEqual(
        bridgeFdb.filter((f) => f.dst).map((f) => `${f.mac} ${f.dst}`).sort(),
        both.fdbs.filter((f) => f.dst).map((f) => `${f.mac} ${f.dst}`).sort(),
      );
      // Both devices: eth0's two neighbours join in.
      const all = nl.neighAndFdbList(new Set([vx.index, eth.index]));
      assert.deepEqual(
        all.neighs.filter((n) => n.index === eth.index && n.state & 0x80).map((n) => n.ip).sort(),
        ["10.1.0.99", "fd00:1::99"],
      );
    });
  },
});
