/**
 * The subnet manager: flannel's lease algorithm on any {@linkcode Registry} (etcd, memory), and the
 * {@linkcode LeaseSource} the agent uses in etcd mode.
 *
 * `acquireLease`: reuse the lease carrying our PublicIP if it still fits the config, else the subnet
 * from subnet.env if free, else a random one of the first 100 free subnets; atomic create-if-absent
 * with retries; reservations (no TTL) are never taken; "out of subnets" when nothing is free. With
 * EnableIPv6 the same is done for the IPv6 subnet and the key is the dual-stack form. Keeping the lease
 * is keeper.ts, watching the others watch.ts, choosing a subnet allocation.ts.
 *
 * @module
 */
import { type NetworkConfig, parseNetworkConfig } from "../../config/net_conf.ts";
import { log } from "../../log.ts";
import { type IPNet, netEqual } from "../../net/ip.ts";
import {
  freeSubnets,
  leaseFitsConfig,
  outOfSubnets,
  pickSubnet,
  subnetRanges,
  takenSubnets,
} from "./allocation.ts";
import { LeaseKeeper } from "./keeper.ts";
import { type Lease, type LeaseAttrs, leaseAttrsJSON, type LeaseEvent, subnetKey } from "../lease.ts";
import { leaseOf, type Registry, type RegistryEntry } from "./registry.ts";
import { type ReassertOutcome, reassertOwnLease } from "./reassert.ts";
import type { AcquireOptions, KeepOptions, LeaseSource, LeaseWatch, WatchOptions } from "../source.ts";
import { listStoreLeases, watchStoreLeases } from "./watch.ts";

/** Default lease TTL: 24 h, like flannel. */
export const DEFAULT_LEASE_TTL_SECONDS = 24 * 3600;

const logger = log("subnet");

/** Leases of one network on one registry. */
export class SubnetManager implements LeaseSource {
  /** Creates the manager; `kind` names the store in logs and status. */
  constructor(readonly registry: Registry, readonly kind = "etcd") {}

  /** Reads and validates the network config (`<prefix>/config`). */
  async getNetworkConfig(): Promise<NetworkConfig> {
    const text = await this.registry.getConfig();
    if (text === undefined) {
      throw new Error("no network config in etcd: write one with `weft config set FILE`");
    }
    return parseNetworkConfig(text);
  }

  /** The config text: one round trip, which fails when the store is unreachable. */
  async probe(): Promise<string> {
    return await this.registry.getConfig() ?? "";
  }

  /** Every lease and reservation (reservations have no `etcdLeaseId`), with the revision read at. */
  listLeases(): Promise<{ leases: Lease[]; revision: number }> {
    return listStoreLeases(this.registry);
  }

  /** Acquires a lease for `attrs` with flannel's algorithm (see the module comment). */
  async acquireLease(cfg: NetworkConfig, attrs: LeaseAttrs, opts: AcquireOptions = {}): Promise<Lease> {
    const ttl = opts.ttlSeconds ?? DEFAULT_LEASE_TTL_SECONDS;
    const value = leaseAttrsJSON(attrs);
    const attempts = opts.attempts ?? 10;
    const r = subnetRanges(cfg);
    if (!r.v4 && !r.v6) throw new Error("the network config enables no address family");
    const ours = (l: Lease) =>
      (!r.v4 || l.attrs.PublicIP === attrs.PublicIP) &&
      (!r.v6 || (l.attrs.PublicIPv6 ?? null) === (attrs.PublicIPv6 ?? null));
    for (let attempt = 0; attempt < attempts; attempt++) {
      const { entries } = await this.registry.listSubnets();
      const leases = entries.map((e) => ({ lease: leaseOf(e), value: e.value }))
        .filter((l): l is { lease: Lease; value: string } => !!l.lease);
      // 1. A lease (or reservation) already carrying our PublicIP, if it still fits the config.
      const mine = leases.find((l) => ours(l.lease) && leaseFitsConfig(cfg, l.lease));
      if (mine) {
        const reused = await this.#reuse(mine.lease, mine.value, attrs, ttl);
        if (reused) return reused;
        continue; // it changed or expired under us: look again
      }
      // 2. The subnet from subnet.env, if free. 3. Random among the first 100 free ones.
      const all = leases.map((l) => l.lease);
      const subnet = r.v4 ? pickSubnet(r.v4, takenSubnets(all, 4), opts.previousSubnet) : undefined;
      const ipv6Subnet = r.v6 ? pickSubnet(r.v6, takenSubnets(all, 6), opts.previousIPv6Subnet) : undefined;
      const key = subnetKey(subnet, ipv6Subnet);
      const created = await this.registry.createSubnet(key, value, ttl);
      if (created) {
        const previous = opts.previousSubnet && subnet && netEqual(subnet, opts.previousSubnet);
        logger.info("acquired lease {key} for {ip}{how}", {
          key,
          ip: attrs.PublicIP,
          how: previous ? " (the subnet of the previous subnet.env)" : "",
        });
        return leaseOf(created)!;
      }
      logger.debug("subnet {key} was taken concurrently, retrying", { key });
    }
    // Still racing after all attempts: say "out of subnets" when that is what it is.
    const { leases } = await this.listLeases();
    for (const range of [r.v4, r.v6]) {
      if (range && !freeSubnets(range, takenSubnets(leases, range.family), 1).length) {
        throw outOfSubnets(range);
      }
    }
    throw new Error(`could not acquire a subnet after ${attempts} attempts (heavy contention)`);
  }

  /** Takes over our own lease or reservation `lease` (stored as `stored`); undefined when it moved. */
  async #reuse(lease: Lease, stored: string, attrs: LeaseAttrs, ttl: number): Promise<Lease | undefined> {
    const value = leaseAttrsJSON(attrs);
    if (!lease.etcdLeaseId) {
      // A reservation stays a reservation (no TTL), but peers must see our current attributes
      // (the VTEP MAC above all), as flannel does when it takes a reserved subnet.
      if (stored !== value) await this.registry.reserveSubnet(lease.key, value);
      logger.info("using reservation {key} for {ip}", { key: lease.key, ip: attrs.PublicIP });
      return { ...lease, attrs };
    }
    // Compare against the stored bytes: flannel's JSON may differ from ours in spacing or fields.
    const renewed = await this.registry.renewSubnet(lease.key, value, ttl, stored, lease.etcdLeaseId);
    if (!renewed) return undefined;
    logger.info("reusing lease {key} of {ip}", { key: lease.key, ip: attrs.PublicIP });
    return leaseOf(renewed);
  }

  /**
   * A {@linkcode LeaseKeeper} for `lease` that re-acquires with `cfg` and `attrs` (the same subnet when it
   * is still free). Start it with `keeper.run(signal)`.
   */
  keepLease(cfg: NetworkConfig, attrs: LeaseAttrs, lease: Lease, opts: KeepOptions = {}): LeaseKeeper {
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
    return e ? leaseOf(e) : undefined;
  }

  /** Writes the own value back when somebody else's is under the own key (see reassert.ts). */
  reassertLease(lease: Lease, ttlSeconds = DEFAULT_LEASE_TTL_SECONDS): Promise<ReassertOutcome> {
    return reassertOwnLease(this.registry, lease, ttlSeconds);
  }

  /** The lease or reservation stored under `key`, or undefined. */
  async getLease(key: string): Promise<Lease | undefined> {
    const e: RegistryEntry | undefined = await this.registry.getSubnet(key);
    return e ? leaseOf(e) : undefined;
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

  /** Watches every lease but the own one (see watch.ts). */
  watchLeases(onBatch: (events: LeaseEvent[]) => void, opts: WatchOptions): LeaseWatch {
    return watchStoreLeases(this.registry, onBatch, opts);
  }

  /** Closes the registry's connections. */
  close(): Promise<void> {
    return this.registry.close();
  }
}
