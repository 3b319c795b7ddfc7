/**
 * Generic netlink through libnl-genl: the machinery kernel WireGuard needs, exercised on the family every
 * kernel has (nlctrl), since this test kernel has no WireGuard.
 */
import assert from "node:assert/strict";
import { GenlSocket } from "../ffi/genl.ts";
import { NetlinkError } from "../ffi/mod.ts";
import { attrString, parseAttrs } from "../ffi/nl_codec.ts";
import { genlPayload } from "../ffi/genl.ts";
import { withScratchNetns } from "./helpers/scratch_netns.ts";
import { requireRoot } from "./helpers/topology.ts";

const CTRL_CMD_GETFAMILY = 3;
const CTRL_ATTR_FAMILY_NAME = 2;

Deno.test({
  name: "GenlSocket resolves nlctrl, dumps the family list, and reports an absent family as not found",
  ignore: requireRoot(),
  async fn() {
    await withScratchNetns("genl", (ns) => {
      using g = GenlSocket.open(ns);
      assert.equal(g.resolve("nlctrl"), 0x10); // GENL_ID_CTRL
      const names = g.dump(0x10, genlPayload(CTRL_CMD_GETFAMILY, 1, new Uint8Array()), "list families")
        .map((m) => parseAttrs(m.subarray(4)).find((a) => a.type === CTRL_ATTR_FAMILY_NAME))
        .filter((a) => !!a)
        .map((a) => attrString(a));
      assert.ok(names.includes("nlctrl"), names.join(","));
      let hasWireguard = true;
      try {
        Deno.statSync("/sys/module/wireguard");
      } catch {
        hasWireguard = false;
      }
      if (hasWireguard) assert.ok(names.includes("wireguard"));
      else {
        assert.throws(
          () => g.resolve("wireguard"),
          (e) => e instanceof NetlinkError && e.notFound,
        );
      }
    });
  },
});
