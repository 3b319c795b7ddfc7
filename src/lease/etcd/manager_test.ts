import assert from "node:assert/strict";
import { parseNetworkConfig } from "../../config/net_conf.ts";
import { formatNet, parseNet } from "../../net/ip.ts";
import { type Lease, type LeaseAttrs, leaseAttrsJSON, type LeaseEvent, subnetKey } from "../lease.ts";
import { sleep } from "../../async.ts";
import { OutOfSubnetsError } from "./allocation.ts";
import { SubnetManager } from "./manager.ts";
import { MemoryRegistry, type Registry, type RegistryEntry, type RegistryEvent } from "./registry.ts";

const attrs = (ip: string, mac = "0a:00:00:00:00:01"): LeaseAttrs => ({
  PublicIP: ip,
  PublicIPv6: null,
  BackendType: "vxlan",
  BackendData: { VNI: 1, VtepMAC: mac },
});

async function until(what: string, ms: number, ok: () => boolean): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await sleep(5);
  }
}

/** A registry that forwards to a MemoryRegistry, with failures and gates tests switch on. */
class TestRegistry implements Registry {
  /** Calls of listSubnets that fail before one succeeds. */
  failLists = 0;
  /** Calls of renewSubnet that fail. */
  failRenews = 0;
  /** Calls of createSubnet that lose a race: someone else creates the key just before. */
  loseCreates = 0;
  /** When set, watchSubnets waits for it (the watch starts late, from an old revision). */
  watchGate: Promise<void> | undefined;
  lists = 0;
  constructor(readonly mem = new MemoryRegistry()) {}
  getConfig() {
    return this.mem.getConfig();
  }
  setConfig(t: string) {
    return this.mem.setConfig(t);
  }
  listSubnets() {
    this.lists++;
    if (this.failLists > 0) {
      this.failLists--;
      return Promise.reject(new Error("etcd unreachable (test)"));
    }
    return this.mem.listSubnets();
  }
  getSubnet(key: string) {
    return this.mem.getSubnet(key);
  }
  async createSubnet(key: string, value: string, ttl: number): Promise<RegistryEntry | undefined> {
    if (this.loseCreates > 0) {
      this.loseCreates--;
      await this.mem.createSubnet(key, leaseAttrsJSON(attrs("10.99.99.99")), ttl);
    }
    return this.mem.createSubnet(key, value, ttl);
  }
  renewSubnet(key: string, value: string, ttl: number, expect: string | undefined, old?: string) {
    if (this.failRenews > 0) {
      this.failRenews--;
      return Promise.reject(new Error("etcd unreachable (test)"));
    }
    return this.mem.renewSubnet(key, value, ttl, expect, old);
  }
  reserveSubnet(key: string, value: string) {
    return this.mem.reserveSubnet(key, value);
  }
  deleteSubnet(key: string) {
    return this.mem.deleteSubnet(key);
  }
  async watchSubnets(
    rev: number,
    on: (e: RegistryEvent[], r: number) => void,
    reset: (e: Error) => void,
  ): Promise<() => Promise<void>> {
    if (this.watchGate) await this.watchGate;
    return this.mem.watchSubnets(rev, on, reset);
  }
  close() {
    return this.mem.close();
  }
}

const CFG = parseNetworkConfig({ Network: "10.244.0.0/16", Backend: { Type: "vxlan" } });

Deno.test("acquireLease() hands out a SubnetLen subnet between SubnetMin and SubnetMax, never the first", async () => {
  const cfg = parseNetworkConfig({ Network: "10.5.0.0/20", SubnetLen: 26, SubnetMax: "10.5.14.192" });
  const m = new SubnetManager(new MemoryRegistry());
  const seen = new Set<string>();
  for (let i = 0; i < 20; i++) {
    const l = await m.acquireLease(cfg, attrs(`192.168.0.${i + 1}`), { ttlSeconds: 60 });
    assert.equal(l.subnet!.prefix, 26);
    assert.ok(l.subnet!.ip.value >= cfg.subnetMin!.ip.value && l.subnet!.ip.value <= cfg.subnetMax!.ip.value);
    assert.notEqual(formatNet(l.subnet!), "10.5.0.0/26");
    assert.ok(l.etcdLeaseId, "a lease has a TTL");
    assert.ok(!seen.has(l.key), `duplicate ${l.key}`);
    seen.add(l.key);
  }
});

Deno.test("acquireLease() picks at random among the first 100 free subnets", async () => {
  const picks = new Set<string>();
  for (let i = 0; i < 40; i++) {
    const m = new SubnetManager(new MemoryRegistry());
    const l = await m.acquireLease(CFG, attrs("192.168.0.1"));
    const third = Number(formatNet(l.subnet!).split(".")[2]);
    assert.ok(third >= 1 && third <= 100, `${formatNet(l.subnet!)} is among the first 100 after SubnetMin`);
    picks.add(l.key);
  }
  assert.ok(picks.size > 5, `40 fresh acquisitions gave ${picks.size} different subnets`);
});

Deno.test("acquireLease() reuses the lease carrying our PublicIP and publishes our new attributes", async () => {
  const reg = new MemoryRegistry();
  const m = new SubnetManager(reg);
  const first = await m.acquireLease(CFG, attrs("192.168.0.7", "0a:00:00:00:00:01"), { ttlSeconds: 60 });
  const again = await m.acquireLease(CFG, attrs("192.168.0.7", "0a:00:00:00:00:02"), { ttlSeconds: 60 });
  assert.equal(again.key, first.key);
  assert.notEqual(again.etcdLeaseId, first.etcdLeaseId, "a fresh TTL");
  const stored = await reg.getSubnet(first.key);
  assert.equal(stored?.value, leaseAttrsJSON(attrs("192.168.0.7", "0a:00:00:00:00:02")));
  assert.equal((await m.listLeases()).leases.length, 1);
});

Deno.test("acquireLease() reuses a lease flanneld wrote with other spacing (compares the stored bytes)", async () => {
  const reg = new MemoryRegistry();
  const flannelish = '{ "PublicIP": "192.168.0.9", "BackendType": "vxlan", "BackendData": {"VNI": 1} }';
  await reg.createSubnet("10.244.77.0-24", flannelish, 60);
  const l = await new SubnetManager(reg).acquireLease(CFG, attrs("192.168.0.9"), { attempts: 2 });
  assert.equal(l.key, "10.244.77.0-24");
});

Deno.test("acquireLease() does not reuse a lease of ours that no longer fits the config", async () => {
  const reg = new MemoryRegistry();
  const m = new SubnetManager(reg);
  const old = await m.acquireLease(CFG, attrs("192.168.0.7"));
  const cfg25 = parseNetworkConfig({ Network: "10.244.0.0/16", SubnetLen: 25 });
  const l = await m.acquireLease(cfg25, attrs("192.168.0.7"));
  assert.notEqual(l.key, old.key);
  assert.equal(l.subnet!.prefix, 25);
});

Deno.test("acquireLease() takes the subnet of the previous subnet.env when free, else another", async () => {
  const reg = new MemoryRegistry();
  const m = new SubnetManager(reg);
  const prev = parseNet("10.244.42.0/24");
  const l = await m.acquireLease(CFG, attrs("192.168.0.1"), { previousSubnet: prev });
  assert.equal(formatNet(l.subnet!), "10.244.42.0/24");
  const other = await m.acquireLease(CFG, attrs("192.168.0.2"), { previousSubnet: prev });
  assert.notEqual(formatNet(other.subnet!), "10.244.42.0/24", "taken: not given twice");
  const outside = await m.acquireLease(CFG, attrs("192.168.0.3"), {
    previousSubnet: parseNet("10.9.0.0/24"),
  });
  assert.ok(formatNet(outside.subnet!).startsWith("10.244."), "a previous subnet outside Network is ignored");
});

Deno.test("acquireLease() never takes a reservation and says out of subnets when all are taken", async () => {
  const cfg = parseNetworkConfig({ Network: "10.5.0.0/20", SubnetLen: 24 });
  const reg = new MemoryRegistry();
  const m = new SubnetManager(reg);
  for (let i = 1; i <= 14; i++) await m.reserve(parseNet(`10.5.${i}.0/24`), attrs(`172.16.0.${i}`));
  const l = await m.acquireLease(cfg, attrs("192.168.0.1"), { previousSubnet: parseNet("10.5.3.0/24") });
  assert.equal(
    formatNet(l.subnet!),
    "10.5.15.0/24",
    "the only subnet left; the reserved previous one is not taken",
  );
  await assert.rejects(
    () => m.acquireLease(cfg, attrs("192.168.0.2")),
    (e: unknown) => {
      assert.ok(e instanceof OutOfSubnetsError);
      assert.match(
        e.message,
        /^out of subnets: every subnet of 10\.5\.0\.0\/20 between SubnetMin 10\.5\.1\.0/,
      );
      return true;
    },
  );
});

Deno.test("acquireLease() uses a reservation made for our PublicIP and keeps it a reservation", async () => {
  const reg = new MemoryRegistry();
  const m = new SubnetManager(reg);
  await m.reserve(parseNet("10.244.200.0/24"), { PublicIP: "192.168.0.5", BackendType: "vxlan" });
  const l = await m.acquireLease(CFG, attrs("192.168.0.5"));
  assert.equal(l.key, "10.244.200.0-24");
  assert.equal(l.etcdLeaseId, undefined);
  const stored = await reg.getSubnet(l.key);
  assert.equal(stored?.expiration, undefined, "still no TTL");
  assert.equal(stored?.value, leaseAttrsJSON(attrs("192.168.0.5")), "our VTEP MAC is published in it");
});

Deno.test("acquireLease() retries when it loses the create race, and reports heavy contention after its attempts", async () => {
  const reg = new TestRegistry();
  const m = new SubnetManager(reg);
  reg.loseCreates = 3;
  const l = await m.acquireLease(CFG, attrs("192.168.0.1"));
  assert.equal(reg.loseCreates, 0);
  assert.equal((await m.listLeases()).leases.length, 4, "three lost races, then ours");
  assert.equal(
    (await m.listLeases()).leases.filter((x) => x.attrs.PublicIP === "192.168.0.1")[0]?.key,
    l.key,
  );
  reg.loseCreates = 5;
  await assert.rejects(
    () => m.acquireLease(CFG, attrs("192.168.0.2"), { attempts: 5 }),
    /could not acquire a subnet after 5 attempts/,
  );
});

Deno.test("acquireLease() with EnableIPv6 leases both families under the dual-stack key", async () => {
  const cfg = parseNetworkConfig({
    Network: "10.244.0.0/16",
    EnableIPv6: true,
    IPv6Network: "fd00:10:244::/56",
  });
  const reg = new MemoryRegistry();
  const m = new SubnetManager(reg);
  const a = { ...attrs("192.168.0.1"), PublicIPv6: "fd00::1" };
  const l = await m.acquireLease(cfg, a, {
    previousSubnet: parseNet("10.244.3.0/24"),
    previousIPv6Subnet: parseNet("fd00:10:244:3::/64"),
  });
  assert.equal(l.key, "10.244.3.0-24&fd00:10:244:3::-64");
  const again = await m.acquireLease(cfg, a);
  assert.equal(again.key, l.key, "reused by PublicIP and PublicIPv6");
  const other = await m.acquireLease(cfg, { ...attrs("192.168.0.2"), PublicIPv6: "fd00::2" });
  assert.ok(other.subnet && other.ipv6Subnet);
  assert.notEqual(formatNet(other.ipv6Subnet), "fd00:10:244:3::/64");
  const v6only = parseNetworkConfig({ EnableIPv4: false, EnableIPv6: true, IPv6Network: "fd00:10:244::/62" });
  const m6 = new SubnetManager(new MemoryRegistry());
  const six = await m6.acquireLease(v6only, { ...attrs("0.0.0.0"), PublicIPv6: "fd00::9" });
  assert.equal(six.subnet, undefined);
  assert.match(six.key, /^fd00:10:244:[123]::-64$/);
  for (let i = 0; i < 2; i++) {
    await m6.acquireLease(v6only, { ...attrs("0.0.0.0"), PublicIPv6: `fd00::a${i}` });
  }
  await assert.rejects(
    () => m6.acquireLease(v6only, { ...attrs("0.0.0.0"), PublicIPv6: "fd00::b" }),
    /out of subnets: every subnet of fd00:10:244::\/62 between IPv6SubnetMin/,
  );
});

Deno.test("release() deletes a lease by subnet, by key, and finds a dual-stack key from its IPv4 subnet", async () => {
  const reg = new MemoryRegistry();
  const m = new SubnetManager(reg);
  await m.reserve(parseNet("10.244.5.0/24"), attrs("1.1.1.1"), parseNet("fd00::/64"));
  await m.reserve(parseNet("10.244.6.0/24"), attrs("1.1.1.2"));
  assert.equal(await m.release(parseNet("10.244.5.0/24")), true);
  assert.equal(await m.release("10.244.6.0-24"), true);
  assert.equal(await m.release(parseNet("10.244.6.0/24")), false);
  assert.equal((await m.listLeases()).leases.length, 0);
});

Deno.test("LeaseKeeper renews a 2 s lease before every expiry", async () => {
  const reg = new MemoryRegistry();
  const m = new SubnetManager(reg);
  const lease = await m.acquireLease(CFG, attrs("192.168.0.1"), { ttlSeconds: 2 });
  const keeper = m.keepLease(CFG, attrs("192.168.0.1"), lease, { ttlSeconds: 2, renewMarginSeconds: 3600 });
  const stop = new AbortController();
  const t0 = Date.now();
  const run = keeper.run(stop.signal);
  // Three renewals, however long a loaded machine takes for them (not: so many in a fixed time).
  await until("three renewals", 30_000, () => keeper.renewals >= 3);
  const ms = Date.now() - t0;
  stop.abort();
  await run;
  // Margin capped at half the TTL: a renewal every second, never sooner.
  assert.ok(ms >= 2900, `three renewals after ${ms} ms`);
  assert.equal(keeper.reacquisitions, 0, "never lapsed (a lapsed lease is re-acquired, not renewed)");
  assert.ok(await reg.getSubnet(lease.key), "never expired");
});

Deno.test("LeaseKeeper retries a failed renewal quickly enough to keep the lease", async () => {
  const reg = new TestRegistry();
  const m = new SubnetManager(reg);
  const lease = await m.acquireLease(CFG, attrs("192.168.0.1"), { ttlSeconds: 2 });
  reg.failRenews = 3;
  const keeper = m.keepLease(CFG, attrs("192.168.0.1"), lease, { ttlSeconds: 2, renewMarginSeconds: 1 });
  const stop = new AbortController();
  const run = keeper.run(stop.signal);
  await until("a renewal after three failures", 10_000, () => keeper.renewals >= 1);
  stop.abort();
  await run;
  assert.equal(keeper.failures, 3);
  assert.equal(keeper.reacquisitions, 0, "the retries landed before the lease expired");
  assert.equal(keeper.lease.key, lease.key);
});

Deno.test("LeaseKeeper re-acquires the same subnet when an operator deleted the lease, or another when it was taken", async () => {
  const reg = new MemoryRegistry();
  const m = new SubnetManager(reg);
  const lease = await m.acquireLease(CFG, attrs("192.168.0.1"), { ttlSeconds: 60 });
  const got: [Lease, boolean][] = [];
  const keeper = m.keepLease(CFG, attrs("192.168.0.1"), lease, {
    ttlSeconds: 60,
    renewMarginSeconds: 10,
    onLease: (l, re) => got.push([l, re]),
  });
  const stop = new AbortController();
  const run = keeper.run(stop.signal);
  await m.release(lease.key);
  keeper.poke();
  await until("re-acquired", 10_000, () => keeper.reacquisitions === 1);
  assert.equal(keeper.lease.key, lease.key, "the same subnet, it was still free");
  assert.deepEqual(got.map(([l, re]) => [l.key, re]), [[lease.key, true]]);
  // Deleted and taken by another node before we notice: another subnet.
  await m.release(lease.key);
  await reg.createSubnet(lease.key, leaseAttrsJSON(attrs("192.168.0.99")), 60);
  keeper.poke();
  await until("re-acquired again", 10_000, () => keeper.reacquisitions === 2);
  assert.notEqual(keeper.lease.key, lease.key);
  stop.abort();
  await run;
});

Deno.test("LeaseKeeper re-acquires when the reservation it holds is removed", async () => {
  const reg = new MemoryRegistry();
  const m = new SubnetManager(reg);
  await m.reserve(parseNet("10.244.9.0/24"), attrs("192.168.0.1"));
  const lease = await m.acquireLease(CFG, attrs("192.168.0.1"));
  assert.equal(lease.etcdLeaseId, undefined);
  const keeper = m.keepLease(CFG, attrs("192.168.0.1"), lease, { ttlSeconds: 60 });
  // The keeper checks a reservation by reading it: count the reads to know the check ran.
  let reads = 0;
  const get = reg.getSubnet.bind(reg);
  reg.getSubnet = (key: string) => (reads++, get(key));
  const stop = new AbortController();
  const run = keeper.run(stop.signal);
  keeper.poke();
  await until("the keeper checked the reservation", 10_000, () => reads > 0);
  await sleep(0); // the in-memory read resolved: the check ran to its end
  assert.equal(keeper.reacquisitions, 0, "a reservation still there is left alone");
  await m.release(lease.key);
  keeper.poke();
  await until("re-acquired", 10_000, () => keeper.reacquisitions === 1);
  assert.equal(keeper.lease.key, "10.244.9.0-24", "the same subnet, now as a lease with a TTL");
  assert.ok(keeper.lease.etcdLeaseId);
  stop.abort();
  await run;
});

Deno.test("watchLeases() delivers the snapshot, then added, changed (with previous) and removed; own lease to onOwn", async () => {
  const reg = new MemoryRegistry();
  const m = new SubnetManager(reg);
  const own = await m.acquireLease(CFG, attrs("192.168.0.1"), { ttlSeconds: 60 });
  await reg.createSubnet("10.244.100.0-24", leaseAttrsJSON(attrs("10.0.0.1")), 60);
  const batches: LeaseEvent[][] = [];
  const ownEvents: LeaseEvent[] = [];
  let syncs = 0;
  const stop = new AbortController();
  const watching = m.watchLeases((b) => batches.push(b), {
    signal: stop.signal,
    ownKey: () => own.key,
    onOwn: (e) => ownEvents.push(e),
    onSync: () => syncs++,
  });
  await until("snapshot", 10_000, () => syncs === 1);
  assert.deepEqual(batches.map((b) => b.map((e) => [e.type, e.lease.key])), [[["added", "10.244.100.0-24"]]]);
  await reg.createSubnet("10.244.101.0-24", leaseAttrsJSON(attrs("10.0.0.2")), 60);
  // A peer renewing (same value, new TTL) is no event; a new VTEP MAC is a change.
  await reg.renewSubnet(
    "10.244.100.0-24",
    leaseAttrsJSON(attrs("10.0.0.1")),
    60,
    leaseAttrsJSON(attrs("10.0.0.1")),
  );
  const changed = attrs("10.0.0.1", "0a:00:00:00:00:99");
  await reg.renewSubnet("10.244.100.0-24", leaseAttrsJSON(changed), 60, leaseAttrsJSON(attrs("10.0.0.1")));
  await reg.deleteSubnet("10.244.101.0-24");
  await reg.deleteSubnet(own.key);
  await until("changes", 10_000, () => batches.length === 4 && ownEvents.length === 2);
  const flat = batches.slice(1).map((b) => b.map((e) => [e.type, e.lease.key, !!e.previous]));
  assert.deepEqual(flat, [
    [["added", "10.244.101.0-24", false]],
    [["added", "10.244.100.0-24", true]],
    [["removed", "10.244.101.0-24", false]],
  ]);
  assert.deepEqual(batches[2]![0]!.lease.attrs, changed);
  assert.deepEqual(ownEvents.map((e) => e.type), ["added", "removed"], "own lease: snapshot, then deletion");
  stop.abort();
  await watching;
  assert.equal(reg.watchCount, 0, "the watch is stopped");
});

Deno.test("watchLeases() re-lists after a lost watch and delivers what changed meanwhile", async () => {
  const reg = new TestRegistry();
  const m = new SubnetManager(reg);
  await reg.mem.createSubnet("10.244.1.0-24", leaseAttrsJSON(attrs("10.0.0.1")), 60);
  await reg.mem.createSubnet("10.244.2.0-24", leaseAttrsJSON(attrs("10.0.0.2")), 60);
  const state = new Map<string, string>();
  const stop = new AbortController();
  const watching = m.watchLeases((b) => b.forEach((e) => state.set(e.lease.key, e.type)), {
    signal: stop.signal,
  });
  await until("snapshot", 10_000, () => state.size === 2);
  // The stream drops; etcd is unreachable for two tries; meanwhile one lease goes and one comes.
  let release!: () => void;
  reg.watchGate = new Promise((r) => release = r);
  reg.failLists = 2;
  reg.mem.resetWatches(new Error("stream lost"));
  await reg.mem.deleteSubnet("10.244.1.0-24");
  await reg.mem.createSubnet("10.244.3.0-24", leaseAttrsJSON(attrs("10.0.0.3")), 60);
  await until(
    "re-listed",
    10_000,
    () => state.get("10.244.1.0-24") === "removed" && state.has("10.244.3.0-24"),
  );
  // Changes between the re-list and the new watch come from the watch (it starts at the list's revision).
  await reg.mem.createSubnet("10.244.4.0-24", leaseAttrsJSON(attrs("10.0.0.4")), 60);
  reg.watchGate = undefined;
  release();
  await until("the put made before the watch started", 10_000, () => state.get("10.244.4.0-24") === "added");
  assert.equal(reg.lists, 4, "the first list, two failures, the re-list");
  stop.abort();
  await watching;
});

Deno.test("watchLeases() re-lists and converges when the watch revision was compacted", async () => {
  const reg = new TestRegistry();
  const m = new SubnetManager(reg);
  await reg.mem.createSubnet("10.244.1.0-24", leaseAttrsJSON(attrs("10.0.0.1")), 60);
  const state = new Map<string, string>();
  let release!: () => void;
  reg.watchGate = new Promise((r) => release = r);
  const stop = new AbortController();
  const watching = m.watchLeases((b) => b.forEach((e) => state.set(e.lease.key, e.type)), {
    signal: stop.signal,
  });
  await until("snapshot", 10_000, () => state.size === 1);
  await reg.mem.deleteSubnet("10.244.1.0-24");
  await reg.mem.createSubnet("10.244.2.0-24", leaseAttrsJSON(attrs("10.0.0.2")), 60);
  reg.mem.compact();
  reg.watchGate = undefined;
  release();
  await until(
    "converged",
    10_000,
    () => state.get("10.244.1.0-24") === "removed" && state.has("10.244.2.0-24"),
  );
  assert.equal(reg.lists, 2);
  stop.abort();
  await watching;
});

Deno.test("watchLeases() reports etcd down and back through onConnectivity", async () => {
  const reg = new TestRegistry();
  reg.failLists = 3;
  const m = new SubnetManager(reg);
  const ups: boolean[] = [];
  const stop = new AbortController();
  const watching = m.watchLeases(() => {}, { signal: stop.signal, onConnectivity: (u) => ups.push(u) });
  await until("up", 30_000, () => ups.at(-1) === true);
  // One list after each failure (the back-off between them, jittered, is src/async.ts's, tested there).
  assert.equal(reg.lists, 4);
  assert.deepEqual(ups, [false, false, false, true]);
  stop.abort();
  await watching;
});

Deno.test("subnetKey() of an acquired lease is its registry key", async () => {
  const m = new SubnetManager(new MemoryRegistry());
  const l = await m.acquireLease(CFG, attrs("192.168.0.1"));
  assert.equal(subnetKey(l.subnet), l.key);
});

Deno.test("releaseLease() deletes the own lease, but not a subnet someone else holds by now", async () => {
  const reg = new MemoryRegistry();
  const m = new SubnetManager(reg);
  const lease = await m.acquireLease(CFG, attrs("192.168.0.1"));
  assert.equal(await m.releaseLease(lease), true);
  assert.equal(await reg.getSubnet(lease.key), undefined);
  assert.equal(await m.releaseLease(lease), false, "already gone");
  await reg.createSubnet(lease.key, leaseAttrsJSON(attrs("192.168.0.2")), 60);
  assert.equal(await m.releaseLease(lease), false);
  assert.ok(await reg.getSubnet(lease.key), "the other node's lease stays");
});
