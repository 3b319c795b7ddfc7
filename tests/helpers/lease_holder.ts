/**
 * A process that holds one lease, for tests that must kill a real lease keeper (SIGKILL).
 *
 * Env: `ETCD` (endpoints, comma-separated), `PREFIX`, `TTL` (seconds), `PUBLIC_IP`. The network
 * config must be in etcd. Prints one JSON line `{"key":…,"leaseId":…}` once the lease is acquired, then
 * keeps it (renewing at TTL/2) until killed.
 *
 * @module
 */
import { LeaseKeeper, openEtcdRegistry, SubnetManager } from "../../src/lease/etcd/mod.ts";

const ttl = Number(Deno.env.get("TTL") ?? "2");
const reg = await openEtcdRegistry({
  endpoints: Deno.env.get("ETCD")!.split(","),
  prefix: Deno.env.get("PREFIX") ?? "/coreos.com/network",
  timeoutMs: 2000,
});
const m = new SubnetManager(reg);
const cfg = await m.getNetworkConfig();
const attrs = {
  PublicIP: Deno.env.get("PUBLIC_IP") ?? "192.168.1.1",
  PublicIPv6: null,
  BackendType: "vxlan",
  BackendData: { VNI: 1, VtepMAC: "0a:00:00:00:00:01" },
};
const lease = await m.acquireLease(cfg, attrs, { ttlSeconds: ttl });
console.log(JSON.stringify({ key: lease.key, leaseId: lease.etcdLeaseId }));
const keeper: LeaseKeeper = m.keepLease(cfg, attrs, lease, { ttlSeconds: ttl, renewMarginSeconds: ttl });
await keeper.run(new AbortController().signal);
