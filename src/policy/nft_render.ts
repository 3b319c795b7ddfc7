/**
 * The nftables table a {@linkcode RuleSet} asks for, `inet weft-policy`, as data
 * ({@linkcode TableSpec}: its sets, maps and chains) — what {@linkcode PolicyTable} diffs against what
 * it installed, and renders as one script when it replaces the whole table.
 *
 * Layout (one chain per policy and direction, shared by every pod it selects):
 *
 * ```
 * table inet weft-policy {
 *   set known4   { type ipv4_addr; elements = { 10.244.1.10 comment "x/a", … } }   every pod of this node known
 *   set pending4 { type ipv4_addr; }            registered by CNI ADD, its rules not in yet: held closed
 *   set podnet4  { type ipv4_addr; flags interval; elements = { 10.244.1.0/24 } }   this node's pod subnet
 *   set drops-in4 { type ipv4_addr; counter; elements = { 10.244.1.10 } }   per-pod drop counters
 *   set p-1a2b3c4d { type ipv4_addr; elements = { 10.244.2.3, 10.244.2.4 } }   a rule's peer pods
 *   set b-1a2b3c4d { type ipv4_addr; flags interval; elements = { 10.0.0.0/8 } }   its ipBlocks
 *   map ingress4 { type ipv4_addr : verdict; elements = { 10.244.1.10 : goto in/5e6f7a8b } }
 *   chain pol-in/x/web { ip saddr @p-1a2b3c4d tcp dport 80 counter accept comment "x/web ingress[0] ip tcp/80"
 *                        ip saddr @b-1a2b3c4d tcp dport 80 counter accept comment "x/web ingress[0] ip cidr tcp/80" }
 *   chain in/5e6f7a8b  { comment "policies x/web,x/db"; jump pol-in/x/web; jump pol-in/x/db;
 *                        ip daddr @drops-in4 drop; drop }
 *   chain egress  { type filter hook postrouting priority filter - 5; policy accept;
 *                   ct state established,related accept;
 *                   ip saddr != @podnet4 accept;                      not a pod's (the overlay's own packets)
 *                   icmpv6 type { nd-… } accept;
 *                   fib saddr type local accept;                      the node's own traffic
 *                   ip saddr @pending4 counter drop;                  registered, not enforced yet
 *                   ip saddr @podnet4 ip saddr != @known4 counter drop;   unknown pod (when policies exist)
 *                   ip saddr vmap @egress4 }
 *   chain ingress { … the same on the destination, priority filter - 4 … }
 * }
 * ```
 *
 * Only the first packet of a connection is judged (later ones match `ct state established,related`). A
 * pod's egress is judged in `egress`, its ingress in `ingress`: an `accept` ends only its own base
 * chain, so a packet must pass both, while a `drop` is final. A pod that is isolated jumps, through its
 * address in a verdict map, to the chain of its combination of policies, which jumps to each policy's
 * chain (an `accept` there allows the packet) and drops what none allowed, counted per pod in the
 * `drops-*` set. Pods with the same policies share one such chain: the rules exist once per policy, not
 * once per pod.
 *
 * Why the postrouting hook: it is the one hook every packet towards or from a pod passes on this node
 * whatever path it took — forwarded (routed from another node, or bridged between two pods of this node
 * with br_netfilter), or sent from the node itself after kube-proxy in IPVS mode took it in locally
 * (LOCAL_IN) and re-sent it to the chosen endpoint (LOCAL_OUT), which never meets `forward` — and at
 * priority filter it sees the destination after every DNAT (kube-proxy's iptables and nftables modes
 * DNAT in prerouting/output at priority dstnat, −100; IPVS rewrites before LOCAL_OUT) and the source
 * before any SNAT (masquerade runs at srcnat, 100). A Service's ClusterIP or NodePort is thus judged as
 * the pod address it leads to. The node's own traffic (kubelet probes, host-network pods: a source that
 * is a local address, `fib saddr type local`) is never judged; an IPVS-forwarded packet keeps its
 * client's source and is.
 *
 * Why the inet family with br_netfilter rather than the bridge family: the bridge family has no
 * connection tracking without `nf_conntrack_bridge` (`ct state` in a bridge chain fails here), and
 * would still need a second rule set for routed traffic; br_netfilter (`bridge-nf-call-iptables=1`,
 * which kube-proxy requires too) passes bridged IP packets through the inet hooks with conntrack.
 *
 * @module
 */
import { fnv1a32 } from "../net/hash.ts";
import { formatIP, formatNet, type IPNet } from "../net/ip.ts";
import { formatRanges, type RangeSet } from "./ip_ranges.ts";
import type { AllowRule, DestPort, PodRules, PortMatch, RuleSet } from "./rule_set.ts";
import { POLICY_TABLE_REF } from "./table_ref.ts";

export { POLICY_TABLE, POLICY_TABLE_REF } from "./table_ref.ts";

/** A set or verdict map of the table. */
export interface SetSpec {
  /** `set` or `map`. */
  kind: "set" | "map";
  /** Its name. */
  name: string;
  /** The declaration, e.g. `type ipv4_addr; flags interval;`. */
  decl: string;
  /** Elements by key (address, range, concatenation): their full text (`: verdict`, `comment "…"`). */
  elements: Map<string, string>;
  /**
   * What a failed install is narrowed down to: `ip` — each element (keyed by a pod address) on its own,
   * together with the same address's elements in the other per-pod sets; `set` — the set as a whole.
   */
  unit: "ip" | "set";
  /** Its elements carry counters (carried over when the table is replaced). */
  counters?: boolean;
  /** The kernel adds its elements (a meter): they are never diffed nor compared. */
  dynamic?: boolean;
}

/** One rule. */
export interface RuleSpec {
  /** The match (may be empty). */
  match: string;
  /** Counted (`counter`, its values carried over when the chain is replaced). */
  counted: boolean;
  /** The statement after the counter: `accept`, `drop`, `jump x`, `log …`. */
  verdict: string;
  /** Its comment (names the policy rule; the key of its counter). */
  comment?: string;
}

/** A chain: a policy's, a combination's, or a base chain (with a hook). */
export interface ChainSpec {
  /** Its name. */
  name: string;
  /** The hook line of a base chain. */
  hook?: string;
  /** The chain's comment. */
  comment?: string;
  /** Its rules, in order. */
  rules: RuleSpec[];
  /** 0 a policy's chain, 1 a combination's (jumps to policy chains), 2 a base chain (uses every set). */
  level: 0 | 1 | 2;
}

/** The whole table. */
export interface TableSpec {
  /** Sets and maps by name. */
  sets: Map<string, SetSpec>;
  /** Chains by name. */
  chains: Map<string, ChainSpec>;
}

/** Packet/byte counts of one rule or element. */
export interface Count {
  /** Packets. */
  packets: number;
  /** Bytes. */
  bytes: number;
}

/** Counters by chain (or set), then by rule comment (or element key). */
export type Counters = Map<string, Map<string, Count>>;

/** Options of {@linkcode buildTableSpec}. */
export interface SpecOptions {
  /** This node's pod subnets (the hold on unknown pods covers them). */
  podNets?: readonly IPNet[];
  /** Registered addresses not in the rule set yet (held closed). */
  pending?: Iterable<string>;
  /** Hold every unknown address of the pod subnets, policies or not (before the first full install). */
  holdUnknown?: boolean;
  /** Log dropped packets (rate-limited per pod): `--policy-log-drops`. */
  logDrops?: boolean;
  /** Drop log rate per pod and direction, per second (default 5). */
  logRate?: number;
}

const NFT_NAME_MAX = 255;
const COMMENT_MAX = 127;
const LOG_PREFIX_MAX = 127;

/** FNV-1a 32 bits, hex: short stable names. */
export function hash(text: string): string {
  return fnv1a32(text).toString(16).padStart(8, "0");
}

/** Keeps a comment (or log prefix) within nft's limit, unique through a hash when cut. */
function fit(text: string, max: number): string {
  if (text.length <= max) return text;
  return `${text.slice(0, max - 10)}~${hash(text)}`;
}

/** A quoted nft string. */
export const quote = (s: string): string => `"${s.replaceAll('"', "'")}"`;

const IN_OUT = { ingress: "in", egress: "out" } as const;

/** The chain of one policy and direction: `pol-in/<ns>/<name>` or `pol-out/<ns>/<name>`. */
export function policyChain(dir: "ingress" | "egress", policy: string): string {
  const chain = `pol-${IN_OUT[dir]}/${policy}`;
  // Kubernetes names fit nft's identifier syntax ([a-z0-9.-]); only the length may not.
  return /^[a-z0-9./-]+$/.test(policy) && chain.length <= NFT_NAME_MAX
    ? chain
    : `pol-${IN_OUT[dir]}/h-${hash(chain)}`;
}

/** The chain of one combination of policies (sorted keys) and direction: `in/<hash>`. */
export function comboChain(dir: "ingress" | "egress", policies: string[]): string {
  return `${IN_OUT[dir]}/${hash(policies.join(","))}`;
}

/** The comment of a combination's chain: `policies x/p1,x/p2` (a `+N` tail counts the cut ones). */
function comboComment(policies: string[]): string {
  const head = "policies ";
  let list = policies.join(",");
  for (let n = policies.length - 1; head.length + list.length > COMMENT_MAX && n >= 0; n--) {
    list = [...policies.slice(0, n), `+${policies.length - n}`].join(",");
  }
  return head + list;
}

/** Reads a combination chain's comment back: its policies, and how many were cut. */
export function parseComboComment(comment: string): { policies: string[]; more: number } | undefined {
  const m = comment.match(/^policies (\S*)$/);
  if (!m) return undefined;
  const list = m[1] ? m[1].split(",") : [];
  const tail = list[list.length - 1]?.match(/^\+(\d+)$/);
  if (tail) list.pop();
  return { policies: list, more: tail ? Number(tail[1]) : 0 };
}

function portText(p: PortMatch): string {
  if (p.first === undefined) return `${p.proto}/*`;
  return p.first === p.last ? `${p.proto}/${p.first}` : `${p.proto}/${p.first}-${p.last}`;
}

function portMatch(p: PortMatch): string {
  if (p.first === undefined) return `meta l4proto ${p.proto}`;
  return `${p.proto} dport ${p.first === p.last ? p.first : `${p.first}-${p.last}`}`;
}

const fams = [4, 6] as const;
const ipOf = (f: 4 | 6) => (f === 4 ? "ip" : "ip6");
const addrType = (f: 4 | 6) => (f === 4 ? "ipv4_addr" : "ipv6_addr");
const familyOf = (ip: string): 4 | 6 => (ip.includes(":") ? 6 : 4);

/** Builds the sets and chains of the table; one instance per {@linkcode buildTableSpec} call. */
class SpecBuilder {
  readonly sets = new Map<string, SetSpec>();
  readonly chains = new Map<string, ChainSpec>();

  set(name: string, decl: string, unit: "ip" | "set", extra: Partial<SetSpec> = {}): SetSpec {
    let s = this.sets.get(name);
    if (!s) this.sets.set(name, s = { kind: "set", name, decl, elements: new Map(), unit, ...extra });
    return s;
  }

  map(name: string, family: 4 | 6): SetSpec {
    return this.set(name, `type ${addrType(family)} : verdict;`, "ip", { kind: "map" });
  }

  /** An interval set named after the rule it serves, holding `ranges` (ipBlocks). */
  peers(role: string, family: 4 | 6, ranges: RangeSet): string {
    const s = this.set(`b-${hash(role)}`, `type ${addrType(family)}; flags interval;`, "set");
    for (const e of formatRanges(family, ranges)) s.elements.set(e, e);
    return s.name;
  }

  /** A hash set named after the rule it serves, holding pod addresses. */
  podPeers(role: string, family: 4 | 6, ips: bigint[]): string {
    const s = this.set(`p-${hash(role)}`, `type ${addrType(family)};`, "set");
    for (const v of ips) {
      const e = formatIP({ family, value: v });
      s.elements.set(e, e);
    }
    return s.name;
  }

  /** A concatenated set `address . protocol . port`, named after its role. */
  triples(prefix: string, role: string, family: 4 | 6, items: { ip: string; proto: string; port: number }[]) {
    const s = this.set(
      `${prefix}-${hash(role)}`,
      `type ${addrType(family)} . inet_proto . inet_service;`,
      "set",
    );
    for (const d of items) {
      const e = `${d.ip} . ${d.proto} . ${d.port}`;
      s.elements.set(e, e);
    }
    return s.name;
  }
}

/** The allow rules of one policy and direction as they apply on this node (see policyRules). */
interface PolicyPart {
  policy: string;
  dir: "ingress" | "egress";
  /** By rule index: the rule (numeric ports) and the named-port targets of every selected pod. */
  rules: Map<number, { rule: AllowRule; named: Named[] }>;
}

/** Groups the isolated pods' allow rules by policy (they are the same for every pod but ingress names). */
function policyParts(pods: PodRules[]): PolicyPart[] {
  const parts = new Map<string, PolicyPart>();
  for (const pod of pods) {
    for (const dir of ["ingress", "egress"] as const) {
      for (const r of pod[dir]?.rules ?? []) {
        const key = `${dir} ${r.policy}`;
        let part = parts.get(key);
        if (!part) parts.set(key, part = { policy: r.policy, dir, rules: new Map() });
        let entry = part.rules.get(r.index);
        if (!entry) part.rules.set(r.index, entry = { rule: r, named: [] });
        if (r.ports === "any") continue;
        for (const p of r.ports) {
          if (p.name === undefined || p.first === undefined) continue;
          for (const ip of pod.ips) entry.named.push({ ip, proto: p.proto, port: p.first, name: p.name });
        }
      }
      // A policy selecting the pod with no rules for this direction still gets its (empty) chain.
      for (const policy of pod[dir]?.policies ?? []) {
        const key = `${dir} ${policy}`;
        if (!parts.has(key)) parts.set(key, { policy, dir, rules: new Map() });
      }
    }
  }
  return [...parts.values()].sort((a, b) => (`${a.dir} ${a.policy}` < `${b.dir} ${b.policy}` ? -1 : 1));
}

type Named = { ip: string; proto: string; port: number; name: string };

/**
 * The rules of one policy rule: one per peer family and numeric port, one per family of named-port
 * targets (ingress: this node's selected pods' own ports; egress: the destinations', already limited to
 * the peers). A peer family with nothing to match defines no set.
 */
function allowRules(b: SpecBuilder, rule: AllowRule, named: Named[]): RuleSpec[] {
  const label = `${rule.policy} ${rule.direction}[${rule.index}]`;
  const role = `${rule.policy} ${rule.direction} ${rule.index}`;
  const [peerAddr, selfAddr] = rule.direction === "ingress" ? ["saddr", "daddr"] : ["daddr", "saddr"];
  const numeric = rule.ports === "any" ? "any" : rule.ports.filter((p) => p.name === undefined);
  const accept = (match: string, comment: string): RuleSpec => ({
    match: match.trim(),
    counted: true,
    verdict: "accept",
    comment,
  });
  /**
   * `[label suffix, peer match]` for family `f` (none: no peer of `f` is allowed): the selected pods'
   * addresses in a hash set, the ipBlocks' ranges in an interval set (see PeerRanges).
   */
  const peersOf = (f: 4 | 6): [string, string][] => {
    if (rule.peers === "any") return [["", ""]];
    const ip = ipOf(f);
    const pods = rule.peers.pods?.[`v${f}`] ?? [];
    const blocks = rule.peers.blocks?.[`v${f}`] ?? (rule.peers.pods ? [] : rule.peers[`v${f}`]);
    const out: [string, string][] = [];
    if (pods.length) out.push([` ${ip}`, `${ip} ${peerAddr} @${b.podPeers(`${role} ${f}`, f, pods)} `]);
    if (blocks.length) {
      out.push([
        pods.length ? ` ${ip} cidr` : ` ${ip}`,
        `${ip} ${peerAddr} @${b.peers(`${role} ${f}`, f, blocks)} `,
      ]);
    }
    return out;
  };
  const out: RuleSpec[] = [];
  const peers: [string, string][] = rule.peers === "any" ? [["", ""]] : fams.flatMap((f) => peersOf(f));
  for (const [label_, peer] of numeric !== "any" && numeric.length === 0 ? [] : peers) {
    if (numeric === "any") out.push(accept(peer, `${label}${label_} any`));
    else {for (const p of numeric) {
        out.push(accept(`${peer}${portMatch(p)}`, `${label}${label_} ${portText(p)}`));
      }}
  }
  for (const f of fams) {
    const mine = named.filter((n) => familyOf(n.ip) === f);
    if (mine.length === 0) continue;
    const set = b.triples("n", `${role} ${f}`, f, mine);
    const names = [...new Set(mine.map((n) => n.name))].sort().join(",");
    for (const [label_, peer] of peersOf(f)) {
      const which = label_.endsWith("cidr") ? " cidr" : "";
      out.push(
        accept(
          `${ipOf(f)} ${selfAddr} . meta l4proto . th dport @${set} ${peer}`,
          `${label} ${ipOf(f)}${which} named ${names}`,
        ),
      );
    }
  }
  for (const f of fams) {
    const dp = rule.destPorts.filter((d) => d.family === f);
    if (dp.length === 0) continue;
    const items = dp.map((d: DestPort) => ({
      ip: formatIP({ family: f, value: d.ip }),
      proto: d.proto,
      port: d.port,
    }));
    const set = b.triples("d", `${role} ${f}`, f, items);
    const names = [...new Set(dp.map((d) => d.name))].join(",");
    out.push(
      accept(`${ipOf(f)} daddr . meta l4proto . th dport @${set}`, `${label} ${ipOf(f)} named ${names}`),
    );
  }
  return out;
}

/** The policy chains: each policy's allow rules once, whichever pods of this node it selects. */
function addPolicyChains(b: SpecBuilder, pods: PodRules[]): void {
  for (const part of policyParts(pods)) {
    const rules: RuleSpec[] = [];
    const seen = new Set<string>();
    for (const idx of [...part.rules.keys()].sort((a, b) => a - b)) {
      const { rule, named } = part.rules.get(idx)!;
      for (const r of allowRules(b, rule, named)) {
        let comment = fit(r.comment!, COMMENT_MAX);
        // The same policy rule twice in one chain (a duplicate port) must not share one counter key.
        for (let n = 2; seen.has(comment); n++) comment = fit(`${r.comment} #${n}`, COMMENT_MAX);
        seen.add(comment);
        rules.push({ ...r, comment });
      }
    }
    const name = policyChain(part.dir, part.policy);
    b.chains.set(name, {
      name,
      comment: fit(`policy ${part.policy} ${part.dir}`, COMMENT_MAX),
      rules,
      level: 0,
    });
  }
}

/** The chains of each combination of policies, the maps pointing pods at them, per-pod drop counters. */
function addPods(b: SpecBuilder, pods: PodRules[], opts: SpecOptions): void {
  for (const dir of ["ingress", "egress"] as const) {
    const io = IN_OUT[dir];
    const self = dir === "ingress" ? "daddr" : "saddr";
    for (const f of fams) {
      b.map(`${dir}${f}`, f);
      b.set(`drops-${io}${f}`, `type ${addrType(f)}; counter;`, "ip", { counters: true });
      if (opts.logDrops) {
        b.set(`log-${io}${f}`, `type ${addrType(f)}; size 65535; flags dynamic,timeout; timeout 1m;`, "set", {
          dynamic: true,
        });
      }
    }
    for (const pod of pods) {
      const d = pod[dir];
      if (!d) continue;
      const chain = comboChain(dir, d.policies);
      if (!b.chains.has(chain)) {
        const rules: RuleSpec[] = d.policies.map((p) => ({
          match: "",
          counted: false,
          verdict: `jump ${policyChain(dir, p)}`,
        }));
        if (opts.logDrops) {
          const prefix = quote(fit(`weft-policy drop ${io} ${d.policies.join(",")}: `, LOG_PREFIX_MAX));
          for (const f of fams) {
            rules.push({
              match: `update @log-${io}${f} { ${ipOf(f)} ${self} limit rate ${
                opts.logRate ?? 5
              }/second burst 10 packets }`,
              counted: true,
              verdict: `log prefix ${prefix} level info`,
              comment: `drop log ${ipOf(f)}`,
            });
          }
        }
        for (const f of fams) {
          rules.push({ match: `${ipOf(f)} ${self} @drops-${io}${f}`, counted: false, verdict: "drop" });
        }
        rules.push({ match: "", counted: true, verdict: "drop", comment: DEFAULT_DENY_COMMENT });
        b.chains.set(chain, { name: chain, comment: comboComment(d.policies), rules, level: 1 });
      }
      for (const ip of pod.ips) {
        const f = familyOf(ip);
        b.map(`${dir}${f}`, f).elements.set(ip, `${ip} : goto ${chain}`);
        b.sets.get(`drops-${io}${f}`)!.elements.set(ip, ip);
      }
    }
  }
}

/** The comment of the last rule of every combination chain (what nothing in its set caught). */
export const DEFAULT_DENY_COMMENT = "default deny";
/** Comments of the base chains' holds. */
export const HOLD_COMMENTS = { pending: "pending", unknown: "unknown pod" } as const;

/**
 * IPv6 neighbour discovery is the link's plumbing, not a connection (conntrack does not make it
 * "established"): an isolated pod that could not solicit its neighbours would lose IPv6 altogether.
 * (IPv4's ARP is not IP: never judged.)
 */
const NDP = "icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert, nd-router-solicit, nd-router-advert }";

/**
 * The base chains. Right after established traffic, a packet that neither comes from (egress) nor goes to
 * (ingress) an address of this node's pod subnets leaves the chain: most of what postrouting sees is not a
 * pod's (the overlay's own encapsulated packets, the node's traffic), and it should cost one set lookup,
 * not a route lookup. A family whose pod subnet is unknown gets no such shortcut (everything is judged).
 */
function addBaseChains(b: SpecBuilder, hold: boolean): void {
  const known = fams.filter((f) => b.sets.get(`podnet${f}`)!.elements.size > 0);
  for (const [dir, prio] of [["egress", 5], ["ingress", 4]] as const) {
    const addr = dir === "ingress" ? "daddr" : "saddr";
    const rules: RuleSpec[] = [
      { match: "ct state established,related", counted: false, verdict: "accept" },
      ...known.map((f): RuleSpec => ({
        match: `${ipOf(f)} ${addr} != @podnet${f}`,
        counted: false,
        verdict: "accept",
        comment: dir === "ingress" ? "not to a pod of this node" : "not from a pod of this node",
      })),
      { match: NDP, counted: false, verdict: "accept" },
      { match: "fib saddr type local", counted: false, verdict: "accept", comment: "the node's own traffic" },
    ];
    for (const f of fams) {
      rules.push({
        match: `${ipOf(f)} ${addr} @pending${f}`,
        counted: true,
        verdict: "drop",
        comment: `${HOLD_COMMENTS.pending} ${ipOf(f)}`,
      });
    }
    if (hold) {
      for (const f of fams) {
        rules.push({
          match: `${ipOf(f)} ${addr} @podnet${f} ${ipOf(f)} ${addr} != @known${f}`,
          counted: true,
          verdict: "drop",
          comment: `${HOLD_COMMENTS.unknown} ${ipOf(f)}`,
        });
      }
    }
    for (const f of fams) {
      rules.push({ match: `${ipOf(f)} ${addr} vmap @${dir}${f}`, counted: false, verdict: "" });
    }
    b.chains.set(dir, {
      name: dir,
      hook: `type filter hook postrouting priority filter - ${prio}; policy accept;`,
      rules,
      level: 2,
    });
  }
}

/** The table `rs` asks for (see the module doc). */
export function buildTableSpec(rs: RuleSet, opts: SpecOptions = {}): TableSpec {
  const b = new SpecBuilder();
  for (const f of fams) {
    b.set(`known${f}`, `type ${addrType(f)};`, "ip");
    b.set(`pending${f}`, `type ${addrType(f)};`, "ip");
    b.set(`podnet${f}`, `type ${addrType(f)}; flags interval;`, "set");
  }
  for (const p of rs.local) {
    for (const ip of p.ips) {
      b.sets.get(`known${familyOf(ip)}`)!.elements.set(ip, `${ip} comment ${quote(p.pod)}`);
    }
  }
  for (const ip of new Set([...rs.unresolved, ...(opts.pending ?? [])])) {
    b.sets.get(`pending${familyOf(ip)}`)!.elements.set(ip, ip);
  }
  for (const n of opts.podNets ?? []) {
    b.sets.get(`podnet${n.ip.family}`)!.elements.set(formatNet(n), formatNet(n));
  }
  addPolicyChains(b, rs.pods);
  addPods(b, rs.pods, opts);
  addBaseChains(b, rs.policiesExist || !!opts.holdUnknown);
  return { sets: b.sets, chains: b.chains };
}

/** An empty rule set: what the table holds before the first full install. */
export const EMPTY_RULES: RuleSet = {
  pods: [],
  unrestricted: [],
  problems: [],
  local: [],
  policiesExist: false,
  duplicates: [],
  unresolved: [],
};

function countText(c: Counters | undefined, owner: string, key: string): string {
  const n = c?.get(owner)?.get(key);
  return n ? `counter packets ${n.packets} bytes ${n.bytes}` : "counter";
}

/** One rule's text in `chain`, with its counter's values when `counters` has them. */
export function ruleText(chain: string, r: RuleSpec, counters?: Counters): string {
  const parts = [r.match];
  if (r.counted) parts.push(countText(counters, chain, r.comment ?? ""));
  if (r.verdict) parts.push(r.verdict);
  if (r.comment) parts.push(`comment ${quote(r.comment)}`);
  return parts.filter(Boolean).join(" ");
}

/** One element's text, with its counter's values (sets with counters) when `counters` has them. */
export function elementText(s: SetSpec, key: string, counters?: Counters): string {
  const text = s.elements.get(key)!;
  if (!s.counters) return text;
  const n = counters?.get(s.name)?.get(key);
  return n ? `${text} counter packets ${n.packets} bytes ${n.bytes}` : text;
}

/** The declaration of a set or map, without its elements. */
export function setDecl(s: SetSpec): string {
  return `${s.kind} ${s.name} { ${s.decl} }`;
}

/** Chains in the order they may be defined and referenced: policies, combinations, base chains. */
export function chainsInOrder(spec: TableSpec): ChainSpec[] {
  return [...spec.chains.values()].sort((a, b) => a.level - b.level || (a.name < b.name ? -1 : 1));
}

/**
 * The script that replaces weft's policy table with `spec` in one transaction (`add` + `delete` + the
 * table: the kernel holds the old rules or the new ones, never a mix), with `counters` carried over.
 */
export function renderTable(spec: TableSpec, counters?: Counters): string {
  const lines = [
    `add table ${POLICY_TABLE_REF}`,
    `delete table ${POLICY_TABLE_REF}`,
    `table ${POLICY_TABLE_REF} {`,
  ];
  for (const s of spec.sets.values()) {
    const els = [...s.elements.keys()].map((k) => elementText(s, k, counters));
    lines.push(`  ${s.kind} ${s.name} { ${s.decl}${els.length ? ` elements = { ${els.join(", ")} }` : ""} }`);
  }
  for (const c of chainsInOrder(spec)) {
    lines.push(`  chain ${c.name} {`);
    if (c.hook) lines.push(`    ${c.hook}`);
    if (c.comment) lines.push(`    comment ${quote(c.comment)}`);
    for (const r of c.rules) lines.push(`    ${ruleText(c.name, r, counters)}`);
    lines.push("  }");
  }
  lines.push("}", "");
  return lines.join("\n");
}

/** The script that replaces weft's policy table with the one `rs` asks for (tests, benches). */
export function renderPolicyTable(rs: RuleSet, opts: SpecOptions = {}, counters?: Counters): string {
  return renderTable(buildTableSpec(rs, opts), counters);
}
