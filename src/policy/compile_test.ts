import assert from "node:assert/strict";
import { CASES, type ModelPod, NODE_NAMES, podObject, policy } from "../../tests/helpers/netpol_cases.ts";
import { ModelCluster, ruleSetAllows } from "../../tests/helpers/netpol_model.ts";
import { compareReach, reachDiff, type Target } from "../../tests/helpers/netpol_reach.ts";
import { compilePolicies } from "./compile.ts";
import { formatRanges } from "./ip_ranges.ts";
import type { AllowRule, PodRules, RuleSet } from "./rule_set.ts";
import type { NetworkPolicy, Pod } from "./types.ts";

let nextHost = [10, 10];
const address = (p: ModelPod) => `10.244.${p.node + 1}.${nextHost[p.node]!++}`;

function compileAll(c: ModelCluster): RuleSet[] {
  return NODE_NAMES.map((nodeName) =>
    compilePolicies({
      policies: c.policies.values(),
      pods: c.podObjects(),
      namespaces: c.namespaceObjects(),
      nodeName,
    })
  );
}

Deno.test("the compiler gives every case of the conformance catalog its expected table", async (t) => {
  for (const kase of CASES) {
    await t.step(kase.name, () => {
      nextHost = [10, 10];
      const cluster = new ModelCluster(address);
      for (const step of kase.steps({ ip: (p) => cluster.ip(p), network: "10.244.0.0/16" })) {
        for (const m of step.apply) cluster.apply(m);
        const sets = compileAll(cluster);
        assert.deepEqual(sets.flatMap((s) => s.problems), [], "no problems");
        const expected = step.expect(cluster.podKeys());
        const observed = (f: string, to: string, tg: Target) => ruleSetAllows(sets, cluster, f, to, tg);
        const bad = compareReach(expected, observed);
        assert.equal(bad.length, 0, `step "${step.title}":\n${reachDiff(expected, observed)}`);
      }
    });
  }
});

// --- targeted cases -------------------------------------------------------------------------------

function pod(
  ns: string,
  name: string,
  ip: string,
  opts: Partial<ModelPod> & { extra?: Partial<Pod> } = {},
): Pod {
  const p = podObject({ ns, name, labels: opts.labels ?? { pod: name }, node: opts.node ?? 0 }, ip);
  return { ...p, ...(opts.extra ?? {}) };
}

const NS = ["x", "y"].map((n) => ({ metadata: { name: n, labels: { ns: n } } }));

function compile(policies: NetworkPolicy[], pods: Pod[], nodeName = "node-0"): RuleSet {
  return compilePolicies({ policies, pods, namespaces: NS, nodeName });
}

function rulesOf(rs: RuleSet, key: string): PodRules {
  const r = rs.pods.find((p) => `${p.namespace}/${p.name}` === key);
  assert.ok(r, `${key} has rules`);
  return r;
}

const peerText = (r: AllowRule) => r.peers === "any" ? "any" : formatRanges(4, r.peers.v4).join(" ");

Deno.test("policyTypes default to Ingress, plus Egress only when egress has rules", () => {
  const pods = [pod("x", "a", "10.244.1.2")];
  const implied = compile([policy("x", "p", { podSelector: {}, egress: [{}] })], pods);
  assert.ok(rulesOf(implied, "x/a").ingress && rulesOf(implied, "x/a").egress);
  assert.equal(rulesOf(implied, "x/a").ingress!.rules.length, 0, "ingress absent: deny all ingress");
  const emptyEgress = compile([policy("x", "p", { podSelector: {}, egress: [] })], pods);
  assert.ok(rulesOf(emptyEgress, "x/a").ingress && !rulesOf(emptyEgress, "x/a").egress);
  const egressOnly = compile([policy("x", "p", { podSelector: {}, policyTypes: ["Egress"] })], pods);
  assert.ok(!rulesOf(egressOnly, "x/a").ingress && rulesOf(egressOnly, "x/a").egress);
});

Deno.test("ingress: [] denies everything, ingress: [{}] allows everything", () => {
  const pods = [pod("x", "a", "10.244.1.2")];
  const deny = rulesOf(compile([policy("x", "p", { podSelector: {}, ingress: [] })], pods), "x/a");
  assert.deepEqual(deny.ingress!.rules, []);
  const allow = rulesOf(compile([policy("x", "p", { podSelector: {}, ingress: [{}] })], pods), "x/a");
  assert.deepEqual(allow.ingress!.rules.map((r) => [r.peers, r.ports]), [["any", "any"]]);
});

Deno.test("only this node's pods get rules; pods no policy selects are listed as unrestricted", () => {
  const pods = [
    pod("x", "a", "10.244.1.2"),
    pod("x", "b", "10.244.2.2", { node: 1 }),
    pod("y", "a", "10.244.1.3"),
  ];
  const rs = compile([policy("x", "p", { podSelector: {} })], pods);
  assert.deepEqual(rs.pods.map((p) => `${p.namespace}/${p.name}`), ["x/a"]);
  assert.deepEqual(rs.unrestricted, ["y/a"]);
});

Deno.test("host-network, finished and address-less pods are neither selected nor peers", () => {
  const pods = [
    pod("x", "a", "10.244.1.2"),
    pod("x", "host", "192.168.77.11", { extra: { spec: { nodeName: "node-0", hostNetwork: true } } }),
    pod("x", "done", "10.244.1.9", { extra: { status: { phase: "Succeeded", podIP: "10.244.1.9" } } }),
    pod("x", "pending", "", { extra: { status: { phase: "Pending" } } }),
  ];
  const rs = compile(
    [policy("x", "p", { podSelector: {}, ingress: [{ from: [{ podSelector: {} }] }] })],
    pods,
  );
  assert.deepEqual(rs.pods.map((p) => p.name), ["a"]);
  assert.equal(peerText(rulesOf(rs, "x/a").ingress!.rules[0]!), "10.244.1.2");
});

Deno.test("a peer's namespaceSelector {} with a podSelector picks those pods in every namespace", () => {
  const pods = [
    pod("x", "a", "10.244.1.2"),
    pod("x", "b", "10.244.1.3"),
    pod("y", "b", "10.244.2.3", { node: 1 }),
  ];
  const rs = compile([policy("x", "p", {
    podSelector: { matchLabels: { pod: "a" } },
    ingress: [{ from: [{ namespaceSelector: {}, podSelector: { matchLabels: { pod: "b" } } }] }],
  })], pods);
  assert.equal(peerText(rulesOf(rs, "x/a").ingress!.rules[0]!), "10.244.1.3 10.244.2.3");
});

Deno.test("ipBlock except becomes holes in the peer set, merged with pod addresses", () => {
  const pods = [pod("x", "a", "10.244.1.2"), pod("y", "b", "10.244.2.3", { node: 1 })];
  const rs = compile([policy("x", "p", {
    podSelector: {},
    ingress: [{
      from: [
        { ipBlock: { cidr: "10.0.0.0/8", except: ["10.244.0.0/16", "10.1.0.0/16"] } },
        { namespaceSelector: { matchLabels: { ns: "y" } } },
      ],
    }],
  })], pods);
  assert.equal(
    peerText(rulesOf(rs, "x/a").ingress!.rules[0]!),
    "10.0.0.0/16 10.2.0.0-10.243.255.255 10.244.2.3 10.245.0.0-10.255.255.255",
  );
});

Deno.test("an ingress named port resolves on each selected pod to its own number", () => {
  const web8080 = pod("x", "a", "10.244.1.2");
  web8080.spec!.containers = [{ name: "c", ports: [{ name: "http", containerPort: 8080 }] }];
  const web9090 = pod("x", "b", "10.244.1.3");
  web9090.spec!.containers = [{ name: "c", ports: [{ name: "http", containerPort: 9090, protocol: "TCP" }] }];
  const none = pod("x", "c", "10.244.1.4");
  const rs = compile([policy("x", "p", { podSelector: {}, ingress: [{ ports: [{ port: "http" }] }] })], [
    web8080,
    web9090,
    none,
  ]);
  const ports = (k: string) => rulesOf(rs, k).ingress!.rules[0]!.ports;
  assert.deepEqual(ports("x/a"), [{ proto: "tcp", first: 8080, last: 8080, name: "http" }]);
  assert.deepEqual(ports("x/b"), [{ proto: "tcp", first: 9090, last: 9090, name: "http" }]);
  assert.deepEqual(ports("x/c"), [], "no such port: the rule allows nothing on x/c");
});

Deno.test("a named port only matches a container port of the same protocol", () => {
  const a = pod("x", "a", "10.244.1.2");
  a.spec!.containers = [{ name: "c", ports: [{ name: "dns", containerPort: 53, protocol: "UDP" }] }];
  const rs = compile([policy("x", "p", { podSelector: {}, ingress: [{ ports: [{ port: "dns" }] }] })], [a]);
  assert.deepEqual(rulesOf(rs, "x/a").ingress!.rules[0]!.ports, [], "TCP (the default) dns does not exist");
});

Deno.test("an egress named port resolves on every destination pod among the peers", () => {
  const src = pod("x", "a", "10.244.1.2");
  const d1 = pod("y", "b", "10.244.2.3", { node: 1 });
  d1.spec!.containers = [{ name: "c", ports: [{ name: "metrics", containerPort: 9100 }] }];
  const d2 = pod("y", "c", "10.244.2.4", { node: 1 });
  d2.spec!.containers = [{ name: "c", ports: [{ name: "metrics", containerPort: 9200 }] }];
  const rs = compile([policy("x", "p", {
    podSelector: { matchLabels: { pod: "a" } },
    policyTypes: ["Egress"],
    egress: [{ to: [{ namespaceSelector: { matchLabels: { ns: "y" } } }], ports: [{ port: "metrics" }] }],
  })], [src, d1, d2]);
  const r = rulesOf(rs, "x/a").egress!.rules[0]!;
  assert.deepEqual(r.ports, []);
  assert.deepEqual(
    r.destPorts.map((d) => `${d.ip === 0x0af40203n ? "y/b" : "y/c"} ${d.proto}/${d.port}`).sort(),
    ["y/b tcp/9100", "y/c tcp/9200"],
  );
});

Deno.test("a dual-stack pod is matched by both addresses", () => {
  const a = pod("x", "a", "10.244.1.2");
  const b = pod("x", "b", "10.244.1.3", {
    extra: { status: { phase: "Running", podIPs: [{ ip: "10.244.1.3" }, { ip: "fd00:10:244:1::3" }] } },
  });
  const rs = compile([policy("x", "p", {
    podSelector: { matchLabels: { pod: "a" } },
    ingress: [{ from: [{ podSelector: { matchLabels: { pod: "b" } } }] }],
  })], [a, b]);
  const r = rulesOf(rs, "x/a").ingress!.rules[0]!;
  assert.ok(r.peers !== "any");
  assert.deepEqual(formatRanges(4, r.peers.v4), ["10.244.1.3"]);
  assert.deepEqual(formatRanges(6, r.peers.v6), ["fd00:10:244:1::3"]);
});

Deno.test("SCTP ports are kept as SCTP and never widened to TCP", () => {
  const rs = compile([policy("x", "p", {
    podSelector: {},
    ingress: [{ ports: [{ protocol: "SCTP", port: 80 }, { protocol: "SCTP" }] }],
  })], [pod("x", "a", "10.244.1.2")]);
  assert.deepEqual(rulesOf(rs, "x/a").ingress!.rules[0]!.ports, [
    { proto: "sctp", first: 80, last: 80 },
    { proto: "sctp" },
  ]);
});

Deno.test("an unsupported protocol is a problem; that port allows nothing, the rest still applies", () => {
  const pods = [pod("x", "a", "10.244.1.2")];
  const rs = compile([
    policy("x", "bad", {
      podSelector: {},
      ingress: [{ ports: [{ protocol: "ICMP", port: 80 }, { protocol: "UDP", port: 53 }] }, {
        ports: [{ protocol: "QUIC" }],
      }],
    }),
    policy("x", "good", { podSelector: {}, ingress: [{ ports: [{ port: 443 }] }] }),
  ], pods);
  assert.deepEqual(rs.problems.map((p) => `${p.policy} ${p.path}`), [
    "x/bad spec.ingress[0].ports[0].protocol",
    "x/bad spec.ingress[1].ports[0].protocol",
  ]);
  assert.match(rs.problems[0]!.message, /unsupported protocol "ICMP"/);
  const rules = rulesOf(rs, "x/a").ingress!;
  assert.deepEqual(rules.policies, ["x/bad", "x/good"], "the bad policy still isolates (fail closed)");
  assert.deepEqual(rules.rules.map((r) => r.ports), [
    [{ proto: "udp", first: 53, last: 53 }],
    [], // only the bad port: allows nothing (not "every port")
    [{ proto: "tcp", first: 443, last: 443 }],
  ]);
});

Deno.test("bad ports, endPorts, peers and CIDRs are problems that allow nothing", () => {
  const rs = compile([policy("x", "p", {
    podSelector: {},
    ingress: [{
      from: [
        { ipBlock: { cidr: "10.0.0.0/8" }, podSelector: {} },
        {},
        { ipBlock: { cidr: "not-a-cidr" } },
        { ipBlock: { cidr: "10.0.0.0/8", except: ["fd00::/8"] } },
        { podSelector: { matchExpressions: [{ key: "a", operator: "Is" }] } },
      ],
      ports: [{ port: 0 }, { port: 90, endPort: 80 }, { port: "http", endPort: 90 }, { endPort: 90 }],
    }],
  })], [pod("x", "a", "10.244.1.2")]);
  assert.deepEqual(rs.problems.map((p) => p.path), [
    "spec.ingress[0].from[0]",
    "spec.ingress[0].from[1]",
    "spec.ingress[0].from[2].ipBlock.cidr",
    "spec.ingress[0].from[3].ipBlock.except[0]",
    "spec.ingress[0].from[4].podSelector",
    "spec.ingress[0].ports[0].port",
    "spec.ingress[0].ports[1].endPort",
    "spec.ingress[0].ports[2].endPort",
    "spec.ingress[0].ports[3].endPort",
  ]);
  const r = rulesOf(rs, "x/a").ingress!.rules[0]!;
  assert.equal(peerText(r), "");
  assert.deepEqual(r.ports, []);
});

Deno.test("a policy whose podSelector cannot be evaluated is dropped whole, the others still apply", () => {
  const rs = compile([
    policy("x", "broken", { podSelector: { matchExpressions: [{ key: "pod", operator: "In" }] } }),
    policy("x", "fine", { podSelector: { matchLabels: { pod: "b" } } }),
  ], [pod("x", "a", "10.244.1.2"), pod("x", "b", "10.244.1.3")]);
  assert.deepEqual(rs.problems.map((p) => `${p.policy} ${p.path}`), ["x/broken spec.podSelector"]);
  assert.deepEqual(rs.pods.map((p) => p.name), ["b"]);
  assert.deepEqual(rs.unrestricted, ["x/a"]);
});

Deno.test("unknown policyTypes are reported and ignored", () => {
  const rs = compile(
    [policy("x", "p", { podSelector: {}, policyTypes: ["Ingress", "Sideways"] })],
    [pod("x", "a", "10.244.1.2")],
  );
  assert.deepEqual(rs.problems.map((p) => p.path), ["spec.policyTypes[1]"]);
  assert.ok(rulesOf(rs, "x/a").ingress && !rulesOf(rs, "x/a").egress);
});

Deno.test("the output is deterministic: the same input in another order compiles to the same rule set", () => {
  const pols = [
    policy("x", "b", { podSelector: {}, ingress: [{ from: [{ podSelector: {} }] }] }),
    policy("x", "a", { podSelector: {}, ingress: [{ ports: [{ port: 80 }] }] }),
  ];
  const pods = [pod("x", "b", "10.244.1.3"), pod("x", "a", "10.244.1.2"), pod("x", "c", "10.244.1.4")];
  assert.deepEqual(compile(pols, pods), compile([...pols].reverse(), [...pods].reverse()));
});

Deno.test("an address two pods claim goes to the newer one; the other keeps taking part without it", () => {
  const old = pod("x", "old", "10.244.1.5");
  old.metadata.creationTimestamp = "2026-01-01T00:00:00Z";
  const young = pod("y", "young", "10.244.1.5");
  young.metadata.creationTimestamp = "2026-03-01T00:00:00Z";
  for (const order of [[old, young], [young, old]]) {
    const rs = compile([policy("x", "deny", { podSelector: {} })], order);
    assert.deepEqual(rs.duplicates, [{ ip: "10.244.1.5", winner: "y/young", losers: ["x/old"] }]);
    assert.deepEqual(rs.local, [{ pod: "y/young", ips: ["10.244.1.5"] }]);
    assert.deepEqual(rs.pods, [], "x/old lost its only address: nothing of it is enforced");
  }
});

Deno.test("a registration gives a pod its address before the API does; one without its pod yet is held", () => {
  const noIP = pod("x", "a", "");
  noIP.status = { phase: "Pending" };
  const policies = [policy("x", "deny", { podSelector: {} })];
  const regs = [
    { ips: ["10.244.1.7"], namespace: "x", name: "a", at: 1 },
    { ips: ["10.244.1.8"], namespace: "x", name: "unknown", at: 2 },
    { ips: ["10.244.1.9"], namespace: "y", name: "unknown", at: 3 },
  ];
  const rs = compilePolicies({
    policies,
    pods: [noIP],
    namespaces: NS,
    nodeName: "node-0",
    registrations: regs,
  });
  assert.deepEqual(rs.pods.map((p) => [p.name, p.ips]), [["a", ["10.244.1.7"]]]);
  assert.deepEqual(rs.unresolved, ["10.244.1.8"], "x has a policy: held until the pod is known");
  assert.deepEqual(rs.local.map((l) => l.pod).sort(), ["x/a", "y/unknown"], "y has none: open at once");
  // A stale pod on the address loses it to the registration (the newest claim).
  const stale = pod("x", "stale", "10.244.1.8");
  const rs2 = compilePolicies({
    policies,
    pods: [noIP, stale],
    namespaces: NS,
    nodeName: "node-0",
    registrations: regs,
  });
  assert.deepEqual(rs2.duplicates.map((d) => [d.ip, d.winner]), [["10.244.1.8", "x/unknown"]]);
  assert.ok(!rs2.pods.some((p) => p.name === "stale"));
  assert.deepEqual(rs2.unresolved, ["10.244.1.8"]);
});
