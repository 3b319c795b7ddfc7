import assert from "node:assert/strict";
import { parseCIDR, parseIP } from "../net/ip.ts";
import { normalize } from "./ip_ranges.ts";
import { diffTables, renderUnits } from "./nft_diff.ts";
import {
  buildTableSpec,
  comboChain,
  EMPTY_RULES,
  parseComboComment,
  policyChain,
  renderPolicyTable,
  renderTable,
} from "./nft_render.ts";
import type { AllowRule, PodRules, RuleSet } from "./rule_set.ts";

const v = (s: string) => parseIP(s).value;
const one = (ip: string) => normalize([{ lo: v(ip), hi: v(ip) }]);

function set(pods: PodRules[], extra: Partial<RuleSet> = {}): RuleSet {
  return {
    ...EMPTY_RULES,
    pods,
    local: pods.map((p) => ({ pod: `${p.namespace}/${p.name}`, ips: p.ips })),
    policiesExist: pods.length > 0,
    ...extra,
  };
}

function rule(policy: string, over: Partial<AllowRule> = {}): AllowRule {
  return { policy, direction: "ingress", index: 0, peers: "any", ports: "any", destPorts: [], ...over };
}

const pod = (name: string, ip: string, policies: string[], rules: AllowRule[] = []): PodRules => ({
  namespace: "x",
  name,
  ips: [ip],
  ingress: { policies, rules },
});

Deno.test("each policy's rules exist once, in its own chain, however many pods it selects", () => {
  const web = rule("x/web", { ports: [{ proto: "tcp", first: 80, last: 80 }] });
  const s = renderPolicyTable(
    set(Array.from({ length: 50 }, (_, i) => pod(`p${i}`, `10.244.1.${10 + i}`, ["x/web"], [web]))),
  );
  assert.equal(s.match(/tcp dport 80 counter accept/g)?.length, 1, "one rule, not fifty");
  const combo = comboChain("ingress", ["x/web"]);
  assert.match(s, new RegExp(`10\\.244\\.1\\.10 : goto ${combo.replace("/", "\\/")}`));
  assert.match(
    s,
    new RegExp(
      `chain ${combo.replace("/", "\\/")} \\{\\n    comment "policies x/web"\\n    jump pol-in/x/web\\n`,
    ),
  );
  assert.match(
    s,
    /ip daddr @drops-in4 drop\n {4}ip6 daddr @drops-in6 drop\n {4}counter drop comment "default deny"/,
  );
  assert.match(s, /set drops-in4 \{ type ipv4_addr; counter; elements = \{ 10\.244\.1\.10, /);
});

Deno.test("pods with the same policies share one chain; another combination gets its own", () => {
  const spec = buildTableSpec(set([
    pod("a", "10.244.1.10", ["x/p", "x/q"]),
    pod("b", "10.244.1.11", ["x/p", "x/q"]),
    pod("c", "10.244.1.12", ["x/p"]),
  ]));
  const combos = [...spec.chains.values()].filter((c) => c.level === 1).map((c) => c.comment);
  assert.deepEqual(combos.sort(), ["policies x/p", "policies x/p,x/q"]);
  assert.equal(
    spec.sets.get("ingress4")!.elements.get("10.244.1.10"),
    spec.sets.get("ingress4")!.elements.get("10.244.1.11")?.replace("10.244.1.11", "10.244.1.10"),
  );
});

Deno.test("the base chains hook postrouting, judge new connections only and leave the node's own traffic alone", () => {
  const s = renderPolicyTable(set([]), { podNets: [parseCIDR("10.244.1.0/24").net] });
  assert.deepEqual(s.split("\n").slice(0, 3), [
    "add table inet weft-policy",
    "delete table inet weft-policy",
    "table inet weft-policy {",
  ]);
  for (const [chain, prio, addr] of [["egress", 5, "saddr"], ["ingress", 4, "daddr"]] as const) {
    const body = s.slice(s.indexOf(`  chain ${chain} {`));
    assert.match(
      body,
      new RegExp(
        `^  chain ${chain} \\{\\n    type filter hook postrouting priority filter - ${prio}; policy accept;\\n    ct state established,related accept\\n`,
      ),
    );
    assert.match(body, /fib saddr type local accept comment "the node's own traffic"/);
    assert.match(body, new RegExp(`ip ${addr} @pending4 counter drop comment "pending ip"`));
    assert.match(body, new RegExp(`ip ${addr} vmap @${chain}4`));
  }
  assert.doesNotMatch(s, /@podnet4 ip daddr != @known4/, "no policy anywhere: unknown pods are not held");
  assert.match(s, /set podnet4 \{ type ipv4_addr; flags interval; elements = \{ 10\.244\.1\.0\/24 \} \}/);
});

Deno.test("with any policy, or before the first install, unknown pods of the subnet are held", () => {
  const held = renderPolicyTable(set([], { policiesExist: true }), {
    podNets: [parseCIDR("10.244.1.0/24").net],
  });
  assert.match(held, /ip daddr @podnet4 ip daddr != @known4 counter drop comment "unknown pod ip"/);
  assert.match(held, /ip saddr @podnet4 ip saddr != @known4 counter drop comment "unknown pod ip"/);
  const start = renderTable(buildTableSpec(EMPTY_RULES, { holdUnknown: true }));
  assert.match(start, /ip daddr @podnet4 ip daddr != @known4 counter drop/);
});

Deno.test("known pods carry their names; registered pods not known yet are pending", () => {
  const s = renderPolicyTable(
    set([], { local: [{ pod: "x/a", ips: ["10.244.1.10", "fd00::10"] }], unresolved: ["10.244.1.11"] }),
  );
  assert.match(s, /set known4 \{ type ipv4_addr; elements = \{ 10\.244\.1\.10 comment "x\/a" \} \}/);
  assert.match(s, /set known6 \{ type ipv6_addr; elements = \{ fd00::10 comment "x\/a" \} \}/);
  assert.match(s, /set pending4 \{ type ipv4_addr; elements = \{ 10\.244\.1\.11 \} \}/);
});

Deno.test("allow rules: one counted rule per family and port, peers in a set named after the rule", () => {
  const peers = { v4: one("10.244.2.3"), v6: one("fd00::3") };
  const spec = buildTableSpec(set([pod("a", "10.244.1.2", ["x/p"], [rule("x/p", {
    peers,
    ports: [{ proto: "tcp", first: 80, last: 80 }, { proto: "udp", first: 1000, last: 2000 }, {
      proto: "sctp",
    }],
  })])]));
  const rules = spec.chains.get("pol-in/x/p")!.rules.map((r) => `${r.match} | ${r.comment}`);
  const [s4, s6] = ["10.244.2.3", "fd00::3"].map((ip) =>
    [...spec.sets.values()].find((s) => s.elements.has(ip))!.name
  );
  assert.deepEqual(rules, [
    `ip saddr @${s4} tcp dport 80 | x/p ingress[0] ip tcp/80`,
    `ip saddr @${s4} udp dport 1000-2000 | x/p ingress[0] ip udp/1000-2000`,
    `ip saddr @${s4} meta l4proto sctp | x/p ingress[0] ip sctp/*`,
    `ip6 saddr @${s6} tcp dport 80 | x/p ingress[0] ip6 tcp/80`,
    `ip6 saddr @${s6} udp dport 1000-2000 | x/p ingress[0] ip6 udp/1000-2000`,
    `ip6 saddr @${s6} meta l4proto sctp | x/p ingress[0] ip6 sctp/*`,
  ]);
});

Deno.test("ingress named ports become one address.proto.port set for every pod the policy selects here", () => {
  const named = (port: number) =>
    rule("x/p", { ports: [{ proto: "tcp", first: port, last: port, name: "http" }] });
  const spec = buildTableSpec(set([
    pod("a", "10.244.1.2", ["x/p"], [named(8080)]),
    pod("b", "10.244.1.3", ["x/p"], [named(9090)]),
  ]));
  const r = spec.chains.get("pol-in/x/p")!.rules;
  assert.equal(r.length, 1);
  assert.match(r[0]!.match, /^ip daddr \. meta l4proto \. th dport @n-\w+$/);
  const n = spec.sets.get(r[0]!.match.split("@")[1]!)!;
  assert.deepEqual([...n.elements.keys()].sort(), ["10.244.1.2 . tcp . 8080", "10.244.1.3 . tcp . 9090"]);
  assert.equal(r[0]!.comment, "x/p ingress[0] ip named http");
});

Deno.test("egress: destinations matched; named egress ports become address.proto.port sets", () => {
  const spec = buildTableSpec(set([{
    namespace: "x",
    name: "a",
    ips: ["10.244.1.2"],
    egress: {
      policies: ["x/p"],
      rules: [rule("x/p", {
        direction: "egress",
        peers: { v4: one("10.244.2.3"), v6: [] },
        ports: [],
        destPorts: [{ family: 4, ip: v("10.244.2.3"), proto: "tcp", port: 9100, name: "metrics" }],
      })],
    },
  }]));
  const r = spec.chains.get("pol-out/x/p")!.rules;
  assert.equal(r.length, 1);
  assert.match(r[0]!.match, /^ip daddr \. meta l4proto \. th dport @d-\w+$/);
  assert.equal(r[0]!.comment, "x/p egress[0] ip named metrics");
  assert.match(renderTable(spec), /goto out\/\w+/);
});

Deno.test("drop logging: a per-pod rate-limited log rule naming the policies, before the drops", () => {
  const s = renderPolicyTable(set([pod("a", "10.244.1.2", ["x/p"])]), { logDrops: true, logRate: 3 });
  assert.match(s, /set log-in4 \{ type ipv4_addr; size 65535; flags dynamic,timeout; timeout 1m; \}/);
  assert.match(
    s,
    /update @log-in4 \{ ip daddr limit rate 3\/second burst 10 packets \} counter log prefix "weft-policy drop in x\/p: " level info comment "drop log ip"\n(.*\n)* {4}ip daddr @drops-in4 drop/,
  );
});

Deno.test("chain names: Kubernetes names kept, what nft could not take hashed; combination comments read back", () => {
  assert.equal(policyChain("ingress", "kube-system/allow-dns.v2"), "pol-in/kube-system/allow-dns.v2");
  assert.match(policyChain("egress", `x/${"a".repeat(300)}`), /^pol-out\/h-[0-9a-f]{8}$/);
  assert.match(policyChain("egress", "x/Bad Name"), /^pol-out\/h-[0-9a-f]{8}$/);
  const many = Array.from({ length: 40 }, (_, i) => `x/policy-number-${i}`);
  const spec = buildTableSpec(set([pod("a", "10.244.1.2", many)]));
  const c = spec.chains.get(comboChain("ingress", many))!;
  assert.ok(c.comment!.length <= 127);
  const back = parseComboComment(c.comment!)!;
  assert.equal(back.policies.length + back.more, 40);
  assert.deepEqual(back.policies, many.slice(0, back.policies.length));
});

Deno.test("a difference: a new pod is its elements only; a policy change refills its chain alone", () => {
  const web = rule("x/web", { ports: [{ proto: "tcp", first: 80, last: 80 }] });
  const before = buildTableSpec(set([pod("a", "10.244.1.10", ["x/web"], [web])]));
  assert.deepEqual(diffTables(before, before), []);
  const more = buildTableSpec(
    set([pod("a", "10.244.1.10", ["x/web"], [web]), pod("b", "10.244.1.11", ["x/web"], [web])]),
  );
  const units = diffTables(before, more);
  assert.deepEqual(units.map((u) => u.key), ["ip 10.244.1.11"]);
  const script = renderUnits(units);
  assert.match(script, /^add element inet weft-policy known4 \{ 10\.244\.1\.11 comment "x\/b" \}$/m);
  assert.match(script, /^add element inet weft-policy ingress4 \{ 10\.244\.1\.11 : goto in\/\w+ \}$/m);
  assert.match(script, /^add element inet weft-policy drops-in4 \{ 10\.244\.1\.11 \}$/m);
  assert.doesNotMatch(script, /chain|add rule/);
  const web81 = rule("x/web", { ports: [{ proto: "tcp", first: 81, last: 81 }] });
  const changed = diffTables(
    more,
    buildTableSpec(
      set([pod("a", "10.244.1.10", ["x/web"], [web81]), pod("b", "10.244.1.11", ["x/web"], [web81])]),
    ),
  );
  assert.deepEqual(changed.map((u) => u.key), ["chain pol-in/x/web"]);
  assert.deepEqual(renderUnits(changed).trim().split("\n"), [
    "flush chain inet weft-policy pol-in/x/web",
    'add rule inet weft-policy pol-in/x/web tcp dport 81 counter accept comment "x/web ingress[0] tcp/81"',
  ]);
});

Deno.test("a difference is ordered so nft accepts it: references removed before what they point at", () => {
  const a = buildTableSpec(set([pod("a", "10.244.1.10", ["x/p"]), pod("b", "10.244.1.11", ["x/q"])]));
  const b = buildTableSpec(set([pod("a", "10.244.1.10", ["x/q"])]));
  const lines = renderUnits(diffTables(a, b)).trim().split("\n");
  const at = (re: RegExp) => lines.findIndex((l) => re.test(l));
  assert.ok(at(/delete element inet weft-policy ingress4 \{ 10\.244\.1\.10 \}/) < at(/delete chain .* in\//));
  assert.ok(at(/flush chain .* in\//) < at(/delete chain .* pol-in\/x\/p/));
  assert.ok(
    at(/add element inet weft-policy ingress4 \{ 10\.244\.1\.10 : goto/) > at(/delete chain .* in\//),
  );
});
