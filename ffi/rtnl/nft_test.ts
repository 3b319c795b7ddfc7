import assert from "node:assert/strict";
import { withScratchNetns } from "../../tests/helpers/scratch_netns.ts";
import { ROOT } from "../../tests/helpers/topology.ts";
import { withNetns } from "../netns.ts";
import { nftRun } from "../nftables.ts";
import { NftNetlink } from "./nft.ts";

Deno.test({
  name:
    "NftNetlink.generation: the namespace's ruleset generation moves with every committed change, by anyone, and only then",
  ignore: !ROOT,
  async fn() {
    await withScratchNetns("ng", (ns) =>
      withNetns(ns, () => {
        using nl = NftNetlink.open(); // bound to the namespace it was opened in
        const g0 = nl.generation();
        assert.equal(nl.generation(), g0, "nothing committed: the same generation");
        nftRun("list ruleset");
        assert.equal(nl.generation(), g0, "a read commits nothing");
        nftRun("add table ip t1");
        const g1 = nl.generation();
        assert.notEqual(g1, g0, "a table added");
        nftRun("add table ip t1"); // already there: an empty transaction
        assert.equal(nl.generation(), g1, "a transaction that changes nothing");
        nftRun("add chain ip t1 c\nadd rule ip t1 c accept");
        const g2 = nl.generation();
        assert.notEqual(g2, g1, "a rule added");
        const ipt = new Deno.Command("iptables-nft", { args: ["-N", "SOMEONE"], stderr: "null" })
          .outputSync();
        if (ipt.success) assert.notEqual(nl.generation(), g2, "a chain added by iptables-nft");
      }));
  },
});
