/**
 * Renders a {@linkcode RuleSet} as one nftables script that replaces weft's policy table, `inet
 * weft-policy`, in a single transaction (`add table` + `delete table` + the new table: the kernel holds
 * the old rules or the new ones, never a mix).
 *
 * Layout:
 *
 * ```
 * table inet weft-policy {
 *   set peers-0 { type ipv4_addr; flags interval; elements = { 10.244.1.2, 10.0.0.0-10.243.255.255 } }
 *   set dports-0 { type ipv4_addr . inet_proto . inet_service; elements = { 10.244.2.3 . tcp . 9100 } }
 *   map ingress4 { type ipv4_addr : verdict; elements = { 10.244.1.2 : goto in/x/a } }
 *   map egress4  { type ipv4_addr : verdict; … }            (and ingress6/egress6 for IPv6 pods)
 *   chain egress  { type filter hook forward priority filter - 5; policy accept;
 *                   ct state established,related accept; icmpv6 type { nd-… } accept;
 *                   ip saddr vmap @egress4; ip6 saddr vmap @egress6 }
 *   chain ingress { type filter hook forward priority filter - 4; policy accept;
 *                   ct state established,related accept; icmpv6 type { nd-… } accept;
 *                   ip daddr vmap @ingress4; ip6 daddr vmap @ingress6 }
 *   chain in/x/a  { ip saddr @peers-0 tcp dport 80 counter accept comment "x/web ingress[0] ip tcp/80"
 *                   …; [limit … counter log prefix "weft-policy drop in x/a: "]; counter drop comment "default deny" }
 *   chain out/x/a { … }
 * }
 * ```
 *
 * Only the first packet of a connection is judged (replies and later packets match `ct state
 * established,related`). The source pod's egress is judged in the `egress` base chain, the destination
 * pod's ingress in the `ingress` one: an `accept` ends only its own base chain, so a packet must pass
 * both, while a `drop` is final. A pod selected by no policy has no map entry and is not judged. Every
 * allow rule has a counter and a comment naming its policy rule (`weft policy` reads them back).
 *
 * Why the inet family on the forward hook, with br_netfilter, rather than the bridge family: traffic
 * between pods of one node crosses the cni0 bridge, which only the bridge family sees natively — but
 * the bridge family has no connection tracking without `nf_conntrack_bridge` (this kernel has none:
 * `ct state` in a bridge chain fails with "Protocol error"), and policy needs conntrack to let replies
 * through. br_netfilter (`bridge-nf-call-iptables=1`, which kube-proxy already requires) passes bridged
 * IP packets through the inet hooks with conntrack, so one forward chain judges both the bridged
 * (same-node) and the routed (vxlan, host-gw: other nodes) traffic.
 *
 * @module
 */
import { formatIP } from "../net/ip.ts";
import { formatRanges, type RangeSet } from "./ip_ranges.ts";
import type { AllowRule, DestPort, PodRules, PortMatch, RuleSet } from "./rule_set.ts";

/** The table weft owns for network policy. */
export const POLICY_TABLE = "weft-policy";
/** The full table reference in nft syntax. */
export const POLICY_TABLE_REF = `inet ${POLICY_TABLE}`;

/** Packet/byte counts of one rule. */
export interface Count {
  /** Packets. */
  packets: number;
  /** Bytes. */
  bytes: number;
}

/** Counters by chain, then by rule comment: what {@linkcode renderPolicyTable} carries over. */
export type Counters = Map<string, Map<string, Count>>;

/** Options of {@linkcode renderPolicyTable}. */
export interface RenderOptions {
  /** Log dropped packets (rate-limited, the pod named in the prefix): `--policy-log-drops`. */
  logDrops?: boolean;
  /** Drop log rate per pod and direction, per second (default 5). */
  logRate?: number;
  /** Counter values to start from (the previous table's), so a re-install keeps the counts. */
  counters?: Counters;
}

const NFT_NAME_MAX = 255;
const COMMENT_MAX = 127;
// nft refuses comments longer than 128 characters (rules and chains alike).
const CHAIN_COMMENT_MAX = 127;
const LOG_PREFIX_MAX = 127;

/** FNV-1a 32 bits, hex: short stable names for what would be too long. */
function hash(text: string): string {
  let h = 0x811c9dc5;
  for (const b of new TextEncoder().encode(text)) h = Math.imul(h ^ b, 0x01000193) >>> 0;
  return h.toString(16).padStart(8, "0");
}

/** The chain of one pod and direction: `in/<ns>/<pod>` or `out/<ns>/<pod>`. */
export function podChain(dir: "ingress" | "egress", namespace: string, name: string): string {
  const prefix = dir === "ingress" ? "in" : "out";
  const chain = `${prefix}/${namespace}/${name}`;
  // Kubernetes names fit nft's identifier syntax ([a-z0-9.-] after a letter); only the length may not.
  // Anything else (never valid in the API) gets a hashed name rather than breaking the whole script.
  const ok = /^[a-z0-9.-]+$/.test(namespace) && /^[a-z0-9.-]+$/.test(name) && chain.length <= NFT_NAME_MAX;
  return ok ? chain : `${prefix}/h-${hash(chain)}`;
}

/** Keeps a comment (or log prefix) within nft's limit, unique through a hash when cut. */
function fit(text: string, max: number): string {
  if (text.length <= max) return text;
  return `${text.slice(0, max - 10)}~${hash(text)}`;
}

const quote = (s: string) => `"${s.replaceAll('"', "'")}"`;

function portText(p: PortMatch): string {
  if (p.first === undefined) return `${p.proto}/*`;
  return p.first === p.last ? `${p.proto}/${p.first}` : `${p.proto}/${p.first}-${p.last}`;
}

function portMatch(p: PortMatch): string {
  if (p.first === undefined) return `meta l4proto ${p.proto}`;
  return `${p.proto} dport ${p.first === p.last ? p.first : `${p.first}-${p.last}`}`;
}

/** Collects sets by content so equal peer lists share one set. */
class SetPool {
  readonly defs: string[] = [];
  #byContent = new Map<string, string>();
  #n = 0;

  peers(family: 4 | 6, ranges: RangeSet): string {
    const elements = formatRanges(family, ranges);
    return this.#get(`${family === 4 ? "ipv4_addr" : "ipv6_addr"}; flags interval`, elements, "peers");
  }

  dests(family: 4 | 6, ports: DestPort[]): string {
    const elements = [
      ...new Set(ports.map((d) => `${formatIP({ family, value: d.ip })} . ${d.proto} . ${d.port}`)),
    ].sort();
    return this.#get(
      `${family === 4 ? "ipv4_addr" : "ipv6_addr"} . inet_proto . inet_service`,
      elements,
      "dports",
    );
  }

  #get(type: string, elements: string[], kind: string): string {
    const key = `${type}|${elements.join(",")}`;
    const hit = this.#byContent.get(key);
    if (hit) return hit;
    const name = `${kind}-${this.#n++}`;
    this.#byContent.set(key, name);
    const els = elements.length ? ` elements = { ${elements.join(", ")} }` : "";
    this.defs.push(`  set ${name} { type ${type};${els} }`);
    return name;
  }
}

/** The nft lines (without counters' values) for one allow rule: `[comment, match]` pairs. */
function allowLines(r: AllowRule, pool: SetPool): [string, string][] {
  const label = `${r.policy} ${r.direction}[${r.index}]`;
  const addr = r.direction === "ingress" ? "saddr" : "daddr";
  const out: [string, string][] = [];
  // Peer sets are only defined when a port line will use them.
  if (r.ports === "any" || r.ports.length > 0) {
    const peers: [string, string][] = r.peers === "any"
      ? [["", ""]]
      : ([[4, r.peers.v4], [6, r.peers.v6]] as const)
        .filter(([, set]) => set.length > 0)
        .map(([fam, set]) => {
          const ip = fam === 4 ? "ip" : "ip6";
          return [` ${ip}`, `${ip} ${addr} @${pool.peers(fam, set)} `];
        });
    for (const [fam, peer] of peers) {
      if (r.ports === "any") out.push([`${label}${fam} any`, peer]);
      else for (const p of r.ports) out.push([`${label}${fam} ${portText(p)}`, `${peer}${portMatch(p)} `]);
    }
  }
  for (const fam of [4, 6] as const) {
    const dp = r.destPorts.filter((d) => d.family === fam);
    if (dp.length === 0) continue;
    const ip = fam === 4 ? "ip" : "ip6";
    out.push([
      `${label} ${ip} named ${[...new Set(dp.map((d) => d.name))].join(",")}`,
      `${ip} daddr . meta l4proto . th dport @${pool.dests(fam, dp)} `,
    ]);
  }
  return out;
}

function countText(c: Counters | undefined, chain: string, comment: string): string {
  const n = c?.get(chain)?.get(comment);
  return n ? `counter packets ${n.packets} bytes ${n.bytes}` : "counter";
}

/** The comment of the final drop rule of every pod chain. */
export const DEFAULT_DENY_COMMENT = "default deny";
/** The comment of the drop-log rule (its counter counts the drops that were logged). */
export const DROP_LOG_COMMENT = "drop log";

/**
 * The comment of a pod chain — `pod x/a ips 10.244.1.2,fd00::2 policies x/p1,x/p2` — so the table
 * alone says whose chain it is and which policies isolate the pod (`weft policy` reads it back).
 */
function chainComment(pod: PodRules, dir: "ingress" | "egress"): string {
  const ips = pod.ips.join(",");
  const policies = pod[dir]!.policies;
  // The pod name is cut (marked `~`) only when even "+N" policies would not fit beside it.
  let name = `${pod.namespace}/${pod.name}`;
  const room = CHAIN_COMMENT_MAX - `pod  ips ${ips} policies +${policies.length}`.length;
  if (name.length > room) name = `${name.slice(0, Math.max(room - 1, 1))}~`;
  const head = `pod ${name} ips ${ips} policies `;
  let list = policies.join(",");
  for (let n = policies.length - 1; head.length + list.length > CHAIN_COMMENT_MAX && n >= 0; n--) {
    list = [...policies.slice(0, n), `+${policies.length - n}`].join(",");
  }
  return head + list;
}

/** Reads a chain comment back: the pod, its addresses, the policies (a `+N` tail counts the cut ones). */
export function parseChainComment(
  comment: string,
): { pod: string; ips: string[]; policies: string[]; more: number } | undefined {
  const m = comment.match(/^pod (\S+) ips (\S*) policies (\S*)$/);
  if (!m) return undefined;
  const list = m[3] ? m[3].split(",") : [];
  const tail = list[list.length - 1]?.match(/^\+(\d+)$/);
  if (tail) list.pop();
  return { pod: m[1]!, ips: m[2] ? m[2].split(",") : [], policies: list, more: tail ? Number(tail[1]) : 0 };
}

function podChainText(
  pod: PodRules,
  dir: "ingress" | "egress",
  pool: SetPool,
  opts: RenderOptions,
): string[] {
  const rules = pod[dir]!.rules;
  const chain = podChain(dir, pod.namespace, pod.name);
  const lines = [`  chain ${chain} {`, `    comment ${quote(chainComment(pod, dir))}`];
  const seen = new Set<string>();
  for (const r of rules) {
    for (const [label, match] of allowLines(r, pool)) {
      let comment = fit(label, COMMENT_MAX);
      // The same policy rule twice in one chain (a duplicate port) must not share one counter key.
      for (let n = 2; seen.has(comment); n++) comment = fit(`${label} #${n}`, COMMENT_MAX);
      seen.add(comment);
      lines.push(`    ${match}${countText(opts.counters, chain, comment)} accept comment ${quote(comment)}`);
    }
  }
  if (opts.logDrops) {
    const prefix = fit(
      `weft-policy drop ${dir === "ingress" ? "in" : "out"} ${pod.namespace}/${pod.name}: `,
      LOG_PREFIX_MAX,
    );
    lines.push(
      `    limit rate ${opts.logRate ?? 5}/second burst 10 packets ${
        countText(opts.counters, chain, DROP_LOG_COMMENT)
      } ` +
        `log prefix ${quote(prefix)} level info comment ${quote(DROP_LOG_COMMENT)}`,
    );
  }
  lines.push(
    `    ${countText(opts.counters, chain, DEFAULT_DENY_COMMENT)} drop comment ${
      quote(DEFAULT_DENY_COMMENT)
    }`,
  );
  lines.push("  }");
  return lines;
}

/**
 * IPv6 neighbour discovery is the link's plumbing, not a connection (conntrack does not make it
 * "established"): pods on one bridge solicit each other through br_netfilter's ip6 forward path, and an
 * isolated pod that could not would lose IPv6 altogether. (IPv4's ARP is not IP: never judged.)
 */
const NDP =
  "    icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert } accept";

/**
 * The script that replaces weft's policy table with `rs` (see the module doc). An empty rule set still
 * installs the (empty) table and base chains, so "policy on, nothing selected" is visible.
 */
export function renderPolicyTable(rs: RuleSet, opts: RenderOptions = {}): string {
  const pool = new SetPool();
  const chains: string[] = [];
  const maps = {
    ingress4: [] as string[],
    ingress6: [] as string[],
    egress4: [] as string[],
    egress6: [] as string[],
  };
  for (const pod of rs.pods) {
    for (const dir of ["ingress", "egress"] as const) {
      if (!pod[dir]) continue;
      chains.push(...podChainText(pod, dir, pool, opts));
      const chain = podChain(dir, pod.namespace, pod.name);
      for (const ip of pod.ips) maps[`${dir}${ip.includes(":") ? 6 : 4}`].push(`${ip} : goto ${chain}`);
    }
  }
  const mapDef = (name: keyof typeof maps) =>
    `  map ${name} { type ${name.endsWith("4") ? "ipv4_addr" : "ipv6_addr"} : verdict;${
      maps[name].length ? ` elements = { ${maps[name].join(", ")} }` : ""
    } }`;
  return [
    // `add` makes the `delete` valid when the table does not exist yet; all of it is one transaction.
    `add table ${POLICY_TABLE_REF}`,
    `delete table ${POLICY_TABLE_REF}`,
    `table ${POLICY_TABLE_REF} {`,
    ...pool.defs,
    mapDef("ingress4"),
    mapDef("ingress6"),
    mapDef("egress4"),
    mapDef("egress6"),
    "  chain egress {",
    "    type filter hook forward priority filter - 5; policy accept;",
    "    ct state established,related accept",
    NDP,
    "    ip saddr vmap @egress4",
    "    ip6 saddr vmap @egress6",
    "  }",
    "  chain ingress {",
    "    type filter hook forward priority filter - 4; policy accept;",
    "    ct state established,related accept",
    NDP,
    "    ip daddr vmap @ingress4",
    "    ip6 daddr vmap @ingress6",
    "  }",
    ...chains,
    "}",
    "",
  ].join("\n");
}
