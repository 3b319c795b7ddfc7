/**
 * The lease-source seam (flannel's `subnet.Manager`): everything the agent does with leases goes
 * through {@linkcode LeaseSource}. Two implementations: {@linkcode SubnetManager} over a registry
 * (etcd, or the in-memory one of the tests), and the Kubernetes source (node podCIDRs + annotations).
 * This module holds types only, so the agent can depend on it without loading any store's client.
 *
 * @module
 */
import type { NetworkConfig } from "../config/net_conf.ts";
import type { IPNet } from "../net/ip.ts";
import type { Lease, LeaseAttrs, LeaseEvent } from "./lease.ts";
import type { LeaseRejection } from "./validate.ts";

/** Options of {@linkcode LeaseSource.acquireLease}. */
export interface AcquireOptions {
  /** IPv4 subnet recorded in the previous subnet.env, tried after a PublicIP match. */
  previousSubnet?: IPNet;
  /** IPv6 subnet recorded in the previous subnet.env. */
  previousIPv6Subnet?: IPNet;
  /** TTL in seconds (etcd; default 24 h). */
  ttlSeconds?: number;
  /** Create attempts before giving up on races (flannel: 10). */
  attempts?: number;
}

/** Options of {@linkcode LeaseSource.keepLease}. */
export interface KeepOptions {
  /** TTL of each renewal, seconds (etcd). */
  ttlSeconds?: number;
  /** Renew this long before expiry, seconds (flannel: 60 min); capped at half the TTL. */
  renewMarginSeconds?: number;
  /** Called with the lease after every renewal (`reacquired` false) or re-acquisition (true). */
  onLease?: (lease: Lease, reacquired: boolean) => void;
  /**
   * The own lease is gone and cannot be taken back now (Kubernetes: the Node was deleted, or lost its
   * podCIDR): `why` says so. `onLease(…, true)` follows when there is a lease again.
   */
  onLost?: (why: string) => void;
}

/** Keeps the node's own lease: renews it, and takes it back when it is lost. */
export interface OwnLeaseKeeper {
  /** The lease as last renewed or re-acquired. */
  readonly lease: Lease;
  /** Successful renewals. */
  readonly renewals: number;
  /** Times somebody else's value was found under the own key and the own value written back. */
  readonly reasserted?: number;
  /** Check (renew, re-acquire) now instead of at the next due time. */
  poke(): void;
  /** Runs until `signal` aborts; never throws (failures are logged and retried). */
  run(signal: AbortSignal): Promise<void>;
  /**
   * The node serves its lease now: subnet.env written and the datapath programmed. A Kubernetes keeper
   * then sets the Node's `NetworkUnavailable=False` (flannel's order: never before). Idempotent.
   */
  datapathReady?(): void;
}

/** Options of {@linkcode LeaseSource.watchLeases}. */
export interface WatchOptions {
  /** Stops the watch. */
  signal: AbortSignal;
  /** Key of the own lease (read on every event, so it may change): its events go to `onOwn` only. */
  ownKey?: () => string | undefined;
  /**
   * The node's PublicIP: other leases carrying it are old leases of this node (kept until they expire
   * after a re-acquisition), never peers, and are not delivered.
   */
  ownPublicIP?: string;
  /** Told when the own lease changes or disappears (e.g. deleted by an operator). */
  onOwn?: (ev: LeaseEvent) => void;
  /**
   * Told about entries that are not leases at all (a key or value that does not parse), once per key and
   * value, and with `undefined` when such a key is deleted or becomes a lease.
   */
  onInvalid?: (key: string, why: LeaseRejection | undefined) => void;
  /** Called after every (re-)list has been delivered, also when it brought no change. */
  onSync?: () => void;
  /** Called with false when the store cannot be reached, true when it can again. */
  onConnectivity?: (up: boolean) => void;
  /**
   * The store answers but refuses the agent (credentials revoked or expired, RBAC): `why` says what to
   * fix; undefined once it accepts the agent again.
   */
  onRefused?: (why: string | undefined) => void;
}

/**
 * A running watch: a promise that settles when the watch stops, with `relist()` to catch up with the
 * store now (etcd: ends the current stream and re-lists, diffed against what was delivered, so removals
 * made meanwhile arrive as `removed`; Kubernetes: resumes the watch from its last resourceVersion at
 * once, which replays what it missed — the server's 410 alone makes it list).
 */
export type LeaseWatch = Promise<void> & {
  /** Catch up with the store now (e.g. it is back after an outage). */
  relist(): void;
};

/** Where leases live: etcd, Kubernetes nodes, or memory. */
export interface LeaseSource {
  /** `etcd`, `kube`, `memory`: for logs and status. */
  readonly kind: string;
  /** The network config (etcd: `<prefix>/config`; Kubernetes: the net-conf.json file). */
  getNetworkConfig(): Promise<NetworkConfig>;
  /** Every lease and reservation, the own one included. */
  listLeases(): Promise<{ leases: Lease[] }>;
  /**
   * The node's own previous lease from a record of the node itself, where the store keeps one (Kubernetes:
   * its Node), so start-up need not wait for {@linkcode listLeases} to find it; undefined when there is
   * none. Without this method start-up looks for it in the list.
   */
  ownPreviousLease?(cfg: NetworkConfig): Promise<Lease | undefined>;
  /** Takes (or, where the store assigns subnets, reads) the node's lease and publishes `attrs` in it. */
  acquireLease(cfg: NetworkConfig, attrs: LeaseAttrs, opts?: AcquireOptions): Promise<Lease>;
  /** A keeper for the own `lease`, re-acquiring with `cfg` and `attrs` when it is lost. */
  keepLease(cfg: NetworkConfig, attrs: LeaseAttrs, lease: Lease, opts?: KeepOptions): OwnLeaseKeeper;
  /** Snapshot, then changes, of every lease but the own one, until `opts.signal` aborts. */
  watchLeases(onBatch: (events: LeaseEvent[]) => void, opts: WatchOptions): LeaseWatch;
  /** Gives the own lease up for good; false when it was gone or is someone else's now. */
  releaseLease(lease: Lease): Promise<boolean>;
  /**
   * A cheap round trip: resolves with a fingerprint of the network config (to notice it changed),
   * rejects when the store is unreachable. The agent probes every few seconds, so a store whose watch
   * reports its own health (`onConnectivity`: Kubernetes, where 5000 nodes probing would be 1000
   * requests/s for nothing) has none, and offers {@linkcode LeaseSource.configFingerprint} instead.
   */
  probe?(): Promise<string>;
  /** The network config's fingerprint from local state alone (Kubernetes: the net-conf.json file). */
  configFingerprint?(): string;
  /** How start-up retries this store's calls (default 100 ms → 5 s; Kubernetes 0.8 s → 30 s). */
  readonly retryBackoff?: { firstMs: number; maxMs: number };
  /** Releases connections (revokes nothing). */
  close(): Promise<void>;
}
