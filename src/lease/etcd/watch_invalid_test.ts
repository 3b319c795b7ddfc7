import assert from "node:assert/strict";
import { sleep } from "../../async.ts";
import { leaseAttrsJSON, type LeaseEvent } from "../lease.ts";
import { MemoryRegistry } from "./registry.ts";
import type { LeaseRejection } from "../validate.ts";
import { watchStoreLeases } from "./watch.ts";

const VALUE = leaseAttrsJSON({
  PublicIP: "192.168.77.12",
  PublicIPv6: null,
  BackendType: "vxlan",
  BackendData: { VNI: 1, VtepMAC: "02:00:00:00:00:12" },
});

async function until(what: string, ok: () => boolean): Promise<void> {
  const end = Date.now() + 30_000;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await sleep(5);
  }
}

Deno.test("the lease watch reports entries that do not parse, once per value, and when they go", async () => {
  const reg = new MemoryRegistry();
  await reg.reserveSubnet("garbage-key", VALUE);
  await reg.reserveSubnet("10.244.4.0-24", "not json");
  let lists = 0;
  const list = reg.listSubnets.bind(reg);
  reg.listSubnets = () => (lists++, list());
  const invalid: string[] = [];
  const events: string[] = [];
  const stop = new AbortController();
  const watch = watchStoreLeases(reg, (batch: LeaseEvent[]) => {
    for (const ev of batch) events.push(`${ev.type} ${ev.lease.key}`);
  }, {
    signal: stop.signal,
    onInvalid: (key: string, why: LeaseRejection | undefined) =>
      invalid.push(`${key} ${why?.rule ?? "gone"}`),
  });
  try {
    await until("snapshot", () => invalid.length === 2);
    assert.deepEqual(invalid.sort(), ["10.244.4.0-24 value_unparseable", "garbage-key key_unparseable"]);
    // A re-list repeats nothing.
    const before = lists;
    watch.relist();
    await until("the re-list", () => lists > before);
    await sleep(0); // the in-memory list resolved and was diffed
    assert.equal(invalid.length, 2);
    // A valid lease turns into garbage: removed as a lease, reported as invalid.
    await reg.reserveSubnet("10.244.5.0-24", VALUE);
    await until("added", () => events.includes("added 10.244.5.0-24"));
    await reg.reserveSubnet("10.244.5.0-24", "{}");
    await until("removed", () => events.includes("removed 10.244.5.0-24"));
    assert.ok(invalid.includes("10.244.5.0-24 value_unparseable"));
    // Garbage fixed: no longer invalid, added as a lease. Garbage deleted: gone.
    await reg.reserveSubnet("10.244.4.0-24", VALUE);
    await until("fixed", () => events.includes("added 10.244.4.0-24"));
    assert.ok(invalid.includes("10.244.4.0-24 gone"));
    await reg.deleteSubnet("garbage-key");
    await until("deleted", () => invalid.includes("garbage-key gone"));
    // Deleted while the watch was away (a re-list finds it gone).
    reg.resetWatches();
    await reg.deleteSubnet("10.244.5.0-24");
    await until("relisted", () => invalid.includes("10.244.5.0-24 gone"));
  } finally {
    stop.abort();
    await watch;
  }
});
