import assert from "node:assert/strict";
import { nftRun, withNetns } from "../../ffi/mod.ts";
import { runIn } from "../lab/lab.ts";
import { namespaceObject, podObject, policy } from "../../tests/helpers/netpol_cases.ts";
import { withScratchNetns } from "../../tests/helpers/scratch_netns.ts";
import { requireRoot } from "../../tests/helpers/topology.ts";
import { compilePolicies } from "./compile.ts";
import { parseCIDR } from "../net/ip.ts";
import { buildTableSpec, renderTable } from "./nft_render.ts";
import { listPolicyTable } from "./nft_table.ts";
import { expandSets, formatTableStatus, parseTableStatus } from "./table_status.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

Deno.test("no table: network policy is off", () => {
  const s = parseTableStatus(undefined);
  assert.equal(s.present, false);
  assert.deepEqual(s.pods, []);
  assert.match(formatTableStatus(s), /network policy is off/);
});

Deno.test("expandSets() shows a set's first elements and how many there are", () => {
  const sets = { "p-0": ["10.0.0.1", "10.0.0.2", "10.0.0.3"] };
  assert.equal(
    expandSets("ip saddr @p-0 tcp dport 80", sets, 2),
    "ip saddr { 10.0.0.1, 10.0.0.2, … (3 in all) } tcp dport 80",
  );
  assert.equal(expandSets("ip saddr @p-9", sets), "ip saddr @p-9");
});

Deno.test({
  name:
    "the kernel's table reads back: pods with their policies and drops, each policy's rules with counters, holds; `weft policy` prints it",
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
      pods: [
        podObject({ ns: "x", name: "a", labels: { pod: "a" }, node: 0 }, "10.244.1.10"),
        podObject({ ns: "x", name: "b", labels: { pod: "b" }, node: 0 }, "10.244.1.11"),
        ...peers,
      ],
      namespaces: [namespaceObject("x", { ns: "x" }), namespaceObject("y", { ns: "y" })],
      nodeName: "node-0",
      registrations: [{ ips: ["10.244.1.12"], namespace: "x", name: "new", at: 1 }],
    });
    await withScratchNetns("pst", async (ns) => {
      const spec = buildTableSpec(rs, { podNets: [parseCIDR("10.244.1.0/24").net], logDrops: true });
      const web = [...spec.chains.values()].find((c) => c.name === "pol-in/x/web")!;
      // The table as the agent installs it, with counts as traffic would have left them.
      withNetns(ns, () =>
        nftRun(renderTable(
          spec,
          new Map([
            [web.name, new Map([["x/web ingress[0] ip tcp/80", { packets: 4, bytes: 240 }]])],
            ["drops-in4", new Map([["10.244.1.10", { packets: 2, bytes: 120 }]])],
            ["ingress", new Map([["unknown pod ip", { packets: 3, bytes: 180 }]])],
          ]),
        )));
      const s = parseTableStatus(withNetns(ns, () => listPolicyTable()));
      assert.equal(s.present, true);
      assert.deepEqual(s.pods.map((p) => p.pod), ["x/a"]);
      const a = s.pods[0]!;
      assert.deepEqual(a.ips, ["10.244.1.10"]);
      assert.deepEqual(a.ingress!.policies, ["x/web"]);
      assert.deepEqual(a.ingress!.dropped, { packets: 2, bytes: 120 });
      assert.deepEqual(a.egress!.policies, ["x/deny-out"]);
      assert.deepEqual(s.open, ["x/b"]);
      assert.deepEqual(s.pending, ["10.244.1.12"], "registered, its pod not known yet: held");
      assert.deepEqual(s.held.unknown, { packets: 3, bytes: 180 });
      const pw = s.policies.find((p) => p.policy === "x/web" && p.direction === "ingress")!;
      const set = pw.rules[0]!.match.match(/@(p-\w+)/)![1]!;
      assert.deepEqual(pw.rules.map((r) => [r.rule, r.match, r.packets]), [
        ["x/web ingress[0] ip tcp/80", `ip saddr @${set} tcp dport 80`, 4],
        ["x/web ingress[0] ip udp/53", `ip saddr @${set} udp dport 53`, 0],
      ]);
      assert.deepEqual(
        [...s.sets[set]!].sort(),
        peers.map((p) => p.status!.podIP!).sort(),
        "the 40 addresses, listed by nft over several lines",
      );
      assert.deepEqual(s.policies.find((p) => p.policy === "x/deny-out")!.rules, []);

      const cli = await runIn(ns, [Deno.execPath(), "run", "-A", "--no-check", MAIN, "policy"]);
      assert.equal(cli.code, 0, cli.stderr);
      assert.match(cli.stdout, /^x\/a {2}10\.244\.1\.10$/m);
      assert.match(cli.stdout, /ingress: isolated by x\/web; dropped 2 pkts, 120 bytes/);
      assert.match(
        cli.stdout,
        /x\/web ingress\[0\] ip tcp\/80: 4 pkts, 240 bytes\n {4}ip saddr \{ (10\.244\.2\.\d+, ){6}… \(40 in all\) \} tcp dport 80/,
      );
      assert.match(
        cli.stdout,
        /policy x\/deny-out egress \(every pod it selects here\)\n {2}\(no traffic allowed\)/,
      );
      assert.match(
        cli.stdout,
        /held closed: registered, rules not in yet: 10\.244\.1\.12 .*unknown pods: 3 pkts dropped/,
      );
      const json = await runIn(ns, [Deno.execPath(), "run", "-A", "--no-check", MAIN, "policy", "--json"]);
      assert.deepEqual(JSON.parse(json.stdout), s);
    });
  },
});
