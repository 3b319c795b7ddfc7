/**
 * Peer sync: the lease source's watch feeds the reconciler's desired state. Only leases the backend
 * serves become peers (other backends' leases are skipped, logged once); the own lease goes to the
 * keeper. After a store outage {@linkcode PeerSync.relist} re-reads the store at once; the watch diffs
 * the re-list against what it delivered, so peers deleted meanwhile lose their entries.
 *
 * @module
 */
import type { Reconciler } from "../datapath/reconciler.ts";
import type { Lease } from "../subnet/lease.ts";
import type { LeaseSource, LeaseWatch } from "../subnet/source.ts";

/** What peer sync tells the rest of the agent. */
export interface PeerSyncHooks {
  /** Key of the own lease (it may change when the lease is re-acquired). */
  ownKey(): string | undefined;
  /** The node's PublicIP: leases carrying it are old leases of this node. */
  ownPublicIP: string;
  /** The own lease changed or vanished in the store. */
  onOwn(type: "added" | "removed", lease: Lease): void;
  /** Every (re-)list has been delivered. */
  onSynced(): void;
  /** The store answered (true) or not (false). */
  onConnectivity(up: boolean): void;
}

/** Lease watch → reconciler. */
export class PeerSync {
  #watch: LeaseWatch | undefined;
  #synced = false;

  /**
   * @param source where leases come from
   * @param reconciler where peers go
   * @param serves whether the backend serves a peer's lease
   * @param hooks the rest of the agent
   */
  constructor(
    private readonly source: LeaseSource,
    private readonly reconciler: Reconciler,
    private readonly serves: (lease: Lease) => boolean,
    private readonly hooks: PeerSyncHooks,
  ) {}

  /** True once the first complete list of leases reached the reconciler (before it, nothing is pruned). */
  get synced(): boolean {
    return this.#synced;
  }

  /** Watches until `signal` aborts. */
  run(signal: AbortSignal): Promise<void> {
    const r = this.reconciler;
    this.#watch = this.source.watchLeases((batch) => {
      for (const ev of batch) {
        const wanted = ev.type === "added" && this.serves(ev.lease);
        r.setPeer(ev.lease.key, wanted ? ev.lease : undefined);
      }
    }, {
      signal,
      ownKey: () => this.hooks.ownKey(),
      ownPublicIP: this.hooks.ownPublicIP,
      onOwn: (ev) => this.hooks.onOwn(ev.type, ev.lease),
      onSync: () => {
        this.#synced = true;
        this.hooks.onSynced();
      },
      onConnectivity: (up) => this.hooks.onConnectivity(up),
    });
    return this.#watch;
  }

  /** Re-list now (the store is back after an outage: its client's own reconnect may lag for seconds). */
  relist(): void {
    this.#watch?.relist();
  }
}
