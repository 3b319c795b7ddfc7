/**
 * Peer sync: the lease source's watch feeds the reconciler's desired state, through the lease filter
 * (src/lease/lease_filter.ts): a lease that breaks a rule — a subnet outside the Network or of the wrong
 * length, one that overlaps this node's subnet or a network it is connected to, a PublicIP that is not a
 * unicast address, a bad VtepMAC, an older lease's subnet — never reaches the reconciler, is logged once
 * with its key and rule, counted, and listed ({@linkcode PeerSync.rejected}); entries that do not even
 * parse are reported by the watch and land in the same list. Only leases the backend serves become peers
 * (other backends' leases are skipped, logged once); the own lease goes to the keeper, and to the filter
 * as a competitor in conflicts. After a store outage {@linkcode PeerSync.relist} re-reads the store at
 * once; the watch diffs the re-list against what it delivered, so peers deleted meanwhile lose their
 * entries.
 *
 * @module
 */
import type { Reconciler } from "../datapath/reconciler.ts";
import type { Lease } from "../lease/lease.ts";
import { type FilterChange, LeaseFilter, type RejectedLease } from "../lease/lease_filter.ts";
import type { LeaseSource, LeaseWatch } from "../lease/source.ts";
import type { LeaseRule, NetworkRules, NodeFacts } from "../lease/validate.ts";

/** What peer sync tells the rest of the agent. */
export interface PeerSyncHooks {
  /** Key of the own lease (it may change when the lease is re-acquired). */
  ownKey(): string | undefined;
  /** The node's PublicIP: leases carrying it are old leases of this node. */
  ownPublicIP: string;
  /** The own lease changed or vanished in the store (the keeper's to act on: see {@linkcode PeerSync.connect}). */
  onOwn?(type: "added" | "removed", lease: Lease): void;
  /** Every (re-)list has been delivered (the full pass's cue: see {@linkcode PeerSync.connect}). */
  onSynced?(): void;
  /** The store answered (true) or not (false). */
  onConnectivity(up: boolean): void;
  /** The store refuses the agent (what to fix), or accepts it again (undefined). */
  onRefused?(why: string | undefined): void;
}

/** Lease watch → lease filter → reconciler. */
export class PeerSync {
  #watch: LeaseWatch | undefined;
  #synced = false;
  readonly #filter: LeaseFilter;

  /**
   * @param source where leases come from
   * @param reconciler where peers go
   * @param serves whether the backend serves a peer's lease
   * @param hooks the rest of the agent
   * @param rules what leases must look like (the network config), and what is known of this node
   */
  constructor(
    private readonly source: LeaseSource,
    reconciler: Reconciler,
    serves: (lease: Lease) => boolean,
    private readonly hooks: PeerSyncHooks,
    rules: { network: NetworkRules; node: NodeFacts },
  ) {
    this.#filter = new LeaseFilter({
      rules: rules.network,
      node: rules.node,
      apply: (key, lease) => reconciler.setPeer(key, lease && serves(lease) ? lease : undefined),
    });
  }

  /** The leases refused now, with the rule each breaks. */
  rejected(): RejectedLease[] {
    return this.#filter.rejected();
  }

  /** Leases refused since start, per rule. */
  get rejectedTotal(): ReadonlyMap<LeaseRule, number> {
    return this.#filter.rejectedTotal;
  }

  /** Hooks of the parts built after peer sync (the keeper, the full pass); before {@linkcode run}. */
  connect(later: Pick<PeerSyncHooks, "onOwn" | "onSynced">): void {
    Object.assign(this.hooks, later);
  }

  /** The own lease (it competes in conflicts and its subnets are the node's own). */
  setOwn(lease: Lease): void {
    this.#filter.setOwn(lease);
  }

  /** New facts about the node (its addresses, read at each full pass). */
  setNode(node: NodeFacts): void {
    this.#filter.setNode(node);
  }

  /** True once the first complete list of leases reached the reconciler (before it, nothing is pruned). */
  get synced(): boolean {
    return this.#synced;
  }

  /** Watches until `signal` aborts. */
  run(signal: AbortSignal): Promise<void> {
    this.#watch = this.source.watchLeases((batch) => {
      this.#filter.update(
        batch.map((ev): FilterChange =>
          ev.type === "added"
            ? { key: ev.lease.key, entry: { ok: true, lease: ev.lease } }
            : { key: ev.lease.key }
        ),
      );
    }, {
      signal,
      ownKey: () => this.hooks.ownKey(),
      ownPublicIP: this.hooks.ownPublicIP,
      onOwn: (ev) => this.hooks.onOwn?.(ev.type, ev.lease),
      onInvalid: (key, why) => {
        // Garbage under the own key is the keeper's to repair (the watch reports the lease removed).
        if (key === this.hooks.ownKey()) return;
        this.#filter.update([why ? { key, entry: { ok: false, rejection: why } } : { key }]);
      },
      onSync: () => {
        this.#synced = true;
        this.hooks.onSynced?.();
      },
      onConnectivity: (up) => this.hooks.onConnectivity(up),
      onRefused: (why) => this.hooks.onRefused?.(why),
    });
    return this.#watch;
  }

  /** Re-list now (the store is back after an outage: its client's own reconnect may lag for seconds). */
  relist(): void {
    this.#watch?.relist();
  }
}
