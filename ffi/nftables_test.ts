import assert from "node:assert/strict";
import { withScratchNetns } from "../tests/helpers/scratch_netns.ts";
import { rssByMapping } from "../tests/helpers/smaps.ts";
import { ROOT } from "../tests/helpers/topology.ts";
import { withNetns } from "./netns.ts";
import { nftablesLoaded, nftRun, nftRunAsync, unloadNftablesIfIdle } from "./nftables.ts";

/** RSS of this process's mappings of libnftables and what it pulls in, kB. */
function nftLibsRss(): number {
  return rssByMapping(
    "self",
    (name) => /lib(nftables|nftnl|gmp|jansson|xtables)\.so/.test(name) ? "nft" : undefined,
  )
    .nft ?? 0;
}

Deno.test({
  name:
    "libnftables is unloaded when idle (its pages leave the process) and loaded again by the next call; never under a running call",
  ignore: !ROOT,
  async fn() {
    await withScratchNetns("nu", async (ns) => {
      withNetns(ns, () => nftRun("add table ip t1"));
      assert.ok(nftablesLoaded());
      assert.ok(nftLibsRss() > 0, "mapped while loaded");
      assert.equal(unloadNftablesIfIdle(60_000), false, "used a moment ago");
      assert.equal(unloadNftablesIfIdle(0), true);
      assert.equal(nftablesLoaded(), false);
      assert.equal(nftLibsRss(), 0, "unmapped: no page of it left in RSS");
      assert.match(withNetns(ns, () => nftRun("list tables ip")), /table ip t1/, "loaded again on use");
      assert.ok(nftablesLoaded());
      const running = nftRunAsync("list tables ip", (fn) => withNetns(ns, fn));
      assert.equal(unloadNftablesIfIdle(0), false, "a call runs off the JS thread");
      assert.match(await running, /table ip t1/);
      assert.equal(unloadNftablesIfIdle(0), true);
    });
  },
});
