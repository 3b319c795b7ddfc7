/**
 * The subnet manager: flannel's lease algorithm on any {@linkcode Registry}.
 *
 * - `acquireLease`: reuse the lease carrying our PublicIP if it still fits the config, else the subnet
 *   from subnet.env if free, else a random one of the first 100 free subnets; atomic create-if-absent
 *   with retries; reservations (no TTL) are never taken; "out of subnets" when nothing is free. With
 *   EnableIPv6 the same is done for the IPv6 subnet and the key is the dual-stack form.
 * - {@linkcode LeaseKeeper}: renews well before expiry (fresh TTL), retries on failure, and re-acquires
 *   (same subnet if still free) when an operator deleted the lease or it expired — flanneld would exit.
 * - `watchLeases`: snapshot + revision, then a watch from the next revision; re-lists and diffs on
 *   compaction or a lost stream, with back-off 100 ms → 5 s; delivers batches; the own lease filtered.
 *
 * @module
 */
import { type NetworkConfig, parseNetworkConfig } from "../config/net_conf.ts";
import { log } from "../log.ts";
import { addIP, formatIP, formatNet, type IPNet, netContainsNet, netEqual, netSize } from "../net/ip.ts";
import {
  type Lease,
  type LeaseAttrs,
  leaseAttrsJSON,
  type LeaseEvent,
  leaseName,
  parseLeaseAttrs,
  parseSubnetKey,
  subnetKey,
} from "./lease.ts";
import type { Registry, RegistryEntry } from "./registry.ts";

/** Thrown when every subnet of the network is taken. */
export class OutOfSubnetsError extends Error {
  /** Creates the error for `network` (text), naming the range that was searched. */
  constructor(readonly network: string, range = "between SubnetMin and SubnetMax") {
    super(`out of subnets: every subnet of ${network} ${range} is leased or reserved`);
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
  /** IPv4 subnet recorded in the previous subnet.env, tried after a PublicIP match. */
  previousSubnet?: IPNet;
  /** IPv6 subnet recorded in the previous subnet.env. */
  previousIPv6Subnet?: IPNet;
  /** TTL in seconds (default 24 h). */
  ttlSeconds?: number;
  /** Create attempts before giving up on races (flannel: 10). */
  attempts?: number;
}

/** Options of {@linkcode SubnetManager.watchLeases}. */
export interface WatchOptions {
  /** Stops the watch. */
  signal: AbortSignal;
  /** Key of the own lease (read on every event, so it may change): its events go to `onOwn` only. */
  ownKey?: () => string | undefined;
  /** Told when the own lease changes or disappears (e.g. deleted by an operator). */
  onOwn?: (ev: LeaseEvent) => void;
  /** Called after every (re-)list has been delivered, also when it brought no change. */
  onSync?: () => void;
  /** Called with false when etcd cannot be reached, true when it can again. */
  onConnectivity?: (up: boolean) => void;
}

/** The range one address family hands out. */
interface FamilyRange {
  network: IPNet;
  len: number;
  min: IPNet;
  max: IPNet;
}

function ranges(cfg: NetworkConfig): { v4?: FamilyRange; v6?: FamilyRange } {
  const out: { v4?: FamilyRange; v6?: FamilyRange } = {};
  if (cfg.enableIPv4 && cfg.network && cfg.subnetMin && cfg.subnetMax) {
    out.v4 = { network: cfg.network, len: cfg.subnetLen, min: cfg.subnetMin, max: cfg.subnetMax };
  }
  if (cfg.enableIPv6 && cfg.ipv6Network && cfg.ipv6SubnetMin && cfg.ipv6SubnetMax) {
    out.v6 = {
      network: cfg.ipv6Network,
      len: cfg.ipv6SubnetLen,
      min: cfg.ipv6SubnetMin,
      max: cfg.ipv6SubnetMax,
    };
  }
  return out;
}

function inRange(r: FamilyRange, n: IPNet): boolean {
  return n.prefix === r.len && netContainsNet(r.network, n) && n.ip.value >= r.min.ip.value &&
    n.ip.value <= r.max.ip.value;
}

/** True when a lease's subnets are what `cfg` would hand out now (each enabled family, no other). */
export function leaseFitsConfig(cfg: NetworkConfig, l: Pick<Lease, "subnet" | "ipv6Subnet">): boolean {
  const r = ranges(cfg);
  if (!r.v4 && !r.v6) return false;
  const ok4 = r.v4 ? !!l.subnet && inRange(r.v4, l.subnet) : !l.subnet;
  const ok6 = r.v6 ? !!l.ipv6Subnet && inRange(r.v6, l.ipv6Subnet) : !l.ipv6Subnet;
  return ok4 && ok6;
}

/** Up to `limit` free subnets of `r` in address order, from SubnetMin. */
function freeSubnets(r: FamilyRange, taken: Set<string>, limit: number): IPNet[] {
  const out: IPNet[] = [];
  const size = netSize({ ip: r.network.ip, prefix: r.len });
  for (let ip = r.min.ip; ip.value <= r.max.ip.value && out.length < limit;) {
    const n = { ip, prefix: r.len };
    if (!taken.has(formatNet(n))) out.push(n);
    if (ip.value + size > r.max.ip.value) break; // also keeps addIP inside the address space
    ip = addIP(ip, size);
  }
  return out;
}

function outOfSubnets(r: FamilyRange, family: 4 | 6): OutOfSubnetsError {
  const p = family === 4 ? "" : "IPv6";
  return new OutOfSubnetsError(
    formatNet(r.network),
    `between ${p}SubnetMin ${formatIP(r.min.ip)} and ${p}SubnetMax ${formatIP(r.max.ip)} (/${r.len})`,
  );
}

/** Picks a subnet of one family: the previous one if free, else random among the first 100 free. */
function pick(r: FamilyRange, family: 4 | 6, taken: Set<string>, previous?: IPNet): IPNet {
  if (previous && inRange(r, previous) && !taken.has(formatNet(previous))) return previous;
  const free = freeSubnets(r, taken, 100);
  if (!free.length) throw outOfSubnets(r, family);
  // Random, not the first: many nodes starting at once rarely collide (flannel does the same).
  return free[Math.floor(Math.random() * free.length)]!;
}

/** Leases of one network on one registry. */
export class SubnetManager {
  /** Creates the manager. */
  constructor(readonly registry: Registry) {}

  /** Reads and validates the network config (`<prefix>/config`). */
  async getNetworkConfig(): Promise<NetworkConfig> {
    const text = await this.registry.getConfig();
    if (text === undefined) {
      throw new Error("no network config in etcd: write one with `weft config set FILE`");
    }
    return parseNetworkConfig(text);
  }

  async #list(): Promise<{ leases: { lease: Lease; value: string }[]; revision: number }> {
    const { entries, revision } = await this.registry.listSubnets();
    const leases: { lease: Lease; value: string }[] = [];
    for (const e of entries) {
      const lease = toLease(e);
      if (lease) leases.push({ lease, value: e.value });
    }
    return { leases, revision };
  }

  /** Every lease and reservation (reservations have no `etcdLeaseId`), with the revision read at. */
  async listLeases(): Promise<{ leases: Lease[]; revision: number }> {
    const { leases, revision } = await this.#list();
    return { leases: leases.map((l) => l.lease), revision };
  }

  /** Acquires a lease for `attrs` with flannel's algorithm (see the module comment). */
  async acquireLease(cfg: NetworkConfig, attrs: LeaseAttrs, opts: AcquireOptions = {}): Promise<Lease> {
    const ttl = opts.ttlSeconds ?? DEFAULT_LEASE_TTL_SECONDS;
    const value = leaseAttrsJSON(attrs);
    const attempts = opts.attempts ?? 10;
    const r = ranges(cfg);
    if (!r.v4 && !r.v6) throw new Error("the network config enables no address family");
    const ours = (l: Lease) =>
      (!r.v4 || l.attrs.PublicIP === attrs.PublicIP) &&
      (!r.v6 || (l.attrs.PublicIPv6 ?? null) === (attrs.PublicIPv6 ?? null));
    for (let attempt = 0; attempt < attempts; attempt++) {
      const { leases } = await this.#list();
      // 1. A lease (or reservation) already carrying our PublicIP, if it still fits the config.
      const mine = leases.find((l) => ours(l.lease) && leaseFitsConfig(cfg, l.lease));
      if (mine) {
        const { lease } = mine;
        if (!lease.etcdLeaseId) {
          // A reservation stays a reservation (no TTL), but peers must see our current attributes
          // (the VTEP MAC above all), as flannel does when it takes a reserved subnet.
          if (mine.value !== value) await this.registry.reserveSubnet(lease.key, value);
          logger.info("using reservation {key} for {ip}", { key: lease.key, ip: attrs.PublicIP });
          return { ...lease, attrs };
        }
        // Compare against the stored bytes: flannel's JSON may differ from ours in spacing or fields.
        const renewed = await this.registry.renewSubnet(lease.key, value, ttl, mine.value, lease.etcdLeaseId);
        if (renewed) {
          logger.info("reusing lease {key} of {ip}", { key: lease.key, ip: attrs.PublicIP });
          return toLease(renewed)!;
        }
        continue; // it changed or expired under us: look again
      }
      // 2. The subnet from subnet.env, if free. 3. Random among the first 100 free ones.
      const taken4 = new Set<string>(), taken6 = new Set<string>();
      for (const { lease } of leases) {
        if (lease.subnet) taken4.add(formatNet(lease.subnet));
        if (lease.ipv6Subnet) taken6.add(formatNet(lease.ipv6Subnet));
      }
      const subnet = r.v4 ? pick(r.v4, 4, taken4, opts.previousSubnet) : undefined;
      const ipv6Subnet = r.v6 ? pick(r.v6, 6, taken6, opts.previousIPv6Subnet) : undefined;
      const key = subnetKey(subnet, ipv6Subnet);
      const created = await this.registry.createSubnet(key, value, ttl);
      if (created) {
        const previous = opts.previousSubnet && subnet && netEqual(subnet, opts.previousSubnet);
        logger.info("acquired lease {key} for {ip}{how}", {
          key,
          ip: attrs.PublicIP,
          how: previous ? " (the subnet of the previous subnet.env)" : "",
        });
        return toLease(created)!;
      }
      logger.debug("subnet {key} was taken concurrently, retrying", { key });
    }
    // Still racing after all attempts: say "out of subnets" when that is what it is.
    const { leases } = await this.listLeases();
    for (const [fam, range] of [[4, r.v4], [6, r.v6]] as const) {
      if (!range) continue;
      const taken = new Set(
        leases.map((l) => fam === 4 ? l.subnet : l.ipv6Subnet).filter((n) => !!n).map(
          (n) => formatNet(n!),
        ),
      );
      if (!freeSubnets(range, taken, 1).length) throw outOfSubnets(range, fam);
    }
    throw new Error(`could not acquire a subnet after ${attempts} attempts (heavy contention)`);
  }

  /**
   * A {@linkcode LeaseKeeper} for `lease` that re-acquires with `cfg` and `attrs` (the same subnet when it
   * is still free). Start it with `keeper.run(signal)`.
   */
  keepLease(
    cfg: NetworkConfig,
    attrs: LeaseAttrs,
    lease: Lease,
    opts: Partial<Omit<KeeperOptions, "reacquire">> = {},
  ): LeaseKeeper {
    const ttlSeconds = opts.ttlSeconds ?? DEFAULT_LEASE_TTL_SECONDS;
    return new LeaseKeeper(this, lease, {
      ttlSeconds,
      renewMarginSeconds: opts.renewMarginSeconds ?? 3600,
      ...(opts.onLease ? { onLease: opts.onLease } : {}),
      reacquire: (prev) =>
        this.acquireLease(cfg, attrs, {
          ttlSeconds,
          ...(prev.subnet ? { previousSubnet: prev.subnet } : {}),
          ...(prev.ipv6Subnet ? { previousIPv6Subnet: prev.ipv6Subnet } : {}),
        }),
    });
  }

  /** Renews `lease` with a fresh TTL; undefined when it no longer exists as ours (deleted, expired). */
  async renewLease(lease: Lease, ttlSeconds = DEFAULT_LEASE_TTL_SECONDS): Promise<Lease | undefined> {
    const value = leaseAttrsJSON(lease.attrs);
    const e = await this.registry.renewSubnet(lease.key, value, ttlSeconds, value, lease.etcdLeaseId);
    return e ? toLease(e) : undefined;
  }

  /** The lease or reservation stored under `key`, or undefined. */
  async getLease(key: string): Promise<Lease | undefined> {
    const e = await this.registry.getSubnet(key);
    return e ? toLease(e) : undefined;
  }

  /** Writes a reservation (no TTL) of `subnet` (and `ipv6Subnet`) for a node. */
  async reserve(subnet: IPNet | undefined, attrs: LeaseAttrs, ipv6Subnet?: IPNet): Promise<void> {
    await this.registry.reserveSubnet(subnetKey(subnet, ipv6Subnet), leaseAttrsJSON(attrs));
  }

  /**
   * Gives up the own `lease` (a node leaving for good): deletes its key if it still carries our
   * PublicIP; false when it was already gone or someone else holds the subnet now. flanneld never does
   * this on a restart — keeping the lease is what lets a restarted node get its subnet back.
   */
  async releaseLease(lease: Lease): Promise<boolean> {
    const cur = await this.getLease(lease.key);
    if (!cur || cur.attrs.PublicIP !== lease.attrs.PublicIP) return false;
    return await this.registry.deleteSubnet(lease.key);
  }

  /**
   * Deletes a lease or reservation; false when there was none. `subnet` may be a subnet or a lease
   * key (`10.244.3.0-24&fd00::-64`); a lone IPv4 subnet also finds its dual-stack key.
   */
  async release(subnet: IPNet | string): Promise<boolean> {
    if (typeof subnet === "string") return await this.registry.deleteSubnet(subnet);
    if (await this.registry.deleteSubnet(subnetKey(subnet))) return true;
    const { leases } = await this.listLeases();
    const l = leases.find((x) =>
      (x.subnet && netEqual(x.subnet, subnet)) || (x.ipv6Subnet && netEqual(x.ipv6Subnet, subnet))
    );
    return l ? await this.registry.deleteSubnet(l.key) : false;
  }

  /**
   * Watches every lease but the own one until `opts.signal` aborts: first the snapshot as one `added`
   * batch, then changes as they happen, in batches. A lease whose attributes changed comes as `added`
   * with `previous` set (consumers that treat `added` as an upsert need nothing else, as in flannel);
   * a re-put of the same value (a peer renewing) is not an event.
   *
   * When the watch ends (etcd unreachable, member lost, compaction past our revision) it re-lists and
   * diffs against what it delivered, so removals and changes made meanwhile are delivered too, then
   * watches again from the new revision. Failures back off 100 ms → 5 s.
   */
  async watchLeases(onBatch: (events: LeaseEvent[]) => void, opts: WatchOptions): Promise<void> {
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
    /** An event for `l` against what is known, or undefined when nothing changed. */
    const upsert = (l: Lease): LeaseEvent | undefined => {
      const prev = known.get(l.key);
      known.set(l.key, l);
      if (!prev) return { type: "added", lease: l };
      if (leaseAttrsJSON(prev.attrs) === leaseAttrsJSON(l.attrs)) return undefined;
      return { type: "added", lease: l, previous: prev };
    };
    const backOff = async (why: string) => {
      logger.warn("lease watch: {why}; retrying in {ms} ms", { why, ms: backoff });
      await sleep(backoff, opts.signal);
      backoff = Math.min(backoff * 2, 5000);
    };
    // One listener for the whole watch, not one per reconnect.
    const aborted = new Promise<undefined>((r) => {
      if (opts.signal.aborted) r(undefined);
      opts.signal.addEventListener("abort", () => r(undefined), { once: true });
    });
    while (!opts.signal.aborted) {
      let stop: (() => Promise<void>) | undefined;
      try {
        const { leases, revision } = await this.listLeases();
        // Diff the snapshot against what we already delivered (a re-list after an error).
        const seen = new Set<string>();
        const events: LeaseEvent[] = [];
        for (const l of leases) {
          seen.add(l.key);
          const ev = upsert(l);
          if (ev) events.push(ev);
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
        if (opts.signal.aborted) break;
        const ended = Promise.withResolvers<Error>();
        stop = await this.registry.watchSubnets(revision, (raw) => {
          const batch: LeaseEvent[] = [];
          for (const ev of raw) {
            if (ev.type === "put") {
              const l = toLease(ev.entry);
              const e = l && upsert(l);
              if (e) batch.push(e);
            } else {
              const l = known.get(ev.entry.key);
              if (!l) continue;
              known.delete(l.key);
              batch.push({ type: "removed", lease: l });
            }
          }
          if (batch.length) deliver(batch);
        }, (err) => ended.resolve(err));
        const started = Date.now();
        const err = await Promise.race([ended.promise, aborted]);
        if (!err) break;
        logger.warn("lease watch ended ({error}): re-listing", { error: err.message });
        // A watch that ends at once again and again (a flapping member) must not spin.
        if (Date.now() - started < 1000) await backOff("the watch ended within a second");
        else backoff = 100;
      } catch (err) {
        opts.onConnectivity?.(false);
        await backOff(`listing or watching failed (${(err as Error).message})`);
      } finally {
        await stop?.();
      }
    }
  }
}

/** Sleeps `ms`, or less when `signal` aborts. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
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
  /**
   * Re-acquires when the lease vanished (operator delete, expiry). Usually
   * `(prev) => manager.acquireLease(cfg, attrs, { previousSubnet: prev.subnet, … })`, which takes the
   * same subnet again when it is still free ({@linkcode SubnetManager.keepLease} wires exactly that).
   */
  reacquire: (previous: Lease) => Promise<Lease>;
}

/**
 * Keeps one lease alive: renews it at `expiry − min(margin, TTL/2)` with a fresh TTL, retries failures
 * every TTL/10 (at most 60 s, backing off to TTL/6) so that several tries fit before expiry, and
 * re-acquires when the lease is gone. A reservation (no TTL) is only checked for existence.
 *
 * Call {@linkcode LeaseKeeper.poke} when a watch saw the own lease deleted: the keeper re-acquires at
 * once instead of at the next renewal.
 */
export class LeaseKeeper {
  #lease: Lease;
  #wake = Promise.withResolvers<void>();
  /** Successful renewals. */
  renewals = 0;
  /** Failed renewal attempts (etcd unreachable, …). */
  failures = 0;
  /** Re-acquisitions after the lease was lost. */
  reacquisitions = 0;

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

  async #reacquire(): Promise<void> {
    const prev = this.#lease;
    logger.warn("own lease {key} is gone (deleted or expired): re-acquiring, the same subnet if free", {
      key: prev.key,
    });
    this.#lease = await this.opts.reacquire(prev);
    this.reacquisitions++;
    if (this.#lease.key === prev.key) {
      logger.warn("re-acquired the same subnet {subnet}", { subnet: leaseName(this.#lease) });
    } else {
      logger.warn("re-acquired a different subnet {subnet}: {old} was taken meanwhile", {
        subnet: leaseName(this.#lease),
        old: leaseName(prev),
      });
    }
    this.opts.onLease?.(this.#lease, true);
  }

  /** Runs until `signal` aborts. Never throws: failures are logged and retried. */
  async run(signal: AbortSignal): Promise<void> {
    const ttl = this.opts.ttlSeconds;
    const margin = Math.min(this.opts.renewMarginSeconds, ttl / 2);
    const firstRetry = Math.max(0.2, Math.min(60, ttl / 10));
    let retry = firstRetry;
    while (!signal.aborted) {
      const expires = this.#lease.expiration?.getTime() ?? Date.now() + ttl * 1000;
      const wait = Math.max(0, expires - margin * 1000 - Date.now());
      this.#wake = Promise.withResolvers<void>();
      await Promise.race([sleep(this.#lease.etcdLeaseId ? wait : ttl * 1000, signal), this.#wake.promise]);
      if (signal.aborted) return;
      try {
        if (!this.#lease.etcdLeaseId) {
          // A reservation has no TTL: nothing to renew, only re-acquire when an operator removed it.
          const cur = await this.manager.getLease(this.#lease.key);
          if (!cur || cur.attrs.PublicIP !== this.#lease.attrs.PublicIP) await this.#reacquire();
        } else {
          const renewed = await this.manager.renewLease(this.#lease, ttl);
          if (renewed) {
            this.#lease = renewed;
            this.renewals++;
            logger.debug("renewed lease {key} for {ttl} s", { key: renewed.key, ttl });
            this.opts.onLease?.(renewed, false);
          } else {
            await this.#reacquire();
          }
        }
        retry = firstRetry;
      } catch (err) {
        this.failures++;
        logger.warn("lease renewal failed ({error}); retrying in {s} s", {
          error: (err as Error).message,
          s: retry,
        });
        await Promise.race([sleep(retry * 1000, signal), this.#wake.promise]);
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
  const eq = (x?: IPNet, y?: IPNet) => (!x && !y) || (!!x && !!y && netEqual(x, y));
  return (!!a.subnet || !!a.ipv6Subnet) && eq(a.subnet, b.subnet) && eq(a.ipv6Subnet, b.ipv6Subnet);
}
