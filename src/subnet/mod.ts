/**
 * Subnet leases, wire-compatible with flannel's etcd subnet manager.
 *
 * - {@linkcode SubnetManager} (manager.ts): acquire, renew, reserve, release, watch.
 * - {@linkcode LeaseKeeper}: keeps the own lease alive and re-acquires it when it is lost.
 * - Registries: {@linkcode MemoryRegistry} for tests, `openEtcdRegistry()` for etcd v3 (etcd3 is
 *   imported only when it is called).
 * - Lease types, keys and JSON (lease.ts), exactly flannel's.
 *
 * @module
 */
export * from "./lease.ts";
export { MemoryRegistry, type Registry, type RegistryEntry, type RegistryEvent } from "./registry.ts";
export {
  type AcquireOptions,
  DEFAULT_LEASE_TTL_SECONDS,
  type KeeperOptions,
  LeaseKeeper,
  OutOfSubnetsError,
  sameSubnets,
  sleep,
  SubnetManager,
} from "./manager.ts";
export type { EtcdOptions } from "./etcd_registry.ts";

/** Opens an etcd registry, importing the etcd client on first use. */
export async function openEtcdRegistry(
  opts: import("./etcd_registry.ts").EtcdOptions,
): Promise<import("./etcd_registry.ts").EtcdRegistry> {
  const mod = await import("./etcd_registry.ts");
  return await mod.openEtcdRegistry(opts);
}
