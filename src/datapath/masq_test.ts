import assert from "node:assert/strict";
import { netnsCreate, netnsDelete, nftRun, withNetns } from "../../ffi/mod.ts";
import { uniqueNetnsName } from "../../tests/helpers/names.ts";
import { parseNet } from "../net/ip.ts";
import { masqScript, removeMasq, RulesKeeper } from "./masq.ts";

const NETWORK = parseNet("10.244.0.0/16");
const PODS = parseNet("10.244.3.0/24");
const NETS = [{ network: NETWORK, podSubnet: PODS }];

function nftAvailable(): boolean {
  try {
    nftRun("list tables");
    return true;
  } catch {
    return false;
  }
}

Deno.test("masqScript() renders flannel's masquerade rules in flannel's order", () => {
  const rules = masqScript(NETWORK, PODS, true).split("\n").map((l) => l.trim())
    .filter((l) => l.endsWith("return") || l.includes("masquerade"));
  assert.deepEqual(rules, [
    "meta mark & 0x4000 == 0x4000 return",
    "ip saddr 10.244.3.0/24 ip daddr 10.244.0.0/16 return",
    "ip saddr 10.244.0.0/16 ip daddr 10.244.3.0/24 return",
    "ip saddr != 10.244.0.0/16 ip daddr 10.244.3.0/24 return",
    "ip saddr 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random",
    "ip saddr != 10.244.0.0/16 ip daddr 10.244.0.0/16 masquerade fully-random",
  ]);
});

Deno.test("masqScript() without --ip-masq has the forward rules and no nat chain", () => {
  const s = masqScript(NETWORK, PODS, false);
  assert.ok(!s.includes("postrouting"));
  assert.ok(s.includes("ip saddr 10.244.0.0/16 accept") && s.includes("ip daddr 10.244.0.0/16 accept"));
});

Deno.test("masqScript() honours --ip-masq-fully-random-disable and --iptables-forward-rules=false", () => {
  const plain = masqScript(NETWORK, PODS, true, { fullyRandom: false });
  assert.ok(plain.includes("ip saddr 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade\n"), plain);
  assert.ok(!plain.includes("fully-random"));
  const noForward = masqScript(NETWORK, PODS, true, { forward: false });
  assert.ok(!noForward.includes("chain forward") && noForward.includes("masquerade fully-random"), noForward);
  assert.ok(!masqScript(NETWORK, PODS, false, { forward: false }).includes("chain"));
});

Deno.test({
  name:
    "RulesKeeper installs weft's table, repairs it after deletion or edits, and never touches other tables",
  ignore: Deno.uid() !== 0,
  fn() {
    const ns = uniqueNetnsName("nft");
    netnsCreate(ns);
    try {
      withNetns(ns, () => {
        if (!nftAvailable()) {
          console.log("  nftables unavailable in this kernel: skipped");
          return;
        }
        const other =
          "table ip other {\n\tchain c {\n\t\ttype filter hook forward priority 0; policy accept;\n" +
          "\t\tip saddr 10.244.0.0/16 counter drop\n\t}\n}\n";
        nftRun(other);
        const otherBefore = nftRun("list table ip other");
        const keeper = new RulesKeeper(true);

        assert.equal(keeper.ensure(NETS), "installed");
        const listed = nftRun("list table ip weft");
        assert.match(listed, /masquerade fully-random/);
        assert.match(listed, /meta mark & 0x00004000 == 0x00004000 return/);
        assert.equal(keeper.ensure(NETS), "unchanged");

        nftRun("delete table ip weft");
        assert.equal(keeper.ensure(NETS), "repaired");
        assert.equal(nftRun("list table ip weft"), listed);

        nftRun("add rule ip weft forward ip saddr 1.2.3.4 drop");
        assert.equal(keeper.ensure(NETS), "repaired");
        assert.equal(nftRun("list table ip weft"), listed);

        // A new lease (another pod subnet) re-installs with the new subnet.
        const moved = [{ network: NETWORK, podSubnet: parseNet("10.244.9.0/24") }];
        assert.equal(keeper.ensure(moved), "installed");
        assert.match(nftRun("list table ip weft"), /10\.244\.9\.0\/24/);
        assert.doesNotMatch(nftRun("list table ip weft"), /10\.244\.3\.0\/24/);

        // Without --ip-masq, the same table holds only the forward chain.
        new RulesKeeper(false).ensure(NETS);
        assert.doesNotMatch(nftRun("list table ip weft"), /postrouting/);

        removeMasq();
        assert.doesNotMatch(nftRun("list tables"), /table ip weft/);
        removeMasq(); // absent is fine
        assert.equal(nftRun("list table ip other"), otherBefore, "the foreign table is untouched");
      });
    } finally {
      netnsDelete(ns);
    }
  },
});
