import assert from "node:assert/strict";
import { nftRun, withNetns } from "../../ffi/mod.ts";
import { runIn } from "../lab/lab.ts";
import { namespaceObject, podObject, policy } from "../../tests/helpers/netpol_cases.ts";
import { withScratchNetns } from "../../tests/helpers/scratch_netns.ts";
import { requireRoot } from "../../tests/helpers/topology.ts";
import { compilePolicies } from "./compile.ts";
import { renderPolicyTable } from "./nft_render.ts";
import { listPolicyTable } from "./nft_table.ts";
import { expandSets, formatTableStatus, parseTableStatus } from "./table_status.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

Deno.test("no table: network policy is off", () => {
  const s = parseTableStatus(undefined);
  assert.deepEqual(s, { present: false, pods: [], sets: {} });
  assert.match(formatTableStatus(s), /network policy is off/);
});

Deno.test("expandSets() shows a set's first elements and how many there are", () => {
  const sets = { "peers-0": ["10.0.0.1", "10.0.0.2", "10.0.0.3"] };
  assert.equal(
    expandSets("ip saddr @peers-0 tcp dport 80", sets, 2),
    "ip saddr { 10.0.0.1, 10.0.0.2, … (3 in all) } tcp dport 80",
  );
  assert.equal(expandSets("ip saddr @peers-9", sets), "ip saddr @peers-9");
});

Deno.test({
  name:
    "the kernel's table reads back per pod: policies, allow rules with counters, drops; `weft policy` prints it",
  ignore: requireRoot(),
  async fn() {
    // Many peers, so nft wraps the set's elements over several lines.
    const peers = Array.from(
      { length: 40 },
      (_, i) =>
        podObject({ ns: "y", name: `p${i}`, labels: { app: "client" }, node: 1 }, `10.244.2.${10 + 2 * i}`),
    );
    const rs = compilePolicies({
      policies: [
        policy("x", "web", {
          podSelector: { matchLabels: { pod: "a" } },
          ingress: [{
            from: [{ namespaceSelector: { matchLabels: { ns: "y" } } }],
            ports: [{ port: 80 }, { protocol: "UDP", port: 53 }],
          }],
        }),
        policy("x", "deny-out", { podSelector: { matchLabels: { pod: "a" } }, policyTypes: ["Egress"] }),
      ],
      pods: [podObject({ ns: "x", name: "a", labels: { pod: "a" }, node: 0 }, "10.244.1.10"), ...peers],
      namespaces: [namespaceObject("x", { ns: "x" }), namespaceObject("y", { ns: "y" })],
      nodeName: "node-0",
    });
    await withScratchNetns("pst", async (ns) => {
      // The table as the agent installs it, with counts as traffic would have left them.
      withNetns(ns, () =>
        nftRun(renderPolicyTable(rs, {
          logDrops: true,
          counters: new Map([[
            "in/x/a",
            new Map([
              ["x/web ingress[0] ip tcp/80", { packets: 4, bytes: 240 }],
              ["default deny", { packets: 2, bytes: 120 }],
              ["drop log", { packets: 1, bytes: 60 }],
            ]),
          ]]),
        })));
      const s = parseTableStatus(withNetns(ns, () => listPolicyTable()));
      assert.equal(s.present, true);
      assert.deepEqual(s.pods.map((p) => p.pod), ["x/a"]);
      const a = s.pods[0]!;
      assert.deepEqual(a.ips, ["10.244.1.10"]);
      assert.deepEqual(a.ingress!.policies, ["x/web"]);
      assert.deepEqual(a.ingress!.rules.map((r) => [r.rule, r.match, r.packets]), [
        ["x/web ingress[0] ip tcp/80", "ip saddr @peers-0 tcp dport 80", 4],
        ["x/web ingress[0] ip udp/53", "ip saddr @peers-0 udp dport 53", 0],
      ]);
      assert.deepEqual(
        [...s.sets["peers-0"]!].sort(),
        peers.map((p) => p.status!.podIP!).sort(),
        "the 40 addresses, listed by nft over several lines",
      );
      assert.deepEqual(a.egress!.policies, ["x/deny-out"]);
      assert.deepEqual(a.egress!.rules, []);
      assert.deepEqual(a.ingress!.dropped, { packets: 2, bytes: 120 });
      assert.equal(a.ingress!.logged, 1);

      const cli = await runIn(ns, [Deno.execPath(), "run", "-A", "--no-check", MAIN, "policy"]);
      assert.equal(cli.code, 0, cli.stderr);
      assert.match(cli.stdout, /^x\/a {2}10\.244\.1\.10$/m);
      assert.match(cli.stdout, /ingress: isolated by x\/web/);
      assert.match(
        cli.stdout,
        /x\/web ingress\[0\] ip tcp\/80: 4 pkts, 240 bytes\n {6}ip saddr \{ (10\.244\.2\.\d+, ){6}… \(40 in all\) \} tcp dport 80/,
      );
      assert.match(cli.stdout, /egress: isolated by x\/deny-out\n {4}\(no traffic allowed\)/);
      const json = await runIn(ns, [Deno.execPath(), "run", "-A", "--no-check", MAIN, "policy", "--json"]);
      assert.deepEqual(JSON.parse(json.stdout), s);
    });
  },
});
