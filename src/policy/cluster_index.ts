/**
 * The cluster as the policy compiler looks at it: the pods that take part in policy (with their
 * addresses and named ports), indexed by namespace, and the namespaces' labels — so a selector is
 * answered from the namespaces it can match rather than by a scan of every pod.
 *
 * @module
 */
import { type IP, tryParseIP } from "../net/ip.ts";
import type { Proto } from "./rule_set.ts";
import type { LabelMatcher } from "./selector.ts";
import type { Namespace, Pod } from "./types.ts";

/** The label the API server puts on every namespace (immutable, = its name). */
export const NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name";

/** The protocols a NetworkPolicy or a container port may name, as nftables spells them. */
export const PROTOS: Record<string, Proto> = { TCP: "tcp", UDP: "udp", SCTP: "sctp" };

/** A pod as the compiler sees it. */
export interface PodInfo {
  /** Namespace. */
  namespace: string;
  /** Name. */
  name: string;
  /** Labels. */
  labels: Record<string, string>;
  /** Addresses, at most one per family. */
  ips: IP[];
  /** `spec.nodeName`. */
  node: string;
  /** Named container ports. */
  ports: { name: string; proto: Proto; port: number }[];
}

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

/**
 * The pod as the compiler sees it, or undefined for a pod that takes no part in policy: host-network
 * (the node's addresses), finished (its address may be reused) or without an address yet.
 */
export function podInfo(p: Pod): PodInfo | undefined {
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

const byName = (a: PodInfo, b: PodInfo) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/** Pods by namespace, and namespace labels. */
export class ClusterIndex {
  /** Every taking-part pod, sorted by namespace then name. */
  readonly pods: PodInfo[];
  readonly #byNs = new Map<string, PodInfo[]>();
  readonly #nsLabels = new Map<string, Record<string, string>>();

  /** Indexes `pods` and `namespaces`. */
  constructor(pods: Iterable<Pod>, namespaces: Iterable<Namespace>) {
    for (const n of namespaces) {
      const name = n.metadata.name;
      this.#nsLabels.set(name, { [NAMESPACE_NAME_LABEL]: name, ...(n.metadata.labels ?? {}) });
    }
    for (const raw of pods) {
      const p = podInfo(raw);
      if (!p) continue;
      let list = this.#byNs.get(p.namespace);
      if (!list) this.#byNs.set(p.namespace, list = []);
      list.push(p);
    }
    const names = [...this.#byNs.keys()].sort();
    for (const n of names) this.#byNs.get(n)!.sort(byName);
    this.pods = names.flatMap((n) => this.#byNs.get(n)!);
  }

  /** A namespace's labels (with the name label the API server always sets). */
  labelsOf(ns: string): Record<string, string> {
    return this.#nsLabels.get(ns) ?? { [NAMESPACE_NAME_LABEL]: ns };
  }

  /** The pods of one namespace. */
  podsIn(ns: string): PodInfo[] {
    return this.#byNs.get(ns) ?? [];
  }

  /** The pods of every namespace whose labels `sel` matches. */
  podsInNamespaces(sel: LabelMatcher): PodInfo[] {
    const out: PodInfo[] = [];
    for (const [ns, pods] of this.#byNs) if (sel(this.labelsOf(ns))) out.push(...pods);
    return out;
  }
}
