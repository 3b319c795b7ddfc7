/**
 * The policy compiler: a pure function of (NetworkPolicies, Pods, Namespaces, this node's name) to the
 * {@linkcode RuleSet} this node must enforce, with networking.k8s.io/v1's semantics:
 *
 * - A policy applies to the pods of its namespace its `podSelector` matches (empty = all of them).
 * - `policyTypes` absent or empty means `Ingress`, plus `Egress` when `egress` has rules (the API's
 *   defaulting; a policy read from a real API server always carries it).
 * - A pod is isolated for a direction when some policy of that type selects it; it then accepts only the
 *   union of those policies' rules for that direction. A pod no policy selects is unrestricted.
 * - A rule without `from`/`to` allows every peer; without `ports` every port. `ingress: []` allows
 *   nothing (deny all); `ingress: [{}]` allows everything.
 * - Peers: `podSelector` alone = pods of the policy's namespace; `namespaceSelector` alone = every pod
 *   of the matching namespaces; both = matching pods of matching namespaces (AND); `ipBlock` = the CIDR
 *   minus `except` (it matches pod addresses too, as the upstream e2e suite expects).
 * - Ports: protocol TCP (default), UDP or SCTP; a number, a range `port..endPort`, or a name. An
 *   ingress name means the selected pod's container port of that name and protocol; an egress name
 *   the destination pod's — so it is resolved per destination.
 *
 * Host-network pods, pods without an address and finished pods (Succeeded/Failed: their address may be
 * reused) are neither selected nor peers. What cannot be enforced as written becomes a
 * {@linkcode PolicyProblem} and is handled fail-closed: the broken part allows nothing, while the rest of
 * the policy — and every other policy — still applies. Only a policy whose `podSelector` cannot be
 * evaluated is dropped whole (which pods it would isolate is unknowable).
 *
 * The node's own traffic to and from its pods is never judged: the rules hook the forward path only, and
 * what the node itself sends or receives (kubelet probes) takes the output and input paths.
 *
 * @module
 */
import { formatIP } from "../net/ip.ts";
import { ClusterIndex, type PodInfo, type Registration } from "./cluster_index.ts";
import { parsePeers, Peers } from "./peers.ts";
import { compilePorts, type PortSpec, type Problem } from "./ports.ts";
import type {
  AllowRule,
  DestPort,
  DirectionRules,
  LocalPod,
  PodRules,
  PolicyProblem,
  PortMatch,
  Proto,
  RuleSet,
} from "./rule_set.ts";
import { compileSelector, type LabelMatcher } from "./selector.ts";
import type { Namespace, NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort, Pod } from "./types.ts";

export { NAMESPACE_NAME_LABEL, type Registration } from "./cluster_index.ts";

/** What {@linkcode compilePolicies} reads. */
export interface CompileInput {
  /** Every NetworkPolicy of the cluster. */
  policies: Iterable<NetworkPolicy>;
  /** Every Pod of the cluster (peers may be anywhere). */
  pods: Iterable<Pod>;
  /** Every Namespace (for namespace selectors). */
  namespaces: Iterable<Namespace>;
  /** This node's name: the pods with this `spec.nodeName` get rules. */
  nodeName: string;
  /** Pods CNI ADD registered on this node (their addresses before the API has them). */
  registrations?: Iterable<Registration>;
}

interface CompiledRule {
  index: number;
  /** `"any"`, or the peers (evaluated when first needed). */
  peers: "any" | Peers;
  /** The pods among the peers (every pod for "any"): where egress named ports are looked up. */
  peerPods: () => PodInfo[];
  ports: "any" | PortSpec[];
  /** Egress named ports resolved so far, by `proto/name` (they do not depend on the source pod). */
  named: Map<string, DestPort[]>;
}

interface CompiledPolicy {
  key: string;
  namespace: string;
  selects: LabelMatcher;
  ingress?: CompiledRule[];
  egress?: CompiledRule[];
}

const byKey = <T>(key: (x: T) => string) => (a: T, b: T) => key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0;

/** Compiles the cluster's policies into the rules this node enforces (see the module doc). */
export function compilePolicies(input: CompileInput): RuleSet {
  const problems: PolicyProblem[] = [];
  const index = new ClusterIndex(input.pods, input.namespaces, input.registrations);
  const byNs = new Map<string, CompiledPolicy[]>();
  const policies = [...input.policies].sort(byKey((p) => `${p.metadata.namespace}/${p.metadata.name}`));
  for (const pol of policies) {
    const c = compilePolicy(pol, index, problems);
    if (!c) continue;
    let list = byNs.get(c.namespace);
    if (!list) byNs.set(c.namespace, list = []);
    list.push(c);
  }
  const out: PodRules[] = [];
  const unrestricted: string[] = [];
  const local: LocalPod[] = [];
  for (const pod of index.pods) {
    if (pod.node !== input.nodeName) continue;
    local.push({ pod: `${pod.namespace}/${pod.name}`, ips: pod.ips.map(formatIP) });
    const mine = (byNs.get(pod.namespace) ?? []).filter((c) => c.selects(pod.labels));
    const ingress = directionFor(pod, mine, "ingress");
    const egress = directionFor(pod, mine, "egress");
    if (!ingress && !egress) {
      unrestricted.push(`${pod.namespace}/${pod.name}`);
      continue;
    }
    out.push({
      namespace: pod.namespace,
      name: pod.name,
      ips: pod.ips.map(formatIP),
      ...(ingress ? { ingress } : {}),
      ...(egress ? { egress } : {}),
    });
  }
  // A registered pod not known yet is held only when a policy could select it: one in its namespace
  // (any namespace when the registration named none). Otherwise it is open, like any pod no policy selects.
  const unresolved: string[] = [];
  for (const u of index.unresolved) {
    if (u.namespace ? byNs.has(u.namespace) : policies.length > 0) unresolved.push(u.ip);
    else local.push({ pod: u.pod ?? "(registered)", ips: [u.ip] });
  }
  local.sort((a, b) => (a.pod < b.pod ? -1 : a.pod > b.pod ? 1 : 0));
  return {
    pods: out,
    unrestricted,
    problems,
    local,
    policiesExist: policies.length > 0,
    duplicates: index.duplicates,
    unresolved,
  };
}

function directionFor(
  pod: PodInfo,
  policies: CompiledPolicy[],
  dir: "ingress" | "egress",
): DirectionRules | undefined {
  const selecting = policies.filter((p) => p[dir] !== undefined);
  if (selecting.length === 0) return undefined;
  const rules: AllowRule[] = [];
  for (const p of selecting) {
    for (const r of p[dir]!) rules.push(allowRule(pod, p.key, dir, r));
  }
  return { policies: selecting.map((p) => p.key), rules };
}

function allowRule(pod: PodInfo, policy: string, dir: "ingress" | "egress", r: CompiledRule): AllowRule {
  const peers = r.peers === "any" ? "any" : r.peers.ranges;
  if (r.ports === "any") {
    return { policy, direction: dir, index: r.index, peers, ports: "any", destPorts: [] };
  }
  const ports: PortMatch[] = [];
  const destPorts: DestPort[] = [];
  for (const s of r.ports) {
    if (s.kind === "range") {
      ports.push({
        proto: s.proto,
        ...(s.first !== undefined ? { first: s.first, last: s.last ?? s.first } : {}),
      });
    } else if (dir === "ingress") {
      // The selected pod's own port of that name and protocol.
      const cp = pod.ports.find((p) => p.name === s.name && p.proto === s.proto);
      if (cp) ports.push({ proto: s.proto, first: cp.port, last: cp.port, name: s.name });
    } else {
      destPorts.push(...namedDestPorts(r, s.name, s.proto));
    }
  }
  return { policy, direction: dir, index: r.index, peers, ports: dedupePorts(ports), destPorts };
}

/** Egress named ports: every destination pod among the peers that has a port of that name. */
function namedDestPorts(r: CompiledRule, name: string, proto: Proto): DestPort[] {
  const k = `${proto}/${name}`;
  const hit = r.named.get(k);
  if (hit) return hit;
  const out: DestPort[] = [];
  for (const p of r.peerPods()) {
    const cp = p.ports.find((x) => x.name === name && x.proto === proto);
    if (!cp) continue;
    for (const ip of p.ips) out.push({ family: ip.family, ip: ip.value, proto, port: cp.port, name });
  }
  r.named.set(k, out);
  return out;
}

function dedupePorts(ports: PortMatch[]): PortMatch[] {
  const seen = new Set<string>();
  return ports.filter((p) => {
    const k = `${p.proto}/${p.first}/${p.last}`;
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

function compilePolicy(
  pol: NetworkPolicy,
  index: ClusterIndex,
  problems: PolicyProblem[],
): CompiledPolicy | undefined {
  const namespace = pol.metadata.namespace ?? "default";
  const key = `${namespace}/${pol.metadata.name}`;
  const problem: Problem = (path, message) => problems.push({ policy: key, path, message });
  const spec = pol.spec ?? {};
  let selects: LabelMatcher;
  try {
    selects = compileSelector(spec.podSelector ?? {});
  } catch (err) {
    problem(
      "spec.podSelector",
      `${(err as Error).message}: the policy is not enforced (the pods it selects are unknown)`,
    );
    return undefined;
  }
  const types = policyTypes(spec.policyTypes, (spec.egress ?? []).length > 0, problem);
  const c: CompiledPolicy = { key, namespace, selects };
  const rule = (
    i: number,
    peers: NetworkPolicyPeer[] | undefined,
    ports: NetworkPolicyPort[] | undefined,
    path: string,
    side: "from" | "to",
  ): CompiledRule => {
    const parsed = parsePeers(peers, `${path}.${side}`, problem);
    const p = parsed === "any" ? "any" : new Peers(parsed, namespace, index);
    return {
      index: i,
      peers: p,
      peerPods: () => p === "any" ? index.pods : p.pods,
      ports: compilePorts(ports, `${path}.ports`, problem),
      named: new Map(),
    };
  };
  if (types.has("Ingress")) {
    c.ingress = (spec.ingress ?? []).map((r, i) => rule(i, r.from, r.ports, `spec.ingress[${i}]`, "from"));
  }
  if (types.has("Egress")) {
    c.egress = (spec.egress ?? []).map((r, i) => rule(i, r.to, r.ports, `spec.egress[${i}]`, "to"));
  }
  return c;
}

/** policyTypes as the API defaults them. */
function policyTypes(given: string[] | undefined, hasEgress: boolean, problem: Problem): Set<string> {
  if (!given || given.length === 0) return new Set(hasEgress ? ["Ingress", "Egress"] : ["Ingress"]);
  const out = new Set<string>();
  for (const [i, t] of given.entries()) {
    if (t === "Ingress" || t === "Egress") out.add(t);
    else problem(`spec.policyTypes[${i}]`, `unknown policy type ${JSON.stringify(t)}: ignored`);
  }
  return out;
}
