/**
 * The subnet manager: flannel's lease algorithm on any {@linkcode Registry}.
 *
 * - `acquireLease`: reuse the lease carrying our PublicIP if it still fits the config, else the subnet
 *   from subnet.env if free, else a random one of the first 100 free subnets; atomic create-if-absent
 *   with retries; reservations (no TTL) are never taken; "out of subnets" when nothing is free.
 * - {@linkcode LeaseKeeper}: renews well before expiry (fresh TTL), retries on failure, and re-acquires
 *   (same subnet if still free) when an operator deleted the lease or it expired — flanneld would exit.
 * - `watchLeases`: snapshot + revision, then a watch from the next revision; re-lists and diffs on
 *   compaction or reconnect; delivers batches; the own lease filtered.
 *
 * @module
 */
import type { NetworkConfig } from "../config/net_conf.ts";
import { log } from "../log.ts";
import { addIP, formatNet, type IPNet, netContainsNet, netEqual, netSize } from "../net/ip.ts";
import {
  type Lease,
  type LeaseAttrs,
  leaseAttrsJSON,
  type LeaseEvent,
  parseLeaseAttrs,
  parseSubnetKey,
  subnetKey,
} from "./lease.ts";
import type { Registry, RegistryEntry } from "./registry.ts";

/** Thrown when every subnet of the network is taken. */
export class OutOfSubnetsError extends Error {
  /** Creates the error for `network`. */
  constructor(network: string) {
    super(`out of subnets: every subnet of ${network} between SubnetMin and SubnetMax is leased or reserved`);
    this.name = "OutOfSubnetsError";
  }
}

/** Default lease TTL: 24 h, like flannel. */
export const DEFAULT_LEASE_TTL_SECONDS = 24 * 3600;

const logger = log("subnet");

function toLease(e: RegistryEntry): Lease | undefined {
  const nets = parseSubnetKey(e.key);
  if (!nets) return undefined;
  let attrs: LeaseAttrs;
  try {
    attrs = parseLeaseAttrs(e.value, e.key);
  } catch (err) {
    logger.warn("ignoring malformed lease {key}: {error}", { key: e.key, error: (err as Error).message });
    return undefined;
  }
  const lease: Lease = { ...nets, attrs, key: e.key };
  if (e.expiration) lease.expiration = e.expiration;
  if (e.leaseId) lease.etcdLeaseId = e.leaseId;
  return lease;
}

/** Options of {@linkcode SubnetManager.acquireLease}. */
export interface AcquireOptions {
  /** Subnet recorded in the previous subnet.env, tried after a PublicIP match. */
  previousSubnet?: IPNet;
  /** TTL in seconds (default 24 h). */
  ttlSeconds?: number;
  /** Create attempts before giving up on races (flannel: 10). */
  attempts?: number;
}

/** Leases of one network on one registry. */
export class SubnetManager {
  /** Creates the manager. */
  constructor(readonly registry: Registry) {}

  /** Reads and validates the network config. */
  async getNetworkConfig(): Promise<NetworkConfig> {
    const { parseNetworkConfig } = await import("../config/net_conf.ts");
    const text = await this.registry.getConfig();
    if (text === undefined) {
      throw new Error("no network config in etcd: write one with `weft config set FILE`");
    }
    return parseNetworkConfig(text);
  }

  /** Every lease and reservation, with the revision read at. */
  async listLeases(): Promise<{ leases: Lease[]; revision: number }> {
    const { entries, revision } = await this.registry.listSubnets();
    return { leases: entries.map(toLease).filter((l): l is Lease => !!l), revision };
  }

  /** Acquires a lease for `attrs` with flannel's algorithm. */
  async acquireLease(cfg: NetworkConfig, attrs: LeaseAttrs, opts: AcquireOptions = {}): Promise<Lease> {
    const ttl = opts.ttlSeconds ?? DEFAULT_LEASE_TTL_SECONDS;
    const value = leaseAttrsJSON(attrs);
    const attempts = opts.attempts ?? 10;
    for (let attempt = 0; attempt < attempts; attempt++) {
      const { leases } = await this.listLeases();
      // 1. A lease (or reservation) already carrying our PublicIP, if it still fits the config.
      const mine = leases.find((l) => l.attrs.PublicIP === attrs.PublicIP && fits(cfg, l));
      if (mine) {
        if (!mine.etcdLeaseId) {
          // A reservation stays a reservation (no TTL), but peers must see our current attributes
          // (the VTEP MAC above all), as flannel does when it takes a reserved subnet.
          if (leaseAttrsJSON(mine.attrs) !== value) await this.registry.reserveSubnet(mine.key, value);
          logger.info("using reservation {key} for {ip}", { key: mine.key, ip: attrs.PublicIP });
          return { ...mine, attrs };
        }
        const renewed = await this.registry.renewSubnet(
          mine.key,
          value,
          ttl,
          leaseAttrsJSON(mine.attrs),
          mine.etcdLeaseId,
        );
        if (renewed) {
          logger.info("reusing lease {key} of {ip}", { key: mine.key, ip: attrs.PublicIP });
          return toLease(renewed)!;
        }
        continue; // it changed under us: look again
      }
      // 2. The subnet from subnet.env, if free. 3. Random among the first 100 free ones.
      const taken = new Set(leases.map((l) => l.subnet ? formatNet(l.subnet) : ""));
      const candidates: IPNet[] = [];
      if (
        opts.previousSubnet && fits(cfg, { subnet: opts.previousSubnet }) &&
        !taken.has(formatNet(opts.previousSubnet))
      ) {
        candidates.push(opts.previousSubnet);
      } else {
        const free = freeSubnets(cfg, taken, 100);
        if (!free.length) throw new OutOfSubnetsError(cfg.network ? formatNet(cfg.network) : "the network");
        candidates.push(free[Math.floor(Math.random() * free.length)]!);
      }
      const subnet = candidates[0]!;
      const key = subnetKey(subnet);
      const created = await this.registry.createSubnet(key, value, ttl);
      if (created) {
        logger.info("acquired lease {key} for {ip}", { key, ip: attrs.PublicIP });
        return toLease(created)!;
      }
      logger.debug("subnet {key} was taken concurrently, retrying", { key });
    }
    // Still racing after all attempts: only possible when almost nothing is free.
    const { leases } = await this.listLeases();
    const taken = new Set(leases.map((l) => l.subnet ? formatNet(l.subnet) : ""));
    if (!freeSubnets(cfg, taken, 1).length) {
      throw new OutOfSubnetsError(cfg.network ? formatNet(cfg.network) : "the network");
    }
    throw new Error(`could not acquire a subnet after ${attempts} attempts (heavy contention)`);
  }

  /** Renews `lease` with a fresh TTL; undefined when it no longer exists as ours. */
  async renewLease(lease: Lease, ttlSeconds = DEFAULT_LEASE_TTL_SECONDS): Promise<Lease | undefined> {
    const value = leaseAttrsJSON(lease.attrs);
    const e = await this.registry.renewSubnet(lease.key, value, ttlSeconds, value, lease.etcdLeaseId);
    return e ? toLease(e) : undefined;
  }

  /** Writes a reservation (no TTL) of `subnet` for `publicIP`. */
  async reserve(subnet: IPNet, attrs: LeaseAttrs): Promise<void> {
    await this.registry.reserveSubnet(subnetKey(subnet), leaseAttrsJSON(attrs));
  }

  /** Deletes a lease or reservation. */
  release(subnet: IPNet): Promise<boolean> {
    return this.registry.deleteSubnet(subnetKey(subnet));
  }

  /**
   * Watches every lease but `ownKey`: first the snapshot as one `added` batch, then changes. Runs until
   * `signal` aborts. Errors (etcd down, compaction) are retried with backoff (100 ms → 5 s) by re-listing
   * and diffing, so no change is lost. `onOwn` is told when the own lease changes or disappears.
   */
  async watchLeases(
    onBatch: (events: LeaseEvent[]) => void,
    opts: {
      signal: AbortSignal;
      ownKey?: () => string | undefined;
      onOwn?: (ev: LeaseEvent) => void;
      /** Called after every (re-)list has been delivered, also when it brought no change. */
      onSync?: () => void;
      /** Called with false when etcd cannot be reached, true when it can again. */
      onConnectivity?: (up: boolean) => void;
    },
  ): Promise<void> {
    const known = new Map<string, Lease>();
    let backoff = 100;
    const deliver = (events: LeaseEvent[]) => {
      const own = opts.ownKey?.();
      const others = events.filter((e) => {
        if (e.lease.key !== own) return true;
        opts.onOwn?.(e);
        return false;
      });
      if (others.length) onBatch(others);
    };
    while (!opts.signal.aborted) {
      let stop: (() => Promise<void>) | undefined;
      try {
        const { leases, revision } = await this.listLeases();
        // Diff the snapshot against what we already delivered (a re-list after an error).
        const seen = new Set<string>();
        const events: LeaseEvent[] = [];
        for (const l of leases) {
          seen.add(l.key);
          const prev = known.get(l.key);
          if (!prev || leaseAttrsJSON(prev.attrs) !== leaseAttrsJSON(l.attrs)) {
            events.push({ type: "added", lease: l });
          }
          known.set(l.key, l);
        }
        for (const [k, l] of known) {
          if (!seen.has(k)) {
            known.delete(k);
            events.push({ type: "removed", lease: l });
          }
        }
        if (events.length) deliver(events);
        opts.onSync?.();
        opts.onConnectivity?.(true);
        const failed = Promise.withResolvers<Error>();
        stop = await this.registry.watchSubnets(revision, (raw) => {
          const batch: LeaseEvent[] = [];
          for (const ev of raw) {
            const l = toLease(ev.entry) ?? known.get(ev.entry.key);
            if (!l) continue;
            if (ev.type === "put") {
              known.set(l.key, l);
              batch.push({ type: "added", lease: l });
            } else {
              known.delete(l.key);
              batch.push({ type: "removed", lease: l });
            }
          }
          if (batch.length) deliver(batch);
        }, (err) => failed.resolve(err));
        backoff = 100;
        const aborted = new Promise<void>((r) =>
          opts.signal.addEventListener("abort", () => r(), { once: true })
        );
        const err = await Promise.race([failed.promise, aborted]);
        if (err) logger.warn("lease watch ended ({error}); re-listing", { error: err.message });
      } catch (err) {
        opts.onConnectivity?.(false);
        logger.warn("lease watch failed ({error}); retrying in {ms} ms", {
          error: (err as Error).message,
          ms: backoff,
        });
        await sleep(backoff, opts.signal);
        backoff = Math.min(backoff * 2, 5000);
      } finally {
        await stop?.();
      }
    }
  }
}

function fits(cfg: NetworkConfig, l: { subnet?: IPNet }): boolean {
  if (!cfg.network || !l.subnet) return false;
  return l.subnet.prefix === cfg.subnetLen && netContainsNet(cfg.network, l.subnet) &&
    (!cfg.subnetMin || l.subnet.ip.value >= cfg.subnetMin.ip.value) &&
    (!cfg.subnetMax || l.subnet.ip.value <= cfg.subnetMax.ip.value);
}

function freeSubnets(cfg: NetworkConfig, taken: Set<string>, limit: number): IPNet[] {
  if (!cfg.network || !cfg.subnetMin || !cfg.subnetMax) return [];
  const out: IPNet[] = [];
  const size = netSize({ ip: cfg.network.ip, prefix: cfg.subnetLen });
  for (
    let ip = cfg.subnetMin.ip;
    ip.value <= cfg.subnetMax.ip.value && out.length < limit;
    ip = addIP(ip, size)
  ) {
    const n = { ip, prefix: cfg.subnetLen };
    if (!taken.has(formatNet(n))) out.push(n);
    if (ip.value + size > cfg.subnetMax.ip.value) break;
  }
  return out;
}

/** Sleeps `ms`, or less when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    signal?.addEventListener("abort", () => {
      clearTimeout(t);
      resolve();
    }, { once: true });
  });
}

/** Options of {@linkcode LeaseKeeper}. */
export interface KeeperOptions {
  /** TTL of each renewal, seconds. */
  ttlSeconds: number;
  /** Renew this long before expiry, seconds (flannel: 60 min); capped at half the TTL. */
  renewMarginSeconds: number;
  /** Called with the new lease after every renewal or re-acquisition. */
  onLease?: (lease: Lease, reacquired: boolean) => void;
  /** Re-acquires when the lease vanished (operator delete, expiry). */
  reacquire: (previous: Lease) => Promise<Lease>;
}

/** Keeps one lease alive: renews before expiry, retries on failure, re-acquires when it is gone. */
export class LeaseKeeper {
  #lease: Lease;
  #wake = Promise.withResolvers<void>();
  /** Renewals done. */
  renewals = 0;

  /** Keeps `lease` alive with `manager`. */
  constructor(private readonly manager: SubnetManager, lease: Lease, private readonly opts: KeeperOptions) {
    this.#lease = lease;
  }

  /** The lease as last renewed. */
  get lease(): Lease {
    return this.#lease;
  }

  /** Renew (or re-acquire) now, e.g. because the watch saw the own lease deleted. */
  poke(): void {
    this.#wake.resolve();
  }

  /** Runs until `signal` aborts. */
  async run(signal: AbortSignal): Promise<void> {
    const ttl = this.opts.ttlSeconds;
    const margin = Math.min(this.opts.renewMarginSeconds, ttl / 2);
    let retry = Math.max(0.2, Math.min(60, ttl / 10));
    while (!signal.aborted) {
      const expires = this.#lease.expiration?.getTime() ?? Date.now() + ttl * 1000;
      const wait = Math.max(0, expires - margin * 1000 - Date.now());
      this.#wake = Promise.withResolvers<void>();
      await Promise.race([sleep(wait, signal), this.#wake.promise]);
      if (signal.aborted) return;
      if (!this.#lease.etcdLeaseId) {
        // A reservation has no TTL: nothing to renew, only check it is still there now and then.
        await Promise.race([sleep(ttl * 1000, signal), this.#wake.promise]);
        continue;
      }
      try {
        const renewed = await this.manager.renewLease(this.#lease, ttl);
        if (renewed) {
          this.#lease = renewed;
          this.renewals++;
          this.opts.onLease?.(renewed, false);
        } else {
          logger.warn("own lease {key} is gone (deleted or expired): re-acquiring", { key: this.#lease.key });
          this.#lease = await this.opts.reacquire(this.#lease);
          logger.warn("re-acquired lease {key}", { key: this.#lease.key });
          this.opts.onLease?.(this.#lease, true);
        }
        retry = Math.max(0.2, Math.min(60, ttl / 10));
      } catch (err) {
        logger.warn("lease renewal failed ({error}); retrying in {s} s", {
          error: (err as Error).message,
          s: retry,
        });
        await sleep(retry * 1000, signal);
        // Back off, but never so far that the lease could expire between two tries (flannel: every minute).
        retry = Math.min(retry * 2, Math.max(0.2, Math.min(60, ttl / 6)));
        // Make the next loop try again at once.
        this.#lease = { ...this.#lease, expiration: new Date(Date.now() + margin * 1000) };
      }
    }
  }
}

/** True when two leases name the same subnets. */
export function sameSubnets(a: Lease, b: Lease): boolean {
  return !!a.subnet && !!b.subnet && netEqual(a.subnet, b.subnet);
}
