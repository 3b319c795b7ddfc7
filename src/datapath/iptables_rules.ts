/**
 * flanneld's iptables rules (pkg/trafficmngr/iptables at v0.28.9), byte for byte as `iptables-save`
 * prints them, and the plan that brings a family's tables to them: pure functions, so the diff is
 * unit-tested without a kernel.
 *
 * What weft creates (and what `weft cleanup` may remove), in iptables and ip6tables, in whichever
 * backend (iptables-nft, iptables-legacy) it writes to:
 *
 * - table `nat`: chain `FLANNEL-POSTRTG` (masquerade, with `--ip-masq`), jumped from `POSTROUTING` by
 *   `-m comment --comment "flanneld masq" -j FLANNEL-POSTRTG` (appended, as flanneld does);
 * - table `filter`: chain `FLANNEL-FWD` (accept from/to the cluster network, unless
 *   `--iptables-forward-rules=false`), jumped from `FORWARD` by
 *   `-m comment --comment "flanneld forward" -j FLANNEL-FWD` — inserted first (as kube-proxy's
 *   KUBE-FORWARD), where flanneld appends it behind any REJECT already there (flannel #1033, #2116).
 *
 * Rules a previous flanneld left are the same bytes: they are adopted, never duplicated. A resync writes
 * only when a chain differs from what iptables-save shows, and then the whole chain in one atomic
 * `iptables-restore --noflush` call (steady state: zero writes, flannel #1906, #2145).
 *
 * @module
 */
import { formatNet, type IPNet } from "../net/ip.ts";
import type { SavedTables } from "./iptables.ts";

/** flanneld's masquerade chain (table nat). */
export const POSTRTG_CHAIN = "FLANNEL-POSTRTG";
/** flanneld's forward chain (table filter). */
export const FWD_CHAIN = "FLANNEL-FWD";
/** kube-proxy's masquerade mark, which flanneld leaves to kube-proxy. */
export const KUBE_PROXY_MARK = "0x4000/0x4000";

/** What the rules are about, for one family. */
export interface IptablesNets {
  /** The cluster network (`Network` or `IPv6Network`). */
  network: IPNet;
  /** This node's subnet of it (the lease). */
  podSubnet: IPNet;
}

/**
 * What a chain should be: installed as flanneld's, removed (with its jumps) when present, or left as it is
 * (a backend weft does not own: what another agent put there is not weft's to remove).
 */
export type Presence = "present" | "absent" | "untouched";

/** Which of flanneld's rule sets a family's tables should hold. */
export interface IptablesWant {
  /** FLANNEL-POSTRTG (`--ip-masq`). */
  masq: Presence;
  /** `--random-fully` on the MASQUERADE rules (flanneld's default; off with --ip-masq-fully-random-disable). */
  fullyRandom: boolean;
  /** FLANNEL-FWD (`--iptables-forward-rules`). */
  forward: Presence;
}

const MASQ_COMMENT = `-m comment --comment "flanneld masq"`;
const FWD_COMMENT = `-m comment --comment "flanneld forward"`;

/** The jump into FLANNEL-POSTRTG, as flanneld writes it. */
export const POSTRTG_JUMP = `${MASQ_COMMENT} -j ${POSTRTG_CHAIN}`;
/** The jump into FLANNEL-FWD, as flanneld writes it. */
export const FWD_JUMP = `${FWD_COMMENT} -j ${FWD_CHAIN}`;

/** FLANNEL-POSTRTG's rules (flanneld's masqRules / masqIP6Rules), in iptables-save's form. */
export function postrtgRules(n: IptablesNets, fullyRandom: boolean): string[] {
  const cluster = formatNet(n.network), pods = formatNet(n.podSubnet);
  const mcast = n.network.ip.family === 4 ? "224.0.0.0/4" : "ff00::/8";
  const masq = fullyRandom ? "-j MASQUERADE --random-fully" : "-j MASQUERADE";
  return [
    `-m mark --mark ${KUBE_PROXY_MARK} ${MASQ_COMMENT} -j RETURN`,
    `-s ${pods} -d ${cluster} ${MASQ_COMMENT} -j RETURN`,
    `-s ${cluster} -d ${pods} ${MASQ_COMMENT} -j RETURN`,
    `! -s ${cluster} -d ${pods} ${MASQ_COMMENT} -j RETURN`,
    `-s ${cluster} ! -d ${mcast} ${MASQ_COMMENT} ${masq}`,
    `! -s ${cluster} -d ${cluster} ${MASQ_COMMENT} ${masq}`,
  ];
}

/** FLANNEL-FWD's rules (flanneld's forwardRules). */
export function fwdRules(network: IPNet): string[] {
  const cluster = formatNet(network);
  return [`-s ${cluster} ${FWD_COMMENT} -j ACCEPT`, `-d ${cluster} ${FWD_COMMENT} -j ACCEPT`];
}

/** Whether a rule (iptables-save text after the chain) jumps to `chain`. */
function jumpsTo(rule: string, chain: string): boolean {
  return new RegExp(`(^| )-[jg] ${chain}( |$)`).test(rule);
}

/** Whether a rule ends the packet's walk with a drop (`-j DROP`, `-j REJECT …`). */
export function isDropRule(rule: string): boolean {
  return /(^| )-j (DROP|REJECT)( |$)/.test(rule);
}

/**
 * Whether the filter table's FORWARD chain would drop forwarded pod traffic if FLANNEL-FWD's jump were not
 * there: a DROP policy, or any DROP/REJECT rule in it (weft's own jump left out of the judgement, so the
 * answer does not change once the jump is in).
 */
export function forwardMayDrop(tables: SavedTables): boolean {
  const fwd = tables.get("filter")?.get("FORWARD");
  if (!fwd) return false;
  return fwd.policy === "DROP" || fwd.rules.some(isDropRule);
}

/** One table's part of a plan. */
interface TablePlan {
  table: string;
  lines: string[];
  /** What changed, for the log. */
  why: string[];
}

function sameRules(a: string[] | undefined, b: string[]): boolean {
  return !!a && a.length === b.length && a.every((r, i) => r === b[i]);
}

/**
 * Plans one of flanneld's chains in one table: the chain's rules, and exactly one jump from `base`, at
 * the position required (`first`: before any DROP/REJECT rule of `base`; else anywhere, appended when
 * missing). `rules` "absent": removed with its jumps when present; "untouched": nothing planned.
 */
function planChain(
  tables: SavedTables,
  table: string,
  base: string,
  chain: string,
  jump: string,
  rules: string[] | "absent" | "untouched",
  first: boolean,
): TablePlan {
  const plan: TablePlan = { table, lines: [], why: [] };
  if (rules === "untouched") return plan;
  const t = tables.get(table);
  const have = t?.get(chain);
  const baseRules = t?.get(base)?.rules ?? [];
  const jumps = baseRules.filter((r) => jumpsTo(r, chain));
  if (rules === "absent") {
    if (!have && !jumps.length) return plan;
    for (const j of jumps) plan.lines.push(`-D ${base} ${j}`);
    if (have) plan.lines.push(`-F ${chain}`, `-X ${chain}`);
    plan.why.push(`${chain} not wanted: removed`);
    return plan;
  }
  if (!sameRules(have?.rules, rules)) {
    plan.lines.push(`:${chain} - [0:0]`, ...rules.map((r) => `-A ${chain} ${r}`));
    plan.why.push(have ? `${chain} differed` : `${chain} missing`);
  }
  const at = baseRules.findIndex((r) => jumpsTo(r, chain));
  const firstDrop = baseRules.findIndex(isDropRule);
  const placed = !first || firstDrop < 0 || at < firstDrop;
  if (jumps.length === 1 && jumps[0] === jump && placed) return plan;
  for (const j of jumps) plan.lines.push(`-D ${base} ${j}`);
  plan.lines.push(first ? `-I ${base} 1 ${jump}` : `-A ${base} ${jump}`);
  plan.why.push(
    !jumps.length
      ? `jump from ${base} missing`
      : jumps.length > 1
      ? `${jumps.length} jumps from ${base}`
      : !placed
      ? `jump from ${base} was behind a DROP/REJECT rule`
      : `jump from ${base} altered`,
  );
  return plan;
}

/** A restore payload and what it repairs; empty `payload` when the tables are as wanted. */
export interface IptablesPlan {
  /** `*table … COMMIT` blocks for `iptables-restore --noflush`, or "". */
  payload: string;
  /** What differed (for the log). */
  why: string[];
}

/**
 * What to write so that `tables` (one family, as iptables-save shows it) hold flanneld's rules for `nets`
 * as `want` says. Nothing when they already do.
 */
export function planIptables(tables: SavedTables, nets: IptablesNets, want: IptablesWant): IptablesPlan {
  const plans = [
    planChain(
      tables,
      "nat",
      "POSTROUTING",
      POSTRTG_CHAIN,
      POSTRTG_JUMP,
      want.masq === "present" ? postrtgRules(nets, want.fullyRandom) : want.masq,
      false,
    ),
    planChain(
      tables,
      "filter",
      "FORWARD",
      FWD_CHAIN,
      FWD_JUMP,
      want.forward === "present" ? fwdRules(nets.network) : want.forward,
      true,
    ),
  ];
  const payload = plans.filter((p) => p.lines.length)
    .map((p) => [`*${p.table}`, ...p.lines, "COMMIT", ""].join("\n")).join("");
  return { payload, why: plans.flatMap((p) => p.why) };
}
