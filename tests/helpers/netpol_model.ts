/**
 * The modelled cluster of the netpol catalog (tests/helpers/netpol_cases.ts) as Kubernetes objects,
 * changed by the catalog's mutations, plus {@linkcode ruleSetAllows}: what a compiled
 * {@linkcode RuleSet} lets through, evaluated in JS the way the nftables table does in the kernel
 * (egress of the source pod on its node, then ingress of the destination pod on its node; replies and
 * loopback are not judged). The compiler's unit test uses it to check the compiler against the
 * catalog's hand-written tables without a kernel; the kernel matrix checks the real table against the
 * same tables.
 *
 * @module
 */
import { parseIP } from "../../src/net/ip.ts";
import { rangesContain } from "../../src/policy/ip_ranges.ts";
import type { AllowRule, PodRules, RuleSet } from "../../src/policy/rule_set.ts";
import type { Namespace, NetworkPolicy, Pod } from "../../src/policy/types.ts";
import {
  baseNamespaces,
  basePods,
  type ModelPod,
  type Mutation,
  namespaceObject,
  podObject,
} from "./netpol_cases.ts";
import type { Target } from "./netpol_reach.ts";

/** The catalog's cluster: namespaces, pods (with addresses), policies. */
export class ModelCluster {
  /** Namespace labels by name. */
  namespaces = baseNamespaces();
  /** Pods by `ns/name`. */
  pods: Map<string, ModelPod>;
  /** Policies by `ns/name`. */
  policies = new Map<string, NetworkPolicy>();

  /**
   * @param addressOf gives a pod its address (called once per pod, when it is added)
   * @param only the base pods to start with (default: all nine)
   */
  constructor(private readonly addressOf: (p: ModelPod) => string, only?: string[]) {
    const base = basePods().filter((p) => !only || only.includes(`${p.ns}/${p.name}`));
    this.pods = new Map(base.map((p) => [`${p.ns}/${p.name}`, p]));
    for (const p of this.pods.values()) this.#ips.set(`${p.ns}/${p.name}`, addressOf(p));
  }

  #ips = new Map<string, string>();

  /** A pod's address. */
  ip(pod: string): string {
    const ip = this.#ips.get(pod);
    if (!ip) throw new Error(`no pod ${pod}`);
    return ip;
  }

  /** The pods, `ns/name`, in table order (base pods first, then added ones). */
  podKeys(): string[] {
    return [...this.pods.keys()];
  }

  /** Applies one catalog mutation. */
  apply(m: Mutation): void {
    if ("put" in m) {
      this.policies.set(`${m.put.metadata.namespace}/${m.put.metadata.name}`, structuredClone(m.put));
    } else if ("remove" in m) {
      if (!this.policies.delete(m.remove)) throw new Error(`no policy ${m.remove}`);
    } else if ("podLabels" in m) {
      const p = this.pods.get(m.podLabels);
      if (!p) throw new Error(`no pod ${m.podLabels}`);
      p.labels = { ...m.labels };
    } else if ("nsLabels" in m) {
      this.namespaces.set(m.nsLabels, { ...m.labels });
    } else {
      const [ns, name] = m.addPod.split("/") as [string, string];
      const p: ModelPod = { ns, name, labels: { ...m.labels }, node: m.node };
      this.pods.set(m.addPod, p);
      this.#ips.set(m.addPod, this.addressOf(p));
    }
  }

  /** The Pod objects. */
  podObjects(): Pod[] {
    return [...this.pods.entries()].map(([k, p]) => podObject(p, this.ip(k)));
  }

  /** The Namespace objects. */
  namespaceObjects(): Namespace[] {
    return [...this.namespaces.entries()].map(([n, l]) => namespaceObject(n, l));
  }
}

function ruleAllows(r: AllowRule, peer: string, self: string, t: Target): boolean {
  const peerIP = parseIP(peer);
  if (r.peers !== "any") {
    const set = peerIP.family === 4 ? r.peers.v4 : r.peers.v6;
    const inPeers = rangesContain(set, peerIP.value);
    // Egress named ports are already limited to the peers.
    if (!inPeers) return false;
  }
  if (r.ports === "any") return true;
  // The port is always the destination's: `peer` for egress, `self` for ingress.
  const dst = r.direction === "egress" ? peerIP : parseIP(self);
  if (
    r.ports.some((p) =>
      p.proto === t.proto && (p.first === undefined || (p.first <= t.port && t.port <= p.last!))
    )
  ) {
    return true;
  }
  return r.destPorts.some((d) =>
    d.family === dst.family && d.ip === dst.value && d.proto === t.proto && d.port === t.port
  );
}

function find(rs: RuleSet, key: string): PodRules | undefined {
  return rs.pods.find((p) => `${p.namespace}/${p.name}` === key);
}

/**
 * Whether `from` may open a connection to `to` on `t`, given each node's rule set (`ruleSets[i]` for
 * node i) and where the pods are.
 */
export function ruleSetAllows(
  ruleSets: RuleSet[],
  cluster: ModelCluster,
  from: string,
  to: string,
  t: Target,
): boolean {
  if (from === to) return true;
  const src = cluster.pods.get(from)!, dst = cluster.pods.get(to)!;
  const srcIP = cluster.ip(from), dstIP = cluster.ip(to);
  const eg = find(ruleSets[src.node]!, from)?.egress;
  if (eg && !eg.rules.some((r) => ruleAllows(r, dstIP, srcIP, t))) return false;
  const ing = find(ruleSets[dst.node]!, to)?.ingress;
  if (ing && !ing.rules.some((r) => ruleAllows(r, srcIP, dstIP, t))) return false;
  return true;
}
