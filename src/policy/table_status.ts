/**
 * What the kernel enforces, read back from weft's policy table: for each pod chain, the pod, its
 * addresses, the policies isolating it (the chain comment), the allow rules in force with their
 * counters, and the drops. `weft policy` prints it; it needs no agent and shows the kernel's truth.
 *
 * @module
 */
import { DEFAULT_DENY_COMMENT, DROP_LOG_COMMENT, parseChainComment } from "./nft_render.ts";

/** One allow rule in force. */
export interface RuleStatus {
  /** The policy rule it comes from, e.g. `x/web ingress[0] ip tcp/80`. */
  rule: string;
  /** The nft match, e.g. `ip saddr @peers-0 tcp dport 80` (empty: everything). */
  match: string;
  /** Packets accepted (first packets of connections). */
  packets: number;
  /** Bytes of those packets. */
  bytes: number;
}

/** One direction of one pod. */
export interface DirectionStatus {
  /** The nft chain. */
  chain: string;
  /** The policies isolating the pod this way. */
  policies: string[];
  /** Policies left out of the chain comment for length. */
  morePolicies: number;
  /** Allow rules. */
  rules: RuleStatus[];
  /** What the final drop counted. */
  dropped: { packets: number; bytes: number };
  /** Drops that were logged (with `--policy-log-drops`). */
  logged?: number;
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
  /** The named sets' elements (what `@peers-0` holds). */
  sets: Record<string, string[]>;
}

function elementsOf(text: string): string[] {
  return text.split(",").map((e) => e.trim()).filter(Boolean);
}

/** Parses `nft list table inet weft-policy` output (undefined: no table). */
export function parseTableStatus(listing: string | undefined): TableStatus {
  if (listing === undefined) return { present: false, pods: [], sets: {} };
  const sets: Record<string, string[]> = {};
  const pods = new Map<string, PodStatus>();
  let set: string | undefined, collecting: string | undefined;
  let dir: DirectionStatus | undefined;
  for (const raw of listing.split("\n")) {
    const line = raw.trim();
    if (collecting !== undefined) {
      const end = line.indexOf("}");
      collecting += " " + (end >= 0 ? line.slice(0, end) : line);
      if (end >= 0) [sets[set!], collecting] = [elementsOf(collecting), undefined];
      continue;
    }
    let m: RegExpMatchArray | null;
    if ((m = line.match(/^set (\S+) \{/))) [set, dir] = [m[1], undefined];
    else if ((m = line.match(/^chain (\S+) \{/))) [set, dir] = [undefined, podDirection(m[1]!)];
    else if (line.startsWith("map ")) [set, dir] = [undefined, undefined];
    else if (set && (m = line.match(/^elements = \{(.*)$/))) {
      const body = m[1]!;
      const end = body.indexOf("}");
      if (end >= 0) sets[set] = elementsOf(body.slice(0, end));
      else collecting = body;
    } else if (dir) readChainLine(line, dir, pods);
  }
  return { present: true, pods: [...pods.values()].sort((a, b) => a.pod < b.pod ? -1 : 1), sets };
}

function podDirection(chain: string): DirectionStatus | undefined {
  if (!chain.startsWith("in/") && !chain.startsWith("out/")) return undefined;
  return { chain, policies: [], morePolicies: 0, rules: [], dropped: { packets: 0, bytes: 0 } };
}

function readChainLine(line: string, dir: DirectionStatus, pods: Map<string, PodStatus>): void {
  const c = line.match(/^comment "(.*)"$/);
  if (c) {
    const info = parseChainComment(c[1]!);
    if (!info) return;
    dir.policies = info.policies;
    dir.morePolicies = info.more;
    let pod = pods.get(info.pod);
    if (!pod) pods.set(info.pod, pod = { pod: info.pod, ips: info.ips });
    pod[dir.chain.startsWith("in/") ? "ingress" : "egress"] = dir;
    return;
  }
  const r = line.match(/^(.*?)\s*counter packets (\d+) bytes (\d+) (.*?)\s*comment "(.*)"$/);
  if (!r) return;
  const [, match, packets, bytes, rest, comment] = r as unknown as string[];
  if (comment === DEFAULT_DENY_COMMENT) dir.dropped = { packets: Number(packets), bytes: Number(bytes) };
  else if (comment === DROP_LOG_COMMENT) dir.logged = Number(packets);
  else if (rest!.startsWith("accept")) {
    dir.rules.push({ rule: comment!, match: match!, packets: Number(packets), bytes: Number(bytes) });
  }
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
  if (s.pods.length === 0) return "no pod on this node is selected by a NetworkPolicy\n";
  const out: string[] = [];
  for (const p of s.pods) {
    out.push(`${p.pod}  ${p.ips.join(" ")}`);
    for (const [name, d] of [["ingress", p.ingress], ["egress", p.egress]] as const) {
      if (!d) {
        out.push(`  ${name}: not isolated`);
        continue;
      }
      const more = d.morePolicies ? ` (+${d.morePolicies} more)` : "";
      out.push(`  ${name}: isolated by ${d.policies.join(", ")}${more}`);
      if (d.rules.length === 0) out.push("    (no traffic allowed)");
      for (const r of d.rules) {
        out.push(`    ${r.rule}: ${r.packets} pkts, ${r.bytes} bytes`);
        if (r.match) out.push(`      ${expandSets(r.match, s.sets)}`);
      }
      const logged = d.logged !== undefined ? `, ${d.logged} logged` : "";
      out.push(`    dropped: ${d.dropped.packets} pkts, ${d.dropped.bytes} bytes${logged}`);
    }
  }
  return out.join("\n") + "\n";
}
