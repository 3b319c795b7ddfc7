/**
 * Finds what on this host drops forwarded pod traffic where no accept of weft's can help. Every nftables
 * base chain on the forward hook sees each forwarded packet, and a drop in any one of them is final: an
 * accept in weft's table (or in iptables' FORWARD chain) does not stop a firewalld-style
 * `table inet firewalld { chain filter_FORWARD { type filter hook forward priority filter + 10; policy
 * drop; … } }` from dropping it (flannel #2055). Such a chain cannot be fixed from outside, so it is named.
 *
 * How: nftables' own JSON listing of the base chains on the forward hook (iptables-nft's `FORWARD` is one
 * of them) and of what they jump to, walked for a few synthetic packets — a new connection from a pod of
 * this node to a pod elsewhere in the cluster and back, through the overlay device and `cni0`. Each rule's
 * matches are judged true, false or unknown (a port, a mark, a named set…): a chain that drops the packet
 * on every path "drops"; one that drops it only on some paths "may drop". iptables-legacy's rules are not
 * nftables' and are not seen here (weft's FLANNEL-FWD jump goes first in them).
 *
 * @module
 */
import { nftRun } from "../../ffi/mod.ts";
import {
  addIP,
  bitsOf,
  compareIP,
  formatIP,
  type IP,
  type IPNet,
  netContains,
  networkOf,
  tryParseIP,
} from "../net/ip.ts";

/** A synthetic forwarded packet: the first packet of a new connection (not DNATed). */
export interface ForwardProbe {
  /** Source address. */
  saddr: IP;
  /** Destination address. */
  daddr: IP;
  /** Input interface name. */
  iif: string;
  /** Output interface name. */
  oif: string;
}

/** A base chain on the forward hook that drops pod traffic. */
export interface ForwardBlocker {
  /** nftables family: `ip`, `ip6`, `inet`. */
  family: string;
  /** Table name. */
  table: string;
  /** Base chain name. */
  chain: string;
  /** `drops`: on every path; `may drops`: on some (depends on matches weft cannot judge). */
  verdict: "drops" | "may drop";
  /** Where the drop is, e.g. `policy drop` or `rule handle 19 in filter_FORWARD (reject)`. */
  where: string;
  /** The packet dropped, e.g. `10.244.2.2 → 10.244.1.2, flannel.1 → cni0`. */
  probe: string;
}

/** The parts of `nft -j list …` output the walk reads. */
interface NftChain {
  family: string;
  table: string;
  name: string;
  handle?: number;
  hook?: string;
  prio?: number;
  policy?: string;
  type?: string;
}
interface NftRule {
  family: string;
  table: string;
  chain: string;
  handle?: number;
  expr: Record<string, unknown>[];
}

/** Chains and rules of some tables, indexed. */
export class NftRuleset {
  readonly chains = new Map<string, NftChain>();
  readonly rules = new Map<string, NftRule[]>();

  /** Adds the objects of one `nft -j list …` answer. */
  add(json: string): this {
    const items = (JSON.parse(json) as { nftables?: Record<string, unknown>[] }).nftables ?? [];
    for (const it of items) {
      if (it.chain) {
        const c = it.chain as NftChain;
        this.chains.set(key(c.family, c.table, c.name), c);
      } else if (it.rule) {
        const r = it.rule as NftRule;
        const k = key(r.family, r.table, r.chain);
        const list = this.rules.get(k) ?? [];
        list.push(r);
        this.rules.set(k, list);
      }
    }
    return this;
  }

  /** Base chains on the forward hook, lowest priority first. */
  forwardChains(): NftChain[] {
    return [...this.chains.values()].filter((c) => c.hook === "forward")
      .sort((a, b) => (a.prio ?? 0) - (b.prio ?? 0));
  }
}

function key(family: string, table: string, chain: string): string {
  return `${family} ${table} ${chain}`;
}

/** Truth of a match: yes, no, or unknown. */
type Tri = "T" | "F" | "U";
/** Where a packet can go from a rule or a chain. */
type Outcome = "accept" | "drop" | "return" | "continue";

/** A value of the probe a match compares, or `undefined` when weft cannot know it. */
type Known = { kind: "addr"; ip: IP } | { kind: "str"; s: string } | { kind: "absent" } | undefined;

function leftValue(left: Record<string, unknown>, p: ForwardProbe): Known {
  const payload = left.payload as { protocol?: string; field?: string } | undefined;
  if (payload) {
    const fam = payload.protocol === "ip" ? 4 : payload.protocol === "ip6" ? 6 : undefined;
    if (!fam || (payload.field !== "saddr" && payload.field !== "daddr")) return undefined;
    // In an inet table, `ip saddr …` does not match an IPv6 packet (and the other way round).
    if (fam !== p.saddr.family) return { kind: "absent" };
    return { kind: "addr", ip: payload.field === "saddr" ? p.saddr : p.daddr };
  }
  const meta = (left.meta as { key?: string } | undefined)?.key;
  if (meta === "iifname" || meta === "iif") return { kind: "str", s: p.iif };
  if (meta === "oifname" || meta === "oif") return { kind: "str", s: p.oif };
  if (meta === "nfproto") return { kind: "str", s: p.saddr.family === 4 ? "ipv4" : "ipv6" };
  const ct = (left.ct as { key?: string } | undefined)?.key;
  if (ct === "state") return { kind: "str", s: "new" };
  if (ct === "status") return { kind: "str", s: "" }; // a new, not DNATed connection: no status bits
  if (ct === "direction") return { kind: "str", s: "original" };
  return undefined;
}

function addrIn(ip: IP, right: unknown): Tri {
  if (typeof right === "string") {
    if (right.startsWith("@")) return "U"; // a named set: not read
    const r = tryParseIP(right);
    return r ? (r.family === ip.family && compareIP(r, ip) === 0 ? "T" : "F") : "U";
  }
  if (right && typeof right === "object") {
    const o = right as Record<string, unknown>;
    if (o.prefix) {
      const { addr, len } = o.prefix as { addr: string; len: number };
      const a = tryParseIP(addr);
      if (!a || a.family !== ip.family) return a ? "F" : "U";
      return netContains(networkOf(a, len), ip) ? "T" : "F";
    }
    if (Array.isArray(o.range)) {
      const [lo, hi] = (o.range as string[]).map((s) => tryParseIP(String(s)));
      if (!lo || !hi) return "U";
      if (lo.family !== ip.family) return "F";
      return compareIP(lo, ip) <= 0 && compareIP(ip, hi) <= 0 ? "T" : "F";
    }
    if (Array.isArray(o.set)) return anyOf((o.set as unknown[]).map((e) => addrIn(ip, e)));
  }
  if (Array.isArray(right)) return anyOf(right.map((e) => addrIn(ip, e)));
  return "U";
}

function strIn(s: string, right: unknown): Tri {
  if (typeof right === "string") {
    if (right.startsWith("@")) return "U";
    if (right.endsWith("*") && !right.endsWith("\\*")) return s.startsWith(right.slice(0, -1)) ? "T" : "F";
    return right === s ? "T" : "F";
  }
  if (right && typeof right === "object" && Array.isArray((right as { set?: unknown[] }).set)) {
    return anyOf((right as { set: unknown[] }).set.map((e) => strIn(s, e)));
  }
  if (Array.isArray(right)) return anyOf(right.map((e) => strIn(s, e)));
  return "U";
}

function anyOf(ts: Tri[]): Tri {
  return ts.includes("T") ? "T" : ts.includes("U") ? "U" : "F";
}

function not(t: Tri): Tri {
  return t === "T" ? "F" : t === "F" ? "T" : "U";
}

/** Truth of one `match` expression for the probe. */
export function matchTruth(m: { op?: string; left?: unknown; right?: unknown }, p: ForwardProbe): Tri {
  const v = leftValue((m.left ?? {}) as Record<string, unknown>, p);
  if (!v) return "U";
  if (v.kind === "absent") return "F";
  const t = v.kind === "addr" ? addrIn(v.ip, m.right) : strIn(v.s, m.right);
  const op = m.op ?? "==";
  if (op === "==" || op === "in") return t;
  if (op === "!=") return not(t);
  return "U";
}

const NONTERMINAL = new Set([
  "counter",
  "log",
  "mangle",
  "notrack",
  "set",
  "map",
  "ct helper",
  "quota",
  "dup",
  "fwd",
  "flow",
  "synproxy",
  "meter",
]);

/** The walk over one probe. */
class Walk {
  #depth = 0;
  /** The first rule (or policy) seen dropping, for the report. */
  dropAt = "";

  constructor(private readonly rs: NftRuleset, private readonly p: ForwardProbe) {}

  /** Outcomes of a base chain: accept and/or drop. */
  base(c: NftChain): Set<"accept" | "drop"> {
    const out = this.chain(c.family, c.table, c.name);
    const policy = c.policy === "drop" ? "drop" : "accept";
    const res = new Set<"accept" | "drop">();
    for (const o of out) res.add(o === "return" ? policy : o);
    if (policy === "drop" && out.has("return") && !this.dropAt) this.dropAt = "policy drop";
    return res;
  }

  chain(family: string, table: string, name: string): Set<Exclude<Outcome, "continue">> {
    const res = new Set<Exclude<Outcome, "continue">>();
    if (this.#depth > 16) return new Set(["accept", "drop", "return"]); // a loop or a very deep chain
    this.#depth++;
    try {
      for (const r of this.rs.rules.get(key(family, table, name)) ?? []) {
        const outs = this.#rule(r);
        for (const o of outs) if (o !== "continue") res.add(o);
        if (!outs.has("continue")) return res;
      }
      res.add("return");
      return res;
    } finally {
      this.#depth--;
    }
  }

  #rule(r: NftRule): Set<Outcome> {
    let truth: Tri = "T";
    for (const e of r.expr) {
      const [k, v] = Object.entries(e)[0] ?? [];
      if (!k) continue;
      if (k === "match") {
        const t = matchTruth(v as Record<string, unknown>, this.p);
        if (t === "F") return new Set(["continue"]);
        if (t === "U") truth = "U";
        continue;
      }
      if (k === "limit" || (k === "xt" && (v as { type?: string }).type === "match")) {
        // A rate limit may or may not let the packet match; iptables' comment match always matches.
        if ((v as { name?: string }).name !== "comment") truth = "U";
        continue;
      }
      if (NONTERMINAL.has(k)) continue;
      const outs = this.#verdict(k, v, r);
      if (!outs) continue;
      if (truth === "U") outs.add("continue");
      return outs;
    }
    return new Set(["continue"]);
  }

  #verdict(k: string, v: unknown, r: NftRule): Set<Outcome> | undefined {
    const here = `rule handle ${r.handle ?? "?"} in ${r.chain}`;
    const drop = (what: string) => {
      if (!this.dropAt) this.dropAt = `${here} (${what})`;
      return new Set<Outcome>(["drop"]);
    };
    switch (k) {
      case "accept":
        return new Set(["accept"]);
      case "drop":
        return drop("drop");
      case "reject":
        return drop("reject");
      case "return":
        return new Set(["return"]);
      case "continue":
        return new Set(["continue"]);
      case "queue":
        return new Set(["accept", "drop"]);
      case "jump":
      case "goto": {
        const target = (v as { target: string }).target;
        const sub = this.chain(r.family, r.table, target);
        const res = new Set<Outcome>();
        for (const o of sub) res.add(o === "return" ? (k === "jump" ? "continue" : "return") : o);
        return res;
      }
      case "vmap":
        return this.#vmap(v as { key: Record<string, unknown>; data: unknown }, r);
      case "xt": {
        const name = (v as { name?: string }).name;
        if (name === "REJECT" || name === "DROP") return drop(name);
        if (name === "ACCEPT") return new Set(["accept"]);
        return undefined; // LOG, MARK, …: the walk goes on
      }
      default:
        return undefined;
    }
  }

  #vmap(v: { key: Record<string, unknown>; data: unknown }, r: NftRule): Set<Outcome> {
    const elems = ((v.data as { set?: unknown[] })?.set ?? []) as [unknown, Record<string, unknown>][];
    const res = new Set<Outcome>();
    let matched = false;
    for (const [k, verdict] of elems) {
      const t = matchTruth({ op: "==", left: v.key, right: k }, this.p);
      if (t === "F") continue;
      const [vk, vv] = Object.entries(verdict ?? {})[0] ?? [];
      for (const o of (vk && this.#verdict(vk, vv, r)) || new Set<Outcome>(["continue"])) res.add(o);
      if (t === "T") {
        matched = true;
        break;
      }
    }
    if (!matched) res.add("continue");
    return res;
  }
}

function describe(p: ForwardProbe): string {
  return `${formatIP(p.saddr)} → ${formatIP(p.daddr)}, ${p.iif} → ${p.oif}`;
}

/**
 * The base chains on the forward hook that drop any of `probes` (pure: over a ruleset already read).
 * `skip` leaves tables out (weft's own: its policy table drops by design).
 */
export function findForwardBlockers(
  rs: NftRuleset,
  probes: ForwardProbe[],
  skip: (family: string, table: string) => boolean = () => false,
): ForwardBlocker[] {
  const out: ForwardBlocker[] = [];
  for (const c of rs.forwardChains()) {
    if (skip(c.family, c.table) || c.type === "nat" || c.type === "route") continue;
    let worst: ForwardBlocker | undefined;
    for (const p of probes) {
      const fam = p.saddr.family === 4 ? "ip" : "ip6";
      if (c.family !== fam && c.family !== "inet") continue;
      const walk = new Walk(rs, p);
      const res = walk.base(c);
      if (!res.has("drop")) continue;
      const verdict = res.has("accept") ? "may drop" : "drops";
      if (worst && (worst.verdict === "drops" || verdict === "may drop")) continue;
      worst = {
        family: c.family,
        table: c.table,
        chain: c.name,
        verdict,
        where: walk.dropAt,
        probe: describe(p),
      };
    }
    if (worst) out.push(worst);
  }
  return out;
}

/** Tables weft owns (its masquerade/forward tables, the CNI's, the policy table): never reported. */
export const WEFT_TABLES = new Set(["weft", "weft-cni", "weft-policy"]);

/** Reads the forward hook's base chains (and their tables) from the kernel; see {@linkcode findForwardBlockers}. */
export function scanForwardBlockers(probes: ForwardProbe[]): ForwardBlocker[] {
  const rs = new NftRuleset().add(nftRun("list chains", { json: true }));
  const tables = new Set(
    rs.forwardChains().filter((c) => !WEFT_TABLES.has(c.table)).map((c) => `${c.family} ${c.table}`),
  );
  for (const t of tables) rs.add(nftRun(`list table ${t}`, { json: true }));
  return findForwardBlockers(rs, probes, (_f, t) => WEFT_TABLES.has(t));
}

/**
 * Probes for one cluster network: from a pod of this node (an address of `podSubnet`) to a pod elsewhere
 * in `network` and back, between `cni0` and each of `overlays` (the devices peers' traffic uses).
 */
export function podProbes(network: IPNet, podSubnet: IPNet, overlays: string[]): ForwardProbe[] {
  const localPod = addIP(podSubnet.ip, 2);
  // A remote pod: the second address of the first subnet-sized block of the network that is not ours.
  const block = 1n << BigInt(bitsOf(network.ip.family) - podSubnet.prefix);
  const remote = addIP(network.ip, (network.ip.value === podSubnet.ip.value ? block : 0n) + 2n);
  return overlays.flatMap((o) => [
    { saddr: localPod, daddr: remote, iif: "cni0", oif: o },
    { saddr: remote, daddr: localPod, iif: o, oif: "cni0" },
  ]);
}
