/**
 * What the kernel enforces, read back from weft's policy table: each isolated pod of this node (from the
 * `known` sets and the verdict maps) with the policies isolating it (its combination chain's comment)
 * and its drops (the per-pod counters of the `drops-*` sets); each policy's allow rules with their
 * counters (one chain per policy, shared by the pods it selects); and what is held closed. `weft policy`
 * prints it; it needs no agent and shows the kernel's truth.
 *
 * @module
 */
import { blockElements, listingBlocks } from "./nft_table.ts";
import { HOLD_COMMENTS, parseComboComment } from "./nft_render.ts";

/** Packets and bytes. */
export interface Counted {
  /** Packets. */
  packets: number;
  /** Bytes. */
  bytes: number;
}

/** One allow rule in force. */
export interface RuleStatus extends Counted {
  /** The policy rule it comes from, e.g. `x/web ingress[0] ip tcp/80`. */
  rule: string;
  /** The nft match, e.g. `ip saddr @p-1a2b3c4d tcp dport 80` (empty: everything). */
  match: string;
}

/** One policy's rules for one direction. */
export interface PolicyStatus {
  /** `namespace/name`. */
  policy: string;
  /** `ingress` or `egress`. */
  direction: "ingress" | "egress";
  /** Its chain. */
  chain: string;
  /** Allow rules, with what they let in (first packets of connections), for every pod it selects. */
  rules: RuleStatus[];
}

/** One direction of one pod. */
export interface DirectionStatus {
  /** The chain of its combination of policies. */
  chain: string;
  /** The policies isolating the pod this way. */
  policies: string[];
  /** Policies left out of the chain comment for length. */
  morePolicies: number;
  /** What was dropped for this pod. */
  dropped: Counted;
}

/** One pod some policy isolates. */
export interface PodStatus {
  /** `namespace/name`. */
  pod: string;
  /** Its addresses. */
  ips: string[];
  /** Present when isolated for ingress. */
  ingress?: DirectionStatus;
  /** Present when isolated for egress. */
  egress?: DirectionStatus;
}

/** The whole table. */
export interface TableStatus {
  /** Whether the table exists (network policy is on). */
  present: boolean;
  /** Isolated pods, sorted. */
  pods: PodStatus[];
  /** Pods of this node known to the table and isolated by nothing, sorted. */
  open: string[];
  /** Policy chains, sorted. */
  policies: PolicyStatus[];
  /** Addresses held closed until their pod's rules are in (registered by CNI ADD). */
  pending: string[];
  /** Drops of the holds: registered pods not enforced yet, and addresses of unknown pods. */
  held: { pending: Counted; unknown: Counted };
  /** The named sets' elements (what `@p-1a2b3c4d` holds). */
  sets: Record<string, string[]>;
}

const ZERO = (): Counted => ({ packets: 0, bytes: 0 });

function counted(text: string): Counted | undefined {
  const m = text.match(/counter packets (\d+) bytes (\d+)/);
  return m ? { packets: Number(m[1]), bytes: Number(m[2]) } : undefined;
}

function add(a: Counted, b: Counted | undefined): void {
  if (!b) return;
  a.packets += b.packets;
  a.bytes += b.bytes;
}

function policyRules(chain: string, lines: string[]): PolicyStatus | undefined {
  const c = lines.find((l) => l.startsWith("comment "))?.match(/^comment "policy (\S+) (ingress|egress)"$/);
  if (!c) return undefined;
  const rules: RuleStatus[] = [];
  for (const l of lines) {
    const r = l.match(/^(.*?)\s*counter packets (\d+) bytes (\d+) accept comment "(.*)"$/);
    if (r) rules.push({ match: r[1]!, packets: Number(r[2]), bytes: Number(r[3]), rule: r[4]! });
  }
  return { policy: c[1]!, direction: c[2] as "ingress" | "egress", chain, rules };
}

/** Parses `nft list table inet weft-policy` output (undefined: no table). */
export function parseTableStatus(listing: string | undefined): TableStatus {
  const empty = { pending: [], held: { pending: ZERO(), unknown: ZERO() }, open: [], policies: [] };
  if (listing === undefined) return { present: false, pods: [], sets: {}, ...empty };
  const blocks = listingBlocks(listing);
  const sets: Record<string, string[]> = {};
  const names = new Map<string, string>(); // ip → pod
  const drops = new Map<string, Counted>(); // "in 10.0.0.1" → counts
  const goto = new Map<string, string>(); // "ingress 10.0.0.1" → chain
  const combos = new Map<string, { policies: string[]; more: number }>();
  const status: TableStatus = { present: true, pods: [], sets, ...empty };
  for (const [key, lines] of blocks) {
    const [kind, name] = key.split(" ") as [string, string];
    const els = blockElements(lines);
    if (kind === "set") sets[name] = els;
    if (/^known[46]$/.test(name)) {
      for (const e of els) {
        const m = e.match(/^(\S+) comment "(.*)"$/);
        if (m) names.set(m[1]!, m[2]!);
      }
    } else if (/^pending[46]$/.test(name)) status.pending.push(...els);
    else if (/^drops-(in|out)[46]$/.test(name)) {
      const dir = name.slice(6, name.length - 1);
      for (const e of els) drops.set(`${dir} ${e.split(" ")[0]}`, counted(e) ?? ZERO());
    } else if (kind === "map" && /^(ingress|egress)[46]$/.test(name)) {
      for (const e of els) {
        const m = e.match(/^(\S+) : goto (\S+)$/);
        if (m) goto.set(`${name.slice(0, -1)} ${m[1]}`, m[2]!);
      }
    } else if (kind === "chain" && /^(in|out)\//.test(name)) {
      const c = lines.find((l) => l.startsWith("comment "))?.match(/^comment "(.*)"$/);
      const parsed = c ? parseComboComment(c[1]!) : undefined;
      if (parsed) combos.set(name, parsed);
    } else if (kind === "chain" && name.startsWith("pol-")) {
      const p = policyRules(name, lines);
      if (p) status.policies.push(p);
    } else if (kind === "chain" && (name === "ingress" || name === "egress")) {
      for (const l of lines) {
        const c = l.match(/comment "(\S+(?: \S+)*) ip6?"$/);
        if (c?.[1] === HOLD_COMMENTS.pending) add(status.held.pending, counted(l));
        else if (c?.[1] === HOLD_COMMENTS.unknown) add(status.held.unknown, counted(l));
      }
    }
  }
  const pods = new Map<string, PodStatus>();
  for (const [k, chain] of goto) {
    const [dir, ip] = k.split(" ") as ["ingress" | "egress", string];
    const pod = names.get(ip) ?? ip;
    let p = pods.get(pod);
    if (!p) pods.set(pod, p = { pod, ips: [] });
    if (!p.ips.includes(ip)) p.ips.push(ip);
    const combo = combos.get(chain) ?? { policies: [], more: 0 };
    const d = p[dir] ??= { chain, policies: combo.policies, morePolicies: combo.more, dropped: ZERO() };
    add(d.dropped, drops.get(`${dir === "ingress" ? "in" : "out"} ${ip}`));
  }
  status.pods = [...pods.values()].sort((a, b) => (a.pod < b.pod ? -1 : 1));
  status.open = [
    ...new Set(
      [...names].filter(([ip]) => !goto.has(`ingress ${ip}`) && !goto.has(`egress ${ip}`)).map(([, p]) => p),
    ),
  ].sort();
  status.policies.sort((a, b) => (`${a.policy} ${a.direction}` < `${b.policy} ${b.direction}` ? -1 : 1));
  return status;
}

/** `match` with `@set` references shown as their elements (the first `max` of each). */
export function expandSets(match: string, sets: Record<string, string[]>, max = 6): string {
  return match.replace(/@([\w-]+)/g, (whole, name: string) => {
    const els = sets[name];
    if (!els) return whole;
    const shown = els.slice(0, max).join(", ");
    return `{ ${shown}${els.length > max ? `, … (${els.length} in all)` : ""} }`;
  });
}

/** The text `weft policy` prints. */
export function formatTableStatus(s: TableStatus): string {
  if (!s.present) return "network policy is off on this node (no table inet weft-policy)\n";
  const out: string[] = [];
  if (s.pods.length === 0) out.push("no pod on this node is selected by a NetworkPolicy");
  for (const p of s.pods) {
    out.push(`${p.pod}  ${p.ips.join(" ")}`);
    for (const [name, d] of [["ingress", p.ingress], ["egress", p.egress]] as const) {
      if (!d) {
        out.push(`  ${name}: not isolated`);
        continue;
      }
      const more = d.morePolicies ? ` (+${d.morePolicies} more)` : "";
      out.push(
        `  ${name}: isolated by ${
          d.policies.join(", ")
        }${more}; dropped ${d.dropped.packets} pkts, ${d.dropped.bytes} bytes`,
      );
    }
  }
  for (const pol of s.policies) {
    out.push(`policy ${pol.policy} ${pol.direction} (every pod it selects here)`);
    if (pol.rules.length === 0) out.push("  (no traffic allowed)");
    for (const r of pol.rules) {
      out.push(`  ${r.rule}: ${r.packets} pkts, ${r.bytes} bytes`);
      if (r.match) out.push(`    ${expandSets(r.match, s.sets)}`);
    }
  }
  if (s.open.length) out.push(`not isolated: ${s.open.join(", ")}`);
  const held = s.pending.length ? s.pending.join(", ") : "none";
  out.push(
    `held closed: registered, rules not in yet: ${held} (${s.held.pending.packets} pkts dropped); ` +
      `unknown pods: ${s.held.unknown.packets} pkts dropped`,
  );
  return out.join("\n") + "\n";
}
