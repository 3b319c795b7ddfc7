/**
 * NetworkPolicy peers (`from`/`to` entries): checked when the policy is read, evaluated only when a
 * rule of it applies to a pod of this node (most policies of a cluster select pods elsewhere).
 *
 * - `podSelector` alone: pods of the policy's namespace; `namespaceSelector` alone: every pod of the
 *   matching namespaces; both: matching pods of matching namespaces (AND).
 * - `ipBlock`: the CIDR minus `except`; it matches pod addresses too.
 * - A peer the API would reject (ipBlock with a selector, an empty peer, a bad selector or CIDR) is
 *   reported and allows nothing.
 *
 * @module
 */
import { parseCIDR } from "../net/ip.ts";
import type { ClusterIndex, PodInfo } from "./cluster_index.ts";
import { type IPRange, netRange, normalize, rangesContain, type RangeSet, subtract } from "./ip_ranges.ts";
import type { Problem } from "./ports.ts";
import type { PeerRanges } from "./rule_set.ts";
import { compileSelector, type LabelMatcher, SelectorError } from "./selector.ts";
import type { LabelSelector, NetworkPolicyPeer } from "./types.ts";

/** A checked peer. */
export type ParsedPeer =
  | { kind: "block"; family: 4 | 6; ranges: RangeSet }
  | { kind: "select"; pods?: LabelMatcher; namespaces?: LabelMatcher };

/** undefined = no selector given; null = invalid (reported). */
function matcherOf(
  sel: LabelSelector | undefined,
  path: string,
  problem: Problem,
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

function ipBlock(cidr: string, except: string[], path: string, problem: Problem): ParsedPeer | undefined {
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
  return { kind: "block", family: net.ip.family, ranges: subtract([netRange(net)], normalize(holes)) };
}

function parsePeer(peer: NetworkPolicyPeer, at: string, problem: Problem): ParsedPeer | undefined {
  const hasSel = peer.podSelector !== undefined || peer.namespaceSelector !== undefined;
  if (peer.ipBlock && hasSel) {
    problem(at, "ipBlock cannot be combined with a selector in one peer: this peer allows nothing");
    return undefined;
  }
  if (peer.ipBlock) return ipBlock(peer.ipBlock.cidr, peer.ipBlock.except ?? [], `${at}.ipBlock`, problem);
  if (!hasSel) {
    problem(at, "a peer needs a podSelector, a namespaceSelector or an ipBlock: this peer allows nothing");
    return undefined;
  }
  const pods = matcherOf(peer.podSelector, `${at}.podSelector`, problem);
  const namespaces = matcherOf(peer.namespaceSelector, `${at}.namespaceSelector`, problem);
  if (pods === null || namespaces === null) return undefined;
  return { kind: "select", ...(pods ? { pods } : {}), ...(namespaces ? { namespaces } : {}) };
}

/** Checks a rule's peers: `"any"` when absent or empty, else the valid ones (maybe none). */
export function parsePeers(
  peers: NetworkPolicyPeer[] | undefined,
  path: string,
  problem: Problem,
): "any" | ParsedPeer[] {
  if (!peers || peers.length === 0) return "any";
  const out: ParsedPeer[] = [];
  for (const [i, peer] of peers.entries()) {
    const p = parsePeer(peer, `${path}[${i}]`, problem);
    if (p) out.push(p);
  }
  return out;
}

/** A rule's peers evaluated against the cluster, on first use. */
export class Peers {
  #ranges: PeerRanges | undefined;
  #pods: PodInfo[] | undefined;

  /**
   * @param parsed the checked peers
   * @param namespace the policy's namespace (what a podSelector alone means)
   * @param index the cluster
   */
  constructor(
    private readonly parsed: ParsedPeer[],
    private readonly namespace: string,
    private readonly index: ClusterIndex,
  ) {}

  #selected(): PodInfo[] {
    const out = new Set<PodInfo>();
    for (const p of this.parsed) {
      if (p.kind !== "select") continue;
      const candidates = p.namespaces
        ? this.index.podsInNamespaces(p.namespaces)
        : this.index.podsIn(this.namespace);
      for (const pod of candidates) if (!p.pods || p.pods(pod.labels)) out.add(pod);
    }
    return [...out];
  }

  /** The addresses: every selected pod's and every block, merged and apart (see PeerRanges). */
  get ranges(): PeerRanges {
    if (this.#ranges) return this.#ranges;
    const b4: IPRange[] = [], b6: IPRange[] = [];
    for (const p of this.parsed) if (p.kind === "block") (p.family === 4 ? b4 : b6).push(...p.ranges);
    const p4 = new Set<bigint>(), p6 = new Set<bigint>();
    for (const pod of this.#selected()) for (const ip of pod.ips) (ip.family === 4 ? p4 : p6).add(ip.value);
    const sorted = (s: Set<bigint>) => [...s].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
    const pods = { v4: sorted(p4), v6: sorted(p6) };
    const blocks = { v4: normalize(b4), v6: normalize(b6) };
    const one = (v: bigint) => ({ lo: v, hi: v });
    return this.#ranges = {
      v4: normalize([...b4, ...pods.v4.map(one)]),
      v6: normalize([...b6, ...pods.v6.map(one)]),
      pods,
      blocks,
    };
  }

  /** The pods among the peers (selected, or inside a block): where egress named ports are looked up. */
  get pods(): PodInfo[] {
    if (this.#pods) return this.#pods;
    const out = new Set(this.#selected());
    const blocks = this.parsed.filter((p) => p.kind === "block");
    if (blocks.length) {
      for (const pod of this.index.pods) {
        if (
          pod.ips.some((ip) =>
            blocks.some((b) => b.family === ip.family && rangesContain(b.ranges, ip.value))
          )
        ) {
          out.add(pod);
        }
      }
    }
    return this.#pods = [...out];
  }
}
