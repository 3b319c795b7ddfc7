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
import { formatIP, type IP, parseCIDR, tryParseIP } from "../net/ip.ts";
import { type IPRange, netRange, normalize, rangesContain, type RangeSet, subtract } from "./ip_ranges.ts";
import type {
  AllowRule,
  DestPort,
  DirectionRules,
  PeerRanges,
  PodRules,
  PolicyProblem,
  PortMatch,
  Proto,
  RuleSet,
} from "./rule_set.ts";
import { compileSelector, type LabelMatcher, SelectorError } from "./selector.ts";
import type {
  LabelSelector,
  Namespace,
  NetworkPolicy,
  NetworkPolicyPeer,
  NetworkPolicyPort,
  Pod,
} from "./types.ts";

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
}

/** The label the API server puts on every namespace (immutable, = its name). */
export const NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name";

/** A pod as the compiler sees it. */
interface PodInfo {
  namespace: string;
  name: string;
  labels: Record<string, string>;
  ips: IP[];
  node: string;
  ports: { name: string; proto: Proto; port: number }[];
}

type PortSpec =
  | { kind: "range"; proto: Proto; first?: number; last?: number }
  | { kind: "named"; proto: Proto; name: string };

interface CompiledRule {
  index: number;
  /** "any", or the addresses. */
  peers: "any" | PeerRanges;
  /** The pods among the peers (every pod for "any"): where egress named ports are looked up. */
  peerPods: PodInfo[];
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

const PROTOS: Record<string, Proto> = { TCP: "tcp", UDP: "udp", SCTP: "sctp" };

/** The usable addresses of a pod, or none when it takes no part in policy. */
function podIPs(p: Pod): IP[] {
  if (p.spec?.hostNetwork) return [];
  const phase = p.status?.phase;
  if (phase === "Succeeded" || phase === "Failed") return [];
  const texts = p.status?.podIPs?.length ? p.status.podIPs.map((x) => x.ip) : [p.status?.podIP ?? ""];
  const out: IP[] = [];
  for (const t of texts) {
    const ip = t ? tryParseIP(t) : undefined;
    if (ip && !out.some((o) => o.family === ip.family)) out.push(ip);
  }
  return out;
}

function podInfo(p: Pod): PodInfo | undefined {
  const ns = p.metadata.namespace;
  const ips = podIPs(p);
  if (!ns || ips.length === 0) return undefined;
  const ports: PodInfo["ports"] = [];
  for (const c of [...(p.spec?.containers ?? []), ...(p.spec?.initContainers ?? [])]) {
    for (const cp of c.ports ?? []) {
      const proto = PROTOS[cp.protocol ?? "TCP"];
      if (cp.name && proto) ports.push({ name: cp.name, proto, port: cp.containerPort });
    }
  }
  return {
    namespace: ns,
    name: p.metadata.name,
    labels: p.metadata.labels ?? {},
    ips,
    node: p.spec?.nodeName ?? "",
    ports,
  };
}

const byKey = <T>(key: (x: T) => string) => (a: T, b: T) => key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0;

/** Compiles the cluster's policies into the rules this node enforces (see the module doc). */
export function compilePolicies(input: CompileInput): RuleSet {
  const problems: PolicyProblem[] = [];
  const nsLabels = new Map<string, Record<string, string>>();
  for (const n of input.namespaces) {
    nsLabels.set(n.metadata.name, { [NAMESPACE_NAME_LABEL]: n.metadata.name, ...(n.metadata.labels ?? {}) });
  }
  const labelsOfNs = (ns: string) => nsLabels.get(ns) ?? { [NAMESPACE_NAME_LABEL]: ns };
  const pods = [...input.pods].map(podInfo).filter((p): p is PodInfo => p !== undefined)
    .sort(byKey((p) => `${p.namespace}/${p.name}`));

  const compiled: CompiledPolicy[] = [];
  const policies = [...input.policies].sort(byKey((p) => `${p.metadata.namespace}/${p.metadata.name}`));
  for (const pol of policies) {
    const c = compilePolicy(pol, pods, labelsOfNs, problems);
    if (c) compiled.push(c);
  }

  const out: PodRules[] = [];
  const unrestricted: string[] = [];
  for (const pod of pods) {
    if (pod.node !== input.nodeName) continue;
    const mine = compiled.filter((c) => c.namespace === pod.namespace && c.selects(pod.labels));
    const ingress = directionFor(pod, mine, "ingress");
    const egress = directionFor(pod, mine, "egress");
    const rules: PodRules = {
      namespace: pod.namespace,
      name: pod.name,
      ips: pod.ips.map(formatIP),
      ...(ingress ? { ingress } : {}),
      ...(egress ? { egress } : {}),
    };
    if (ingress || egress) out.push(rules);
    else unrestricted.push(`${pod.namespace}/${pod.name}`);
  }
  return { pods: out, unrestricted, problems };
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
  const peers = r.peers;
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
  for (const p of r.peerPods) {
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
  pods: PodInfo[],
  labelsOfNs: (ns: string) => Record<string, string>,
  problems: PolicyProblem[],
): CompiledPolicy | undefined {
  const namespace = pol.metadata.namespace ?? "default";
  const key = `${namespace}/${pol.metadata.name}`;
  const problem = (path: string, message: string) => problems.push({ policy: key, path, message });
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
    index: number,
    peers: NetworkPolicyPeer[] | undefined,
    ports: NetworkPolicyPort[] | undefined,
    path: string,
  ): CompiledRule => {
    const p = compilePeers(
      peers,
      namespace,
      pods,
      labelsOfNs,
      `${path}.${path.startsWith("spec.in") ? "from" : "to"}`,
      problem,
    );
    return {
      index,
      peers: p === "any" ? "any" : p.ranges,
      peerPods: p === "any" ? pods : p.pods,
      ports: compilePorts(ports, `${path}.ports`, problem),
      named: new Map(),
    };
  };
  if (types.has("Ingress")) {
    c.ingress = (spec.ingress ?? []).map((r, i) => rule(i, r.from, r.ports, `spec.ingress[${i}]`));
  }
  if (types.has("Egress")) {
    c.egress = (spec.egress ?? []).map((r, i) => rule(i, r.to, r.ports, `spec.egress[${i}]`));
  }
  return c;
}

/** policyTypes as the API defaults them. */
function policyTypes(
  given: string[] | undefined,
  hasEgress: boolean,
  problem: (path: string, message: string) => void,
): Set<string> {
  if (!given || given.length === 0) return new Set(hasEgress ? ["Ingress", "Egress"] : ["Ingress"]);
  const out = new Set<string>();
  for (const [i, t] of given.entries()) {
    if (t === "Ingress" || t === "Egress") out.add(t);
    else problem(`spec.policyTypes[${i}]`, `unknown policy type ${JSON.stringify(t)}: ignored`);
  }
  return out;
}

function compilePeers(
  peers: NetworkPolicyPeer[] | undefined,
  namespace: string,
  pods: PodInfo[],
  labelsOfNs: (ns: string) => Record<string, string>,
  path: string,
  problem: (path: string, message: string) => void,
): "any" | { ranges: PeerRanges; pods: PodInfo[] } {
  if (!peers || peers.length === 0) return "any";
  const v4: IPRange[] = [], v6: IPRange[] = [];
  const matched = new Set<PodInfo>();
  for (const [i, peer] of peers.entries()) {
    const at = `${path}[${i}]`;
    const hasSel = peer.podSelector !== undefined || peer.namespaceSelector !== undefined;
    if (peer.ipBlock && hasSel) {
      problem(at, "ipBlock cannot be combined with a selector in one peer: this peer allows nothing");
      continue;
    }
    if (peer.ipBlock) {
      const block = ipBlockRanges(peer.ipBlock.cidr, peer.ipBlock.except ?? [], `${at}.ipBlock`, problem);
      if (!block) continue;
      (block.family === 4 ? v4 : v6).push(...block.ranges);
      for (const p of pods) {
        if (p.ips.some((ip) => ip.family === block.family && rangesContain(block.ranges, ip.value))) {
          matched.add(p);
        }
      }
      continue;
    }
    if (!hasSel) {
      problem(at, "a peer needs a podSelector, a namespaceSelector or an ipBlock: this peer allows nothing");
      continue;
    }
    const podSel = matcherOf(peer.podSelector, `${at}.podSelector`, problem);
    const nsSel = matcherOf(peer.namespaceSelector, `${at}.namespaceSelector`, problem);
    if (podSel === null || nsSel === null) continue;
    for (const p of pods) {
      // No namespaceSelector: the policy's own namespace.
      const nsOk = nsSel === undefined ? p.namespace === namespace : nsSel(labelsOfNs(p.namespace));
      if (!nsOk) continue;
      if (podSel !== undefined && !podSel(p.labels)) continue;
      matched.add(p);
      for (const ip of p.ips) {
        (ip.family === 4 ? v4 : v6).push({ lo: ip.value, hi: ip.value });
      }
    }
  }
  return { ranges: { v4: normalize(v4), v6: normalize(v6) }, pods: [...matched] };
}

/** undefined = no selector given; null = invalid (reported). */
function matcherOf(
  sel: LabelSelector | undefined,
  path: string,
  problem: (path: string, message: string) => void,
): LabelMatcher | undefined | null {
  if (sel === undefined) return undefined;
  try {
    return compileSelector(sel);
  } catch (err) {
    if (!(err instanceof SelectorError)) throw err;
    problem(path, `${err.message}: this peer allows nothing`);
    return null;
  }
}

function ipBlockRanges(
  cidr: string,
  except: string[],
  path: string,
  problem: (path: string, message: string) => void,
): { family: 4 | 6; ranges: RangeSet } | undefined {
  let net;
  try {
    net = parseCIDR(cidr).net;
  } catch (err) {
    problem(`${path}.cidr`, `${(err as Error).message}: this peer allows nothing`);
    return undefined;
  }
  const holes: IPRange[] = [];
  for (const [i, e] of except.entries()) {
    let hole;
    try {
      hole = parseCIDR(e).net;
    } catch (err) {
      problem(`${path}.except[${i}]`, `${(err as Error).message}: this peer allows nothing`);
      return undefined;
    }
    if (hole.ip.family !== net.ip.family) {
      problem(`${path}.except[${i}]`, `${e} is not of the family of ${cidr}: this peer allows nothing`);
      return undefined;
    }
    holes.push(netRange(hole));
  }
  return { family: net.ip.family, ranges: subtract([netRange(net)], normalize(holes)) };
}

function compilePorts(
  ports: NetworkPolicyPort[] | undefined,
  path: string,
  problem: (path: string, message: string) => void,
): CompiledRule["ports"] {
  if (!ports || ports.length === 0) return "any";
  const out: PortSpec[] = [];
  for (const [i, p] of ports.entries()) {
    const at = `${path}[${i}]`;
    const protoText = p.protocol ?? "TCP";
    const proto = PROTOS[protoText];
    if (!proto) {
      problem(
        `${at}.protocol`,
        `unsupported protocol ${JSON.stringify(protoText)} (TCP, UDP or SCTP): this port allows nothing`,
      );
      continue;
    }
    if (p.port === undefined || p.port === null) {
      if (p.endPort !== undefined) {
        problem(`${at}.endPort`, "endPort needs a numeric port: this port allows nothing");
        continue;
      }
      out.push({ kind: "range", proto });
      continue;
    }
    if (typeof p.port === "string") {
      if (p.endPort !== undefined) {
        problem(`${at}.endPort`, "endPort needs a numeric port, not a named one: this port allows nothing");
        continue;
      }
      out.push({ kind: "named", proto, name: p.port });
      continue;
    }
    if (!validPort(p.port)) {
      problem(`${at}.port`, `port ${p.port} is not in 1-65535: this port allows nothing`);
      continue;
    }
    const last = p.endPort ?? p.port;
    if (!validPort(last) || last < p.port) {
      problem(`${at}.endPort`, `endPort ${p.endPort} must be in ${p.port}-65535: this port allows nothing`);
      continue;
    }
    out.push({ kind: "range", proto, first: p.port, last });
  }
  return out;
}

function validPort(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && n <= 65535;
}
