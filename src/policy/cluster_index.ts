/**
 * The cluster as the policy compiler looks at it: the pods that take part in policy (with their
 * addresses and named ports), indexed by namespace, and the namespaces' labels — so a selector is
 * answered from the namespaces it can match rather than by a scan of every pod.
 *
 * Two more facts shape the pods' addresses:
 *
 * - **Registrations**: CNI ADD tells the agent a new pod's addresses before the API does (kubelet writes
 *   `status.podIP` later). A registered pod takes its registered addresses, and a registration whose pod
 *   the API has not shown yet stays unresolved (the table holds its addresses closed).
 * - **Duplicates**: two pods may claim one address (a deleted pod's status lingering while IPAM hands the
 *   address to a new pod). The newest claim wins — a registration, else the pod created last, else the
 *   greater `namespace/name` — and the others lose that address, so the table never holds one address
 *   twice and the outcome does not depend on the order objects arrived in.
 *
 * @module
 */
import { formatIP, type IP, tryParseIP } from "../net/ip.ts";
import type { DuplicateIP, Proto } from "./rule_set.ts";
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
  /** `metadata.creationTimestamp`, ms since the epoch (0 when absent). */
  created: number;
  /** When CNI ADD registered `ips` (absent: they come from the pod's status). */
  registered?: number;
}

/** A pod CNI ADD registered with the agent: its addresses, before the API knows them. */
export interface Registration {
  /** Its addresses, canonical text. */
  ips: string[];
  /** Namespace (CNI_ARGS K8S_POD_NAMESPACE; absent when the runtime sent none). */
  namespace?: string | undefined;
  /** Name (CNI_ARGS K8S_POD_NAME). */
  name?: string | undefined;
  /** When it was registered, ms since the epoch. */
  at: number;
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
export function podInfo(p: Pod, registration?: Registration): PodInfo | undefined {
  const ns = p.metadata.namespace;
  if (!ns || p.spec?.hostNetwork) return undefined;
  const phase = p.status?.phase;
  if (phase === "Succeeded" || phase === "Failed") return undefined;
  const registered = registration?.ips.map((t) => tryParseIP(t)).filter((ip): ip is IP => !!ip);
  const ips = registered?.length ? registered : podIPs(p);
  if (ips.length === 0) return undefined;
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
    created: Date.parse(p.metadata.creationTimestamp ?? "") || 0,
    ...(registered?.length ? { registered: registration!.at } : {}),
  };
}

const keyOf = (p: PodInfo) => `${p.namespace}/${p.name}`;

/** Orders the claims on one address: the newest first (see the module doc). */
function newestFirst(a: PodInfo, b: PodInfo): number {
  const ra = a.registered ?? -1, rb = b.registered ?? -1;
  if (ra !== rb) return rb - ra;
  if (a.created !== b.created) return b.created - a.created;
  return keyOf(a) < keyOf(b) ? 1 : keyOf(a) > keyOf(b) ? -1 : 0;
}

/** Takes every address away from all but its newest claimant; returns what was resolved. */
function resolveDuplicates(pods: PodInfo[]): DuplicateIP[] {
  const claims = new Map<string, PodInfo[]>();
  for (const p of pods) {
    for (const ip of p.ips) {
      const k = formatIP(ip);
      let list = claims.get(k);
      if (!list) claims.set(k, list = []);
      list.push(p);
    }
  }
  const out: DuplicateIP[] = [];
  for (const [ip, list] of claims) {
    if (list.length < 2) continue;
    list.sort(newestFirst);
    const [winner, ...losers] = list;
    for (const l of losers) l.ips = l.ips.filter((x) => formatIP(x) !== ip);
    out.push({ ip, winner: keyOf(winner!), losers: losers.map(keyOf).sort() });
  }
  return out.sort((a, b) => (a.ip < b.ip ? -1 : a.ip > b.ip ? 1 : 0));
}

const byName = (a: PodInfo, b: PodInfo) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0);

/** Pods by namespace, and namespace labels. */
export class ClusterIndex {
  /** Every taking-part pod, sorted by namespace then name. */
  readonly pods: PodInfo[];
  readonly #byNs = new Map<string, PodInfo[]>();
  readonly #nsLabels = new Map<string, Record<string, string>>();

  /** Addresses more than one pod claimed, and who kept them. */
  readonly duplicates: DuplicateIP[];
  /** Registered addresses whose pod is not known yet, with the namespace and pod the registration named. */
  readonly unresolved: { ip: string; namespace?: string; pod?: string }[];

  /** Indexes `pods` and `namespaces`, with the pods CNI ADD registered. */
  constructor(
    pods: Iterable<Pod>,
    namespaces: Iterable<Namespace>,
    registrations: Iterable<Registration> = [],
  ) {
    for (const n of namespaces) {
      const name = n.metadata.name;
      this.#nsLabels.set(name, { [NAMESPACE_NAME_LABEL]: name, ...(n.metadata.labels ?? {}) });
    }
    const byPod = new Map<string, Registration>();
    const regs = [...registrations];
    for (const r of regs) {
      if (!r.namespace || !r.name) continue;
      const k = `${r.namespace}/${r.name}`;
      if ((byPod.get(k)?.at ?? -1) < r.at) byPod.set(k, r);
    }
    const infos: PodInfo[] = [];
    for (const raw of pods) {
      const k = `${raw.metadata.namespace}/${raw.metadata.name}`;
      const p = podInfo(raw, byPod.get(k));
      byPod.delete(k);
      if (p) infos.push(p);
    }
    // A registered pod the API has not shown yet still claims its addresses (newest claim: a stale pod
    // holding one loses it), as a placeholder that is never a pod of the index.
    const placeholders = new Set<PodInfo>();
    for (const r of byPod.values()) {
      const ips = r.ips.map((t) => tryParseIP(t)).filter((ip): ip is IP => !!ip);
      const ph: PodInfo = {
        namespace: r.namespace!,
        name: r.name!,
        labels: {},
        ips,
        node: "",
        ports: [],
        created: 0,
        registered: r.at,
      };
      placeholders.add(ph);
      infos.push(ph);
    }
    this.duplicates = resolveDuplicates(infos);
    const held = new Map<string, { ip: string; namespace?: string; pod?: string }>();
    for (const p of placeholders) {
      for (const ip of p.ips.map(formatIP)) {
        held.set(ip, { ip, namespace: p.namespace, pod: `${p.namespace}/${p.name}` });
      }
    }
    const claimed = new Set(infos.filter((p) => !placeholders.has(p)).flatMap((p) => p.ips.map(formatIP)));
    for (const r of regs) {
      if (r.namespace && r.name) continue;
      // Nameless (not from kubelet): resolved only by a pod whose status shows the address.
      for (const ip of r.ips) if (!claimed.has(ip)) held.set(ip, { ip });
    }
    this.unresolved = [...held.values()].sort((a, b) => (a.ip < b.ip ? -1 : 1));
    for (const p of infos) {
      if (p.ips.length === 0 || placeholders.has(p)) continue; // lost its only address to a newer pod
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
