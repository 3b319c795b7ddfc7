/**
 * The lease filter: sits between the lease watch and the reconciler and lets through only the leases
 * that may be programmed. It keeps every lease it was told about, judges each with the pure rules of
 * validate.ts, settles conflicts between leases, and tells the reconciler what to program (`apply`).
 *
 * Conflicts — two keys claiming one subnet, a subnet holding another lease's PublicIP, one VtepMAC
 * published from two PublicIPs — go to the **older** lease: the smaller `createOrder` (etcd: the key's
 * create revision, which every member reports alike; a re-put or renewal keeps it, only delete and
 * create renews it), then the smaller key (two keys created in one transaction share a revision). Every
 * node sees the same leases with the same revisions, so every node picks the same winner. The conflict
 * rules run before the node-specific ones (own subnet, connected networks), so a lease refused on one
 * node for a local reason still beats its younger rivals there as everywhere.
 *
 * When a change can alter a verdict only the leases linked to it through shared claims (its conflict
 * component, usually the lease alone) are judged again, so one event costs the same with 10 or 10 000
 * leases. When the winner of a conflict goes away the loser is judged again and programmed.
 *
 * The node's own lease takes part in conflicts (so the outcome matches other nodes') but is never passed
 * to `apply`.
 *
 * A rejected lease is reported once per (key, value, rule) — logged with the key and the rule, counted in
 * {@linkcode LeaseFilter.rejectedTotal} — and listed by {@linkcode LeaseFilter.rejected} until it is
 * deleted or accepted.
 *
 * @module
 */
import { log } from "../log.ts";
import { type Lease, leaseAttrsJSON } from "./lease.ts";
import {
  assessLease,
  checkLeaseOnNode,
  claimConflict,
  type LeaseClaim,
  LeaseRejection,
  type LeaseRule,
  type NetworkRules,
  type NodeFacts,
  type ParsedLeaseEntry,
  quoteForLog,
} from "./validate.ts";
import { formatNet, type IPNet } from "../net/ip.ts";

const logger = log("subnet", "filter");

/** A lease that is not programmed, and why. */
export interface RejectedLease {
  /** Its key. */
  key: string;
  /** The rule it broke. */
  rule: LeaseRule;
  /** What was seen. */
  detail: string;
  /** Since when it has been rejected for this rule. */
  since: Date;
}

/** What the filter reports (logged by default). */
export type FilterReport =
  | { type: "rejected"; rejection: LeaseRejection }
  | { type: "accepted"; key: string; previously: LeaseRule }
  | { type: "own_conflict"; rejection: LeaseRejection };

/** Options of {@linkcode LeaseFilter}. */
export interface LeaseFilterOptions {
  /** The network's rules (from the network config). */
  rules: NetworkRules;
  /** This node's facts; none yet means the node rules see an empty node. */
  node?: NodeFacts;
  /** Tells the consumer (the reconciler) a lease to program, or `undefined` to remove one. */
  apply(key: string, lease: Lease | undefined): void;
  /** Where reports go; default: the `weft.subnet.filter` logger. */
  report?(r: FilterReport): void;
}

/** One change handed to {@linkcode LeaseFilter.update}: a new or changed entry, or a removal. */
export interface FilterChange {
  /** The key. */
  key: string;
  /** The parsed entry; undefined when the key was deleted. */
  entry?: ParsedLeaseEntry;
}

/**
 * A lease as the filter keeps it. Its claims are not kept: they follow from the lease and the rules
 * (`assessLease`), and kept they were ~350 bytes per lease (an array, its objects and their strings:
 * 1.7 MB at 5000 Nodes) beside the claim ids `#claims` holds anyway. One update works them out once per
 * lease ({@linkcode Claims}).
 */
interface Known {
  entry: ParsedLeaseEntry;
  /** Parse or cluster-rule rejection, independent of other leases. */
  alone?: LeaseRejection;
}

/** The claims of the leases one update looks at, worked out once per update. */
type Claims = Map<string, LeaseClaim[]>;

function fingerprint(e: ParsedLeaseEntry): string {
  return e.ok
    ? `${e.lease.createOrder ?? ""} ${leaseAttrsJSON(e.lease.attrs)}`
    : `! ${e.rejection.rule} ${e.rejection.detail}`;
}

function order(a: { key: string; order: number }, b: { key: string; order: number }): number {
  return a.order - b.order || (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);
}

function defaultReport(r: FilterReport): void {
  switch (r.type) {
    case "rejected":
      logger.warn("lease {key} rejected, nothing programmed for it: {rule}: {detail}", {
        key: quoteForLog(r.rejection.key),
        rule: r.rejection.rule,
        detail: r.rejection.detail,
      });
      return;
    case "accepted":
      logger.info("lease {key} accepted now (was rejected: {rule})", { key: r.key, rule: r.previously });
      return;
    case "own_conflict":
      logger.error("this node's own lease loses a conflict; peers will not program it: {detail}", {
        detail: r.rejection.detail,
      });
  }
}

/** The stateful filter between the lease watch and the reconciler (see the module comment). */
export class LeaseFilter {
  readonly #rules: NetworkRules;
  #node: NodeFacts;
  #nodeId: string;
  readonly #apply: (key: string, lease: Lease | undefined) => void;
  readonly #report: (r: FilterReport) => void;
  readonly #known = new Map<string, Known>();
  /**
   * claim id → the key claiming it, or the keys when several do (valid leases only). Almost every claim
   * has one claimant: a plain string then, not a Set (5000 leases hold ~10 000 claims).
   */
  readonly #claims = new Map<string, string | Set<string>>();
  /** Rejections by the rules that are the same on every node (alone + conflicts); absent: it passes. */
  readonly #cluster = new Map<string, LeaseRejection>();
  /** Current rejections (cluster or node rules) with when they started. */
  readonly #rejected = new Map<string, { rejection: LeaseRejection; since: Date; fingerprint: string }>();
  /** What `apply` was last told per key. */
  readonly #applied = new Map<string, Lease>();
  #ownKey: string | undefined;
  #ownSubnets: IPNet[] = [];
  #ownConflict = "";
  /** Rejections reported, per rule (`weft_leases_rejected_total{reason}`). */
  readonly rejectedTotal = new Map<LeaseRule, number>();

  /** Creates an empty filter. */
  constructor(opts: LeaseFilterOptions) {
    this.#rules = opts.rules;
    this.#node = opts.node ?? { ownSubnets: [], addresses: [], vtepMacs: [] };
    this.#nodeId = nodeId(this.#node);
    this.#apply = opts.apply;
    this.#report = opts.report ?? defaultReport;
  }

  /** Leases known (own included, rejected included). */
  get knownCount(): number {
    return this.#known.size;
  }

  /** Leases passed to the reconciler. */
  get acceptedCount(): number {
    return this.#applied.size;
  }

  /** The leases rejected now, by key. */
  rejected(): RejectedLease[] {
    return [...this.#rejected.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map((
      [key, r],
    ) => ({ key, rule: r.rejection.rule, detail: r.rejection.detail, since: r.since }));
  }

  /** Why `key` is not programmed, or undefined when it is (or is unknown, or is the own lease). */
  verdict(key: string): LeaseRejection | undefined {
    return this.#rejected.get(key)?.rejection;
  }

  /**
   * Sets this node's own lease (undefined: none). It competes in conflicts like any lease, is never
   * applied, and its subnets count as the node's own for the node rules (with `node.ownSubnets`).
   */
  setOwn(lease: Lease | undefined): void {
    const changes: FilterChange[] = [];
    if (this.#ownKey !== undefined && this.#ownKey !== lease?.key) changes.push({ key: this.#ownKey });
    const before = this.#ownSubnets.map(formatNet).join();
    this.#ownKey = lease?.key;
    this.#ownSubnets = [lease?.subnet, lease?.ipv6Subnet].filter((n): n is IPNet => !!n);
    if (lease) changes.push({ key: lease.key, entry: { ok: true, lease } });
    this.update(changes);
    if (this.#ownSubnets.map(formatNet).join() !== before) this.#publish([...this.#known.keys()]);
    else if (lease) this.#publish([lease.key]); // a key known as a peer's until now is withdrawn
  }

  /** New facts about this node (addresses changed, a new own subnet): every node verdict is redone. */
  setNode(node: NodeFacts): void {
    const id = nodeId(node);
    if (id === this.#nodeId) return;
    this.#node = node;
    this.#nodeId = id;
    this.#publish([...this.#known.keys()]);
  }

  /** Applies a batch of changes from the lease watch (or a re-list). */
  update(changes: FilterChange[]): void {
    if (!changes.length) return;
    const seeds = new Set<string>();
    const memo: Claims = new Map();
    for (const { key, entry } of changes) {
      const old = this.#known.get(key);
      if (old) {
        if (entry && fingerprint(entry) === fingerprint(old.entry)) continue; // a re-list repeating it
        // Whoever shared a claim with the old value may be judged differently now.
        const was = this.#claimsOf(old);
        for (const c of was) for (const k of this.#claimants(c.id)) seeds.add(k);
        this.#unclaim(key, was);
      }
      seeds.add(key);
      if (!entry) {
        this.#known.delete(key);
        this.#cluster.delete(key);
        continue;
      }
      const judged = entry.ok ? assessLease(entry.lease, this.#rules) : { rejection: entry.rejection };
      const known: Known = judged.rejection ? { entry, alone: judged.rejection } : { entry };
      this.#known.set(key, known);
      const claims = judged.claims ?? [];
      memo.set(key, claims);
      for (const c of claims) {
        const had = this.#claims.get(c.id);
        if (had === undefined || had === key) this.#claims.set(c.id, key);
        else if (typeof had === "string") this.#claims.set(c.id, new Set([had, key]));
        else had.add(key);
      }
    }
    if (!seeds.size) return;
    const component = this.#component(seeds, memo);
    this.#resolve(component, memo);
    this.#publish(component);
  }

  /** The keys claiming `id`. */
  #claimants(id: string): Iterable<string> {
    const had = this.#claims.get(id);
    return had === undefined ? [] : typeof had === "string" ? [had] : had;
  }

  /** What `k` claims (none when rejected alone); `memo` keeps it for the rest of one update. */
  #claimsOf(k: Known, key?: string, memo?: Claims): LeaseClaim[] {
    if (k.alone || !k.entry.ok) return [];
    const had = key === undefined ? undefined : memo?.get(key);
    if (had) return had;
    const claims = assessLease(k.entry.lease, this.#rules).claims ?? [];
    if (key !== undefined) memo?.set(key, claims);
    return claims;
  }

  #unclaim(key: string, claims: LeaseClaim[]): void {
    for (const c of claims) {
      const had = this.#claims.get(c.id);
      if (had === key) this.#claims.delete(c.id);
      else if (had instanceof Set) {
        had.delete(key);
        if (had.size === 1) this.#claims.set(c.id, [...had][0]!);
      }
    }
  }

  /** Every key linked to `seeds` through shared claims. */
  #component(seeds: Set<string>, memo: Claims): string[] {
    const seen = new Set<string>(seeds);
    const queue = [...seeds];
    while (queue.length) {
      const key = queue.pop()!;
      const known = this.#known.get(key);
      for (const c of known ? this.#claimsOf(known, key, memo) : []) {
        for (const other of this.#claimants(c.id)) {
          if (!seen.has(other)) {
            seen.add(other);
            queue.push(other);
          }
        }
      }
    }
    return [...seen];
  }

  /** Judges the cluster rules of a conflict component: the oldest lease takes each claim first. */
  #resolve(keys: string[], memo: Claims): void {
    const candidates: { key: string; order: number; known: Known }[] = [];
    for (const key of keys) {
      const known = this.#known.get(key);
      if (!known) continue;
      if (known.alone) {
        this.#cluster.set(key, known.alone);
        continue;
      }
      const lease = (known.entry as { lease: Lease }).lease;
      candidates.push({ key, order: lease.createOrder ?? Number.MAX_SAFE_INTEGER, known });
    }
    candidates.sort(order);
    const taken = new Map<string, { key: string; claim: LeaseClaim }[]>();
    for (const { key, known } of candidates) {
      const claims = this.#claimsOf(known, key, memo);
      let lost: LeaseRejection | undefined;
      for (const c of claims) {
        for (const w of taken.get(c.id) ?? []) {
          lost = claimConflict(key, c, w.key, w.claim);
          if (lost) break;
        }
        if (lost) break;
      }
      if (lost) this.#cluster.set(key, lost);
      else this.#cluster.delete(key);
      if (lost) continue;
      for (const c of claims) {
        let list = taken.get(c.id);
        if (!list) taken.set(c.id, list = []);
        list.push({ key, claim: c });
      }
    }
  }

  /** Final verdicts (cluster, then node rules) of `keys`, reports, and what to tell the reconciler. */
  #publish(keys: string[]): void {
    const removals: string[] = [];
    const additions: [string, Lease][] = [];
    const node = this.#ownSubnets.length
      ? { ...this.#node, ownSubnets: [...this.#node.ownSubnets, ...this.#ownSubnets] }
      : this.#node;
    for (const key of keys) {
      const known = this.#known.get(key);
      const own = key === this.#ownKey;
      let verdict: LeaseRejection | undefined;
      if (known) {
        verdict = this.#cluster.get(key);
        if (!verdict && !own && known.entry.ok) {
          verdict = checkLeaseOnNode(known.entry.lease, this.#rules, node);
        }
      }
      if (own) {
        const why = verdict?.message ?? "";
        if (why && why !== this.#ownConflict && verdict) {
          this.#report({ type: "own_conflict", rejection: verdict });
        }
        this.#ownConflict = why;
        this.#rejected.delete(key);
        if (this.#applied.delete(key)) removals.push(key);
        continue;
      }
      const prev = this.#rejected.get(key);
      if (!known) {
        this.#rejected.delete(key);
        if (this.#applied.delete(key)) removals.push(key);
        continue;
      }
      if (verdict) {
        const fp = `${fingerprint(known.entry)} ${verdict.rule}`;
        if (!prev || prev.fingerprint !== fp) {
          this.rejectedTotal.set(verdict.rule, (this.rejectedTotal.get(verdict.rule) ?? 0) + 1);
          this.#report({ type: "rejected", rejection: verdict });
          this.#rejected.set(key, { rejection: verdict, since: new Date(), fingerprint: fp });
        } else {
          prev.rejection = verdict; // same rule and value; the details (e.g. which rival) may be newer
        }
        if (this.#applied.delete(key)) removals.push(key);
        continue;
      }
      if (prev) {
        this.#rejected.delete(key);
        this.#report({ type: "accepted", key, previously: prev.rejection.rule });
      }
      const lease = (known.entry as { lease: Lease }).lease;
      const was = this.#applied.get(key);
      if (was !== lease) {
        this.#applied.set(key, lease);
        additions.push([key, lease]);
      }
    }
    // Removals first: a subnet changing hands must not have the loser's removal undo the winner's route.
    for (const key of removals) this.#apply(key, undefined);
    for (const [key, lease] of additions) this.#apply(key, lease);
  }
}

function nodeId(n: NodeFacts): string {
  return JSON.stringify([
    n.ownSubnets.map(formatNet),
    n.addresses.map((a) => `${a.ip.family}/${a.ip.value} ${formatNet(a.net)} ${a.dev ?? ""}`).sort(),
    [...n.vtepMacs].sort(),
  ]);
}
