/**
 * Subnet leases, wire-compatible with flannel's etcd subnet manager: a weft node and a flanneld node
 * read and write each other's leases.
 *
 * Layout in etcd (prefix default `/coreos.com/network`):
 * - `<prefix>/config`: net-conf.json (see `src/config/net_conf.ts`);
 * - `<prefix>/subnets/10.244.3.0-24` (dual-stack `10.244.3.0-24&fd00:10:244:3::-64`): a lease, valued
 *   `{"PublicIP":"…","PublicIPv6":null,"BackendType":"vxlan","BackendData":{…}}`, attached to an etcd
 *   lease with a TTL; a key without an etcd lease is a permanent reservation, never taken by others.
 *
 * Parts:
 * - {@linkcode SubnetManager}: `getNetworkConfig`, `acquireLease` (flannel's algorithm), `renewLease`,
 *   `keepLease`, `watchLeases`, `listLeases`, `getLease`, `reserve`, `release`, `releaseLease`.
 * - {@linkcode LeaseSource} (source.ts): the seam the agent uses; {@linkcode SubnetManager} is its
 *   registry implementation, the Kubernetes source the other.
 * - {@linkcode LeaseKeeper}: keeps the own lease alive and re-acquires it, the same subnet when free, if
 *   it is lost — flanneld exits instead. Renewal re-grants a fresh TTL (flannel's way) rather than using
 *   etcd keep-alive: a renewal racing an operator's delete fails instead of keeping a keyless lease
 *   alive, and there is no keep-alive stream to leak (`npm:etcd3` keeps it running after `close()`);
 *   see etcd_registry.ts.
 * - Registries: {@linkcode MemoryRegistry} (unit tests) and {@linkcode openEtcdRegistry} (etcd v3 on
 *   `npm:etcd3`, imported only when it is called: importing this module costs no etcd client).
 * - Lease types, keys and JSON (lease.ts), exactly flannel's; etcd options and error explanations.
 *
 * @example
 * ```ts
 * const etcd = { endpoints: ["http://127.0.0.1:2379"], prefix: DEFAULT_ETCD_PREFIX };
 * const registry = await openEtcdRegistry(etcd);
 * const manager = new SubnetManager(registry);
 * const cfg = await manager.getNetworkConfig();
 * const attrs = { PublicIP: "192.168.64.3", BackendType: "vxlan", BackendData: { VNI: 1, VtepMAC: mac } };
 * const lease = await manager.acquireLease(cfg, attrs);
 * const keeper = manager.keepLease(cfg, attrs, lease, { onLease: (l, re) => re && rewire(l) });
 * const stop = new AbortController();
 * keeper.run(stop.signal);
 * manager.watchLeases((batch) => apply(batch), {
 *   signal: stop.signal,
 *   ownKey: () => keeper.lease.key,
 *   onOwn: (ev) => ev.type === "removed" && keeper.poke(), // re-acquire at once
 * });
 * // shutting down: stop.abort(); await registry.close();
 * ```
 *
 * @module
 */
export * from "../lease.ts";
export {
  leaseOf,
  MemoryRegistry,
  type Registry,
  type RegistryEntry,
  type RegistryEvent,
} from "./registry.ts";
export type {
  AcquireOptions,
  KeepOptions,
  LeaseSource,
  LeaseWatch,
  OwnLeaseKeeper,
  WatchOptions,
} from "../source.ts";
export { leaseFitsConfig, OutOfSubnetsError } from "./allocation.ts";
export { type KeeperOptions, LeaseKeeper } from "./keeper.ts";
export { DEFAULT_LEASE_TTL_SECONDS, SubnetManager } from "./manager.ts";
export { DEFAULT_ETCD_PREFIX, EtcdConfigError, type EtcdOptions, explainEtcdError } from "./options.ts";
export type { EtcdRegistry } from "./etcd_registry.ts";

/**
 * Opens the etcd v3 registry, importing `npm:etcd3` on first use. Throws `EtcdConfigError` for unusable
 * options (no endpoints, unreadable TLS files); connection problems surface on the first call — explain
 * them with {@linkcode explainEtcdError}.
 */
export async function openEtcdRegistry(
  opts: import("./options.ts").EtcdOptions,
): Promise<import("./etcd_registry.ts").EtcdRegistry> {
  const mod = await import("./etcd_registry.ts");
  return await mod.openEtcdRegistry(opts);
}

/** The etcd lease source: a {@linkcode SubnetManager} on {@linkcode openEtcdRegistry}. */
export async function openEtcdLeaseSource(
  opts: import("./options.ts").EtcdOptions,
): Promise<import("./manager.ts").SubnetManager> {
  const { SubnetManager } = await import("./manager.ts");
  return new SubnetManager(await openEtcdRegistry(opts), "etcd");
}
