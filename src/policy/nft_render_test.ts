import assert from "node:assert/strict";
import { parseIP } from "../net/ip.ts";
import { normalize } from "./ip_ranges.ts";
import { parseChainComment, podChain, renderPolicyTable } from "./nft_render.ts";
import type { AllowRule, PodRules, RuleSet } from "./rule_set.ts";

const ip = (s: string) => parseIP(s).value;
const one = (s: string) => normalize([{ lo: ip(s), hi: ip(s) }]);

function rule(over: Partial<AllowRule>): AllowRule {
  return {
    policy: "x/p",
    direction: "ingress",
    index: 0,
    peers: "any",
    ports: "any",
    destPorts: [],
    ...over,
  };
}

function set(pods: PodRules[]): RuleSet {
  return { pods, unrestricted: [], problems: [] };
}

/** A chain's lines; its `comment "pod …"` line only with `withComment`. */
const lines = (script: string, chain: string, withComment = false) => {
  const start = script.indexOf(`  chain ${chain} {`);
  assert.ok(start >= 0, `chain ${chain} rendered`);
  return script.slice(start, script.indexOf("  }", start)).split("\n").slice(1).map((l) => l.trim())
    .filter((l) => l && (withComment || !l.startsWith('comment "pod ')));
};

Deno.test("an isolated pod gets a map entry per address and a chain ending in a counted drop", () => {
  const s = renderPolicyTable(set([{
    namespace: "x",
    name: "a",
    ips: ["10.244.1.2", "fd00::2"],
    ingress: { policies: ["x/p"], rules: [] },
  }]));
  assert.match(
    s,
    /map ingress4 \{ type ipv4_addr : verdict; elements = \{ 10\.244\.1\.2 : goto in\/x\/a \} \}/,
  );
  assert.match(s, /map ingress6 \{ type ipv6_addr : verdict; elements = \{ fd00::2 : goto in\/x\/a \} \}/);
  assert.match(s, /map egress4 \{ type ipv4_addr : verdict; \}/, "not isolated for egress: no entry");
  assert.deepEqual(lines(s, "in/x/a", true), [
    'comment "pod x/a ips 10.244.1.2,fd00::2 policies x/p"',
    'counter drop comment "default deny"',
  ]);
});

Deno.test("the chain comment names the pod, its addresses and its policies, and reads back", () => {
  const many = Array.from({ length: 40 }, (_, i) => `x/policy-number-${i}`);
  const s = renderPolicyTable(set([{
    namespace: "x",
    name: "a",
    ips: ["10.244.1.2"],
    ingress: { policies: many, rules: [] },
  }]));
  const comment = lines(s, "in/x/a", true)[0]!.match(/^comment "(.*)"$/)![1]!;
  assert.ok(comment.length <= 127);
  const back = parseChainComment(comment)!;
  assert.equal(back.pod, "x/a");
  assert.deepEqual(back.ips, ["10.244.1.2"]);
  assert.deepEqual(back.policies, many.slice(0, back.policies.length));
  assert.equal(back.policies.length + back.more, 40, "the cut policies are counted");
  const long = renderPolicyTable(set([{
    namespace: "kube-system",
    name: "a".repeat(253),
    ips: ["10.244.1.2", "fd00:10:244:1::2"],
    ingress: { policies: many, rules: [] },
  }]));
  const longComment = long.match(/comment "(pod [^"]*)"/)![1]!;
  assert.ok(longComment.length <= 127, longComment);
  const lb = parseChainComment(longComment)!;
  assert.match(lb.pod, /^kube-system\/a+~$/);
  assert.deepEqual(lb.ips, ["10.244.1.2", "fd00:10:244:1::2"]);
  assert.deepEqual([lb.policies, lb.more], [[], 40]);
  assert.deepEqual(parseChainComment("pod y/b ips 10.0.0.1 policies y/p"), {
    pod: "y/b",
    ips: ["10.0.0.1"],
    policies: ["y/p"],
    more: 0,
  });
});

Deno.test("the script replaces the whole table in one transaction and judges only new connections", () => {
  const s = renderPolicyTable(set([]));
  assert.deepEqual(s.split("\n").slice(0, 3), [
    "add table inet weft-policy",
    "delete table inet weft-policy",
    "table inet weft-policy {",
  ]);
  for (const chain of ["egress", "ingress"]) {
    assert.equal(lines(s, chain)[1], "ct state established,related accept", `${chain}: replies first`);
    assert.match(
      lines(s, chain)[2]!,
      /^icmpv6 type \{ nd-neighbor-solicit, nd-neighbor-advert, .*\} accept$/,
    );
  }
  assert.ok(s.indexOf("chain egress") < s.indexOf("chain ingress"));
  assert.match(s, /chain egress \{\n\s+type filter hook forward priority filter - 5; policy accept;/);
  assert.match(s, /chain ingress \{\n\s+type filter hook forward priority filter - 4; policy accept;/);
});

Deno.test("allow rules: one counted rule per family and port, peers in shared interval sets", () => {
  const peers = { v4: one("10.244.2.3"), v6: one("fd00::3") };
  const s = renderPolicyTable(set([
    {
      namespace: "x",
      name: "a",
      ips: ["10.244.1.2"],
      ingress: {
        policies: ["x/p"],
        rules: [rule({
          peers,
          ports: [{ proto: "tcp", first: 80, last: 80 }, { proto: "udp", first: 81, last: 90 }, {
            proto: "sctp",
          }],
        })],
      },
    },
    {
      namespace: "x",
      name: "b",
      ips: ["10.244.1.3"],
      ingress: { policies: ["x/p"], rules: [rule({ peers })] },
    },
  ]));
  assert.deepEqual(lines(s, "in/x/a"), [
    'ip saddr @peers-0 tcp dport 80 counter accept comment "x/p ingress[0] ip tcp/80"',
    'ip saddr @peers-0 udp dport 81-90 counter accept comment "x/p ingress[0] ip udp/81-90"',
    'ip saddr @peers-0 meta l4proto sctp counter accept comment "x/p ingress[0] ip sctp/*"',
    'ip6 saddr @peers-1 tcp dport 80 counter accept comment "x/p ingress[0] ip6 tcp/80"',
    'ip6 saddr @peers-1 udp dport 81-90 counter accept comment "x/p ingress[0] ip6 udp/81-90"',
    'ip6 saddr @peers-1 meta l4proto sctp counter accept comment "x/p ingress[0] ip6 sctp/*"',
    'counter drop comment "default deny"',
  ]);
  assert.deepEqual(lines(s, "in/x/b").slice(0, 2), [
    'ip saddr @peers-0 counter accept comment "x/p ingress[0] ip any"',
    'ip6 saddr @peers-1 counter accept comment "x/p ingress[0] ip6 any"',
  ]);
  assert.equal(s.match(/set peers-/g)?.length, 2, "equal peer lists share one set");
  assert.match(s, /set peers-0 \{ type ipv4_addr; flags interval; elements = \{ 10\.244\.2\.3 \} \}/);
});

Deno.test("egress rules match destinations; named egress ports become address.proto.port sets", () => {
  const s = renderPolicyTable(set([{
    namespace: "x",
    name: "a",
    ips: ["10.244.1.2"],
    egress: {
      policies: ["x/p"],
      rules: [rule({
        direction: "egress",
        peers: { v4: one("10.244.2.3"), v6: [] },
        ports: [],
        destPorts: [{ family: 4, ip: ip("10.244.2.3"), proto: "tcp", port: 9100, name: "metrics" }],
      })],
    },
  }]));
  assert.deepEqual(lines(s, "out/x/a"), [
    'ip daddr . meta l4proto . th dport @dports-0 counter accept comment "x/p egress[0] ip named metrics"',
    'counter drop comment "default deny"',
  ]);
  assert.match(
    s,
    /set dports-0 \{ type ipv4_addr \. inet_proto \. inet_service; elements = \{ 10\.244\.2\.3 \. tcp \. 9100 \} \}/,
  );
  assert.match(
    s,
    /map egress4 \{ type ipv4_addr : verdict; elements = \{ 10\.244\.1\.2 : goto out\/x\/a \} \}/,
  );
});

Deno.test("a rule that matches nothing renders no line; its policy still isolates", () => {
  const s = renderPolicyTable(set([{
    namespace: "x",
    name: "a",
    ips: ["10.244.1.2"],
    ingress: {
      policies: ["x/p"],
      rules: [rule({ peers: { v4: [], v6: [] } }), rule({ index: 1, ports: [] })],
    },
  }]));
  assert.deepEqual(lines(s, "in/x/a"), ['counter drop comment "default deny"']);
});

Deno.test("drop logging adds a rate-limited log rule naming the pod, before the drop", () => {
  const s = renderPolicyTable(
    set([{ namespace: "x", name: "a", ips: ["10.244.1.2"], egress: { policies: ["x/p"], rules: [] } }]),
    { logDrops: true, logRate: 3 },
  );
  assert.deepEqual(lines(s, "out/x/a"), [
    'limit rate 3/second burst 10 packets counter log prefix "weft-policy drop out x/a: " level info comment "drop log"',
    'counter drop comment "default deny"',
  ]);
});

Deno.test("given counters are carried into the new rules by chain and comment", () => {
  const counters = new Map([["in/x/a", new Map([["x/p ingress[0] any", { packets: 7, bytes: 420 }]])]]);
  const s = renderPolicyTable(
    set([{
      namespace: "x",
      name: "a",
      ips: ["10.244.1.2"],
      ingress: { policies: ["x/p"], rules: [rule({})] },
    }]),
    { counters },
  );
  assert.deepEqual(lines(s, "in/x/a")[0], 'counter packets 7 bytes 420 accept comment "x/p ingress[0] any"');
});

Deno.test("podChain() keeps Kubernetes names and hashes what nft could not take", () => {
  assert.equal(
    podChain("ingress", "kube-system", "coredns-5d78c9869d-abc.x"),
    "in/kube-system/coredns-5d78c9869d-abc.x",
  );
  assert.match(podChain("egress", "x", "a".repeat(253)), /^out\/h-[0-9a-f]{8}$/);
  assert.match(podChain("egress", "x", 'bad "name"'), /^out\/h-[0-9a-f]{8}$/);
  assert.notEqual(podChain("egress", "x", "a".repeat(253)), podChain("egress", "x", "b".repeat(253)));
});
