import assert from "node:assert/strict";
import { parseNet } from "../../net/ip.ts";
import { type Lease, type LeaseAttrs, leaseAttrsJSON } from "../lease.ts";
import { describeValue, reassertOwnLease } from "./reassert.ts";
import { SubnetManager } from "./manager.ts";
import { parseNetworkConfig } from "../../config/net_conf.ts";
import { sleep } from "../../async.ts";
import { MemoryRegistry, type RegistryEntry } from "./registry.ts";

const OURS: LeaseAttrs = {
  PublicIP: "192.168.77.11",
  PublicIPv6: null,
  BackendType: "vxlan",
  BackendData: { VNI: 1, VtepMAC: "02:00:00:00:00:11" },
};
const THEIRS: LeaseAttrs = {
  ...OURS,
  PublicIP: "192.168.77.66",
  BackendData: { VNI: 1, VtepMAC: "02:66:66:66:66:66" },
};

async function acquired(reg: MemoryRegistry, key = "10.244.7.0-24"): Promise<Lease> {
  const e = (await reg.createSubnet(key, leaseAttrsJSON(OURS), 3600))!;
  return {
    key,
    subnet: parseNet("10.244.7.0/24"),
    attrs: OURS,
    etcdLeaseId: e.leaseId!,
    expiration: e.expiration!,
    createOrder: e.createRevision!,
  };
}

Deno.test("reassertOwnLease() leaves an intact lease alone (also when stored with other spacing)", async () => {
  const reg = new MemoryRegistry();
  const own = await acquired(reg);
  assert.deepEqual(await reassertOwnLease(reg, own, 3600), { outcome: "intact" });
  // flanneld's JSON may differ in spacing: the attributes are compared, not the bytes.
  await reg.renewSubnet(own.key, JSON.stringify(OURS, null, 1), 3600, leaseAttrsJSON(OURS));
  assert.deepEqual(await reassertOwnLease(reg, own, 3600), { outcome: "intact" });
});

Deno.test("reassertOwnLease() writes the own value back over another PublicIP, same key, fresh TTL", async () => {
  const reg = new MemoryRegistry();
  const own = await acquired(reg);
  await reg.reserveSubnet(own.key, leaseAttrsJSON(THEIRS)); // etcdctl put without a lease
  const r = await reassertOwnLease(reg, own, 3600);
  assert.equal(r.outcome, "reasserted");
  if (r.outcome !== "reasserted") return;
  assert.match(r.overwritten, /PublicIP "192\.168\.77\.66", VtepMAC "02:66:66:66:66:66"/);
  assert.equal(r.lease.key, own.key);
  assert.ok(r.lease.etcdLeaseId, "attached to a store lease again");
  assert.notEqual(r.lease.etcdLeaseId, own.etcdLeaseId);
  const stored = (await reg.getSubnet(own.key))!;
  assert.equal(stored.value, leaseAttrsJSON(OURS));
  assert.ok(stored.expiration, "has a TTL again");
  assert.deepEqual(await reassertOwnLease(reg, r.lease, 3600), { outcome: "intact" });
});

Deno.test("reassertOwnLease() also defends against garbage and a changed VtepMAC under the own key", async () => {
  for (
    const value of [
      "garbage",
      leaseAttrsJSON({ ...OURS, BackendData: { VNI: 1, VtepMAC: "02:99:99:99:99:99" } }),
    ]
  ) {
    const reg = new MemoryRegistry();
    const own = await acquired(reg);
    await reg.reserveSubnet(own.key, value);
    const r = await reassertOwnLease(reg, own, 3600);
    assert.equal(r.outcome, "reasserted", value);
    assert.equal((await reg.getSubnet(own.key))!.value, leaseAttrsJSON(OURS));
  }
});

Deno.test("reassertOwnLease() keeps a reservation a reservation", async () => {
  const reg = new MemoryRegistry();
  await reg.reserveSubnet("10.244.7.0-24", leaseAttrsJSON(OURS));
  const own: Lease = { key: "10.244.7.0-24", subnet: parseNet("10.244.7.0/24"), attrs: OURS };
  await reg.reserveSubnet(own.key, leaseAttrsJSON(THEIRS));
  const r = await reassertOwnLease(reg, own, 3600);
  assert.equal(r.outcome, "reasserted");
  const stored = (await reg.getSubnet(own.key))!;
  assert.equal(stored.value, leaseAttrsJSON(OURS));
  assert.equal(stored.expiration, undefined, "still no TTL");
});

Deno.test("reassertOwnLease() does not recreate a deleted key: that is the keeper's re-acquisition", async () => {
  const reg = new MemoryRegistry();
  const own = await acquired(reg);
  await reg.deleteSubnet(own.key);
  assert.deepEqual(await reassertOwnLease(reg, own, 3600), { outcome: "gone" });
  assert.equal(await reg.getSubnet(own.key), undefined);
});

Deno.test("reassertOwnLease() leaves a key deleted and created anew by another node to it (a new owner)", async () => {
  const reg = new MemoryRegistry();
  const own = {
    ...(await acquired(reg)),
    createOrder: (await reg.getSubnet("10.244.7.0-24"))!.createRevision!,
  };
  await reg.deleteSubnet(own.key);
  await reg.createSubnet(own.key, leaseAttrsJSON(THEIRS), 3600);
  assert.deepEqual(await reassertOwnLease(reg, own, 3600), { outcome: "gone" });
  assert.equal((await reg.getSubnet(own.key))!.value, leaseAttrsJSON(THEIRS));
});

Deno.test("reassertOwnLease() re-reads when the value changes between its read and its write", async () => {
  const reg = new MemoryRegistry();
  const own = await acquired(reg);
  await reg.reserveSubnet(own.key, leaseAttrsJSON(THEIRS));
  // The first compare-and-put finds yet another value (a racing writer); the second succeeds.
  let raced = false;
  const racing = Object.assign(Object.create(reg) as MemoryRegistry, {
    getSubnet: (k: string) => reg.getSubnet(k),
    reserveSubnet: (k: string, v: string) => reg.reserveSubnet(k, v),
    async renewSubnet(k: string, v: string, ttl: number, expect: string | undefined, old?: string) {
      if (!raced) {
        raced = true;
        await reg.reserveSubnet(k, leaseAttrsJSON({ ...THEIRS, PublicIP: "192.168.77.67" }));
      }
      return await reg.renewSubnet(k, v, ttl, expect, old) as RegistryEntry | undefined;
    },
  });
  const r = await reassertOwnLease(racing, own, 3600);
  assert.equal(r.outcome, "reasserted");
  if (r.outcome === "reasserted") assert.match(r.overwritten, /192\.168\.77\.67/);
  assert.equal((await reg.getSubnet(own.key))!.value, leaseAttrsJSON(OURS));
});

Deno.test("describeValue() names the writer briefly and escapes what it quotes", () => {
  assert.equal(describeValue("x\ny"), 'value "x\\ny"');
  assert.match(describeValue(leaseAttrsJSON(THEIRS)), /^PublicIP "192\.168\.77\.66", VtepMAC "02:66/);
});

Deno.test("LeaseKeeper, poked after its key was overwritten, writes the own value back: same subnet, counted", async () => {
  const reg = new MemoryRegistry();
  const m = new SubnetManager(reg);
  const cfg = parseNetworkConfig(JSON.stringify({ Network: "10.244.0.0/16" }));
  const lease = await m.acquireLease(cfg, OURS, { ttlSeconds: 60 });
  const keeper = m.keepLease(cfg, OURS, lease, { ttlSeconds: 60, renewMarginSeconds: 10 });
  const stop = new AbortController();
  const run = keeper.run(stop.signal);
  try {
    for (const hijack of [leaseAttrsJSON(THEIRS), "garbage"]) {
      await reg.reserveSubnet(lease.key, hijack);
      keeper.poke();
      const before = keeper.reasserted;
      const end = Date.now() + 30_000;
      while (keeper.reasserted === before && Date.now() < end) await sleep(5);
      assert.equal(keeper.reasserted, before + 1, hijack);
      assert.equal(keeper.reacquisitions, 0);
      assert.equal(keeper.lease.key, lease.key, "the same subnet");
      assert.equal((await reg.getSubnet(lease.key))!.value, leaseAttrsJSON(OURS));
    }
  } finally {
    stop.abort();
    await run;
  }
});
