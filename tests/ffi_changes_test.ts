/**
 * `Netlink.kernelChanged()` (ffi/rtnl/changes.ts): the kernel's notifications tell a full pass whether
 * anything it programs changed since the last one. Each kind of change weft's entries can suffer must
 * count, and so must a link or an address (the kernel drops routes with them unannounced); what is not
 * weft's (another device's neighbours, the local table) must not; silence is silence.
 */
import assert from "node:assert/strict";
import { requireRoot } from "./helpers/topology.ts";
import { vxlanOverEth0, withScratchNetns } from "./helpers/scratch_netns.ts";

Deno.test({
  name:
    "kernelChanged() answers whether a route, next-hop object, link, address or an owned device's neighbour/FDB changed",
  ignore: requireRoot(),
  async fn() {
    await withScratchNetns("chg", async (_ns, nl) => {
      const { eth, vx } = vxlanOverEth0(nl);
      const owned = new Set([vx.index]);

      assert.equal(nl.kernelChanged(owned), true, "the first call knows nothing of the time before");
      // Settle: a device that just came up gets entries of the kernel's own (IPv6 multicast neighbours).
      for (let i = 0; i < 50 && nl.kernelChanged(owned); i++) await new Promise((r) => setTimeout(r, 20));
      assert.equal(nl.kernelChanged(owned), false, "nothing happened");

      const mac = "0a:00:00:00:00:01";
      const steps: [string, () => void, boolean][] = [
        [
          "a neighbour on the owned device",
          () => nl.neighReplace({ dev: vx.index, ip: "10.244.1.0", mac }),
          true,
        ],
        ["an FDB entry on it", () => nl.fdbReplace({ dev: vx.index, mac, dst: "10.1.0.11" }), true],
        [
          "a route in the main table",
          () => nl.routeReplace({ dst: "10.244.1.0/24", gateway: "10.244.1.0", dev: vx.index, onlink: true }),
          true,
        ],
        ["the same route deleted", () => void nl.routeDelete({ dst: "10.244.1.0/24" }), true],
        [
          "a next-hop object",
          () => nl.nexthopReplace({ id: 7, gateway: "10.244.2.0", dev: vx.index, onlink: true }),
          true,
        ],
        ["the owned neighbour deleted", () => void nl.neighDelete({ dev: vx.index, ip: "10.244.1.0" }), true],
        [
          "a neighbour of another device",
          () => nl.neighReplace({ dev: eth.index, ip: "10.1.0.99", mac }),
          false,
        ],
        [
          "a route in the local table only",
          () => nl.routeReplace({ dst: "10.9.9.0/24", dev: eth.index, table: 255 }),
          false,
        ],
        // A link or an address changed: routes may have gone with it unannounced (a link set down).
        ["an address", () => nl.addrReplace(eth.index, "10.9.9.9/32"), true],
        ["a link set down", () => nl.linkSetDown(eth.index), true],
      ];
      for (const [what, change, counts] of steps) {
        change();
        assert.equal(nl.kernelChanged(owned), counts, what);
        assert.equal(nl.kernelChanged(owned), false, `${what}: read once, then silence`);
      }

      // Many changes at once (more than one read's buffer): still one answer, and the queue empties.
      for (let i = 0; i < 3000; i++) {
        nl.neighReplace({ dev: vx.index, ip: `10.245.${i >> 8}.${i & 255}`, mac });
      }
      assert.equal(nl.kernelChanged(owned), true);
      assert.equal(nl.kernelChanged(owned), false);
    });
  },
});
