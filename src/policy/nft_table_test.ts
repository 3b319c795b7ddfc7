import assert from "node:assert/strict";
import { nftRun, withNetns } from "../../ffi/mod.ts";
import { withScratchNetns } from "../../tests/helpers/scratch_netns.ts";
import { requireRoot } from "../../tests/helpers/topology.ts";
import { parseIP } from "../net/ip.ts";
import { normalize } from "./ip_ranges.ts";
import { renderPolicyTable } from "./nft_render.ts";
import { listPolicyTable, parseCounters, PolicyTable, removePolicyTable } from "./nft_table.ts";
import type { PodRules, RuleSet } from "./rule_set.ts";

const v = (s: string) => parseIP(s).value;

function podA(ports: number[]): PodRules {
  return {
    namespace: "x",
    name: "a",
    ips: ["10.244.1.2", "fd00::2"],
    ingress: {
      policies: ["x/p"],
      rules: [{
        policy: "x/p",
        direction: "ingress",
        index: 0,
        peers: { v4: normalize([{ lo: v("10.0.0.0"), hi: v("10.0.255.255") }]), v6: [] },
        ports: ports.map((p) => ({ proto: "tcp" as const, first: p, last: p })),
        destPorts: [],
      }],
    },
    egress: { policies: ["x/q"], rules: [] },
  };
}

const rs = (pods: PodRules[]): RuleSet => ({ pods, unrestricted: [], problems: [] });

Deno.test({
  name: "PolicyTable installs the table, keeps counters across changes, repairs drift and is removed",
  ignore: requireRoot(),
  async fn() {
    await withScratchNetns("pol", (ns) =>
      withNetns(ns, () => {
        nftRun(
          "table ip other {\n\tchain c {\n\t\ttype filter hook forward priority 0; policy accept;\n\t}\n}\n",
        );
        const other = nftRun("list table ip other");
        const table = new PolicyTable({ logDrops: true });

        assert.equal(table.apply(rs([podA([80])])), "installed");
        const listed = listPolicyTable()!;
        assert.match(listed, /chain in\/x\/a \{/);
        assert.match(listed, /elements = \{ 10\.244\.1\.2 : goto in\/x\/a \}/);
        assert.match(listed, /elements = \{ fd00::2 : goto out\/x\/a \}/);
        assert.match(listed, /log prefix "weft-policy drop in x\/a: "/);
        assert.equal(table.apply(rs([podA([80])])), "unchanged", "the same rule set is not re-installed");

        // Counters: give the rule a count (as traffic would), then change the rule set around it.
        const counted = renderPolicyTable(rs([podA([80])]), {
          logDrops: true,
          counters: new Map([[
            "in/x/a",
            new Map([["x/p ingress[0] ip tcp/80", { packets: 9, bytes: 540 }]]),
          ]]),
        });
        nftRun(counted);
        assert.equal(table.ensure(), "unchanged", "counter values are not drift");
        assert.equal(table.apply(rs([podA([80, 443])])), "installed");
        const counts = parseCounters(listPolicyTable()!).get("in/x/a")!;
        assert.deepEqual(counts.get("x/p ingress[0] ip tcp/80"), { packets: 9, bytes: 540 });
        assert.deepEqual(counts.get("x/p ingress[0] ip tcp/443"), { packets: 0, bytes: 0 });
        assert.deepEqual(table.counters().get("in/x/a")?.get("x/p ingress[0] ip tcp/80"), {
          packets: 9,
          bytes: 540,
        });

        // Drift: deleted, or edited by hand.
        const good = listPolicyTable()!;
        nftRun("delete table inet weft-policy");
        assert.equal(table.ensure(), "repaired");
        assert.equal(
          listPolicyTable()!.replace(/packets \d+ bytes \d+/g, ""),
          good.replace(/packets \d+ bytes \d+/g, ""),
        );
        nftRun("add rule inet weft-policy in/x/a ip saddr 1.2.3.4 accept");
        assert.equal(table.ensure(), "repaired");
        assert.doesNotMatch(listPolicyTable()!, /1\.2\.3\.4/);
        nftRun("delete element inet weft-policy ingress4 { 10.244.1.2 }");
        assert.equal(table.ensure(), "repaired");
        assert.match(listPolicyTable()!, /10\.244\.1\.2 : goto in\/x\/a/);

        // A script nft rejects (overlapping interval elements) leaves the table in force untouched.
        const before = listPolicyTable();
        const broken = podA([80]);
        broken.ingress!.rules[0]!.peers = {
          v4: [{ lo: v("10.0.0.0"), hi: v("10.0.0.9") }, { lo: v("10.0.0.5"), hi: v("10.0.0.20") }],
          v6: [],
        };
        assert.throws(() => table.apply(rs([broken])), /nftables/);
        assert.equal(listPolicyTable(), before);

        // Names and lists at the limits still load (nft caps comments at 128 characters).
        const huge = podA([80]);
        huge.name = "p".repeat(253);
        huge.ingress!.policies = Array.from({ length: 100 }, (_, i) => `x/policy-with-a-long-name-${i}`);
        assert.equal(table.apply(rs([huge])), "installed");

        table.remove();
        assert.equal(listPolicyTable(), undefined);
        removePolicyTable(); // absent is fine
        assert.equal(nftRun("list table ip other"), other, "the foreign table is untouched");
      }));
  },
});
