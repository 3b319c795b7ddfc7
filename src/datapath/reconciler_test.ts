import assert from "node:assert/strict";
import type { FdbInfo, NeighInfo, RouteInfo } from "../../ffi/types.ts";
import { formatIP, formatNet, parseNet } from "../net/ip.ts";
import type { Lease } from "../lease/lease.ts";
import { type Entry, type EntryDriver, entryId, type KernelEntry, type KernelState } from "./entries.ts";
import { type DatapathBackend, type DeviceChange, type KernelOps, Reconciler } from "./reconciler.ts";
// The agent's full pass (node state, then peers) is tested here with the fake kernel below.
import type { NodeState } from "../agent/node_state.ts";
import { Resync } from "../agent/resync.ts";
import { AgentStatus } from "../agent/status.ts";

const DEV = 5;
const CLUSTER = [parseNet("10.244.0.0/16")];

/** A kernel in memory: what weft's ops would leave in the real one, plus a log of the calls. */
class FakeKernel implements KernelOps {
  routes = new Map<string, RouteInfo>();
  neighs = new Map<string, NeighInfo>();
  fdbs = new Map<string, FdbInfo>();
  calls: string[] = [];
  /** When each call of {@linkcode calls} was made (Date.now()). */
  callTimes: number[] = [];
  /** Entries whose apply throws (a peer the kernel refuses). */
  failing = new Set<string>();

  apply(e: Entry): void {
    this.calls.push(`apply ${entryId(e)}`);
    this.callTimes.push(Date.now());
    if (this.failing.has(entryId(e))) throw new Error(`EINVAL on ${entryId(e)}`);
    switch (e.kind) {
      case "route":
        this.routes.set(e.spec.dst, {
          dst: e.spec.dst,
          family: 4,
          ...(e.spec.gateway ? { gateway: e.spec.gateway } : {}),
          index: e.spec.dev,
          onlink: !!e.spec.onlink,
          type: "unicast",
          protocol: 87,
          table: 254,
          metric: 0,
          scope: 0,
        });
        return;
      case "neigh":
        this.neighs.set(`${e.spec.dev} ${e.spec.ip}`, {
          index: e.spec.dev,
          family: 4,
          ip: e.spec.ip,
          mac: e.spec.mac,
          state: 0x80,
        });
        return;
      case "fdb":
        this.fdbs.set(`${e.spec.dev} ${e.spec.mac} ${e.spec.dst}`, {
          index: e.spec.dev,
          mac: e.spec.mac,
          dst: e.spec.dst,
          state: 0x80,
          flags: 2,
        });
    }
  }

  remove(e: Entry): void {
    this.calls.push(`remove ${entryId(e)}`);
    this.callTimes.push(Date.now());
    if (e.kind === "route") this.routes.delete(e.spec.dst);
    if (e.kind === "neigh") this.neighs.delete(`${e.spec.dev} ${e.spec.ip}`);
    if (e.kind === "fdb") this.fdbs.delete(`${e.spec.dev} ${e.spec.mac} ${e.spec.dst}`);
  }

  read(devices: ReadonlySet<number>): KernelState {
    return {
      routes: [...this.routes.values()],
      neighs: [...this.neighs.values()].filter((n) => devices.has(n.index)),
      fdbs: [...this.fdbs.values()].filter((f) => devices.has(f.index)),
    };
  }
}

/** A vxlan-like backend on device DEV, with a device state the test controls. */
/** {@linkcode FakeKernel} that also takes many peers at once (as NetlinkKernel does), and counts the calls. */
class BatchingKernel extends FakeKernel {
  batches: number[] = [];

  applyMany(groups: readonly (readonly KernelEntry[])[]): (Error | undefined)[] {
    this.batches.push(groups.length);
    return groups.map((g) => {
      try {
        for (const e of g) this.apply(e);
      } catch (err) {
        return err as Error;
      }
    });
  }
}

class FakeBackend implements DatapathBackend {
  device: DeviceChange | Error = "unchanged";

  ensureDevice(): DeviceChange {
    if (this.device instanceof Error) throw this.device;
    const d = this.device;
    this.device = "unchanged";
    return d;
  }

  ownedDevices(): number[] {
    return [DEV];
  }

  entriesFor(lease: Lease): Entry[] | undefined {
    if (lease.attrs.BackendType !== "vxlan" || !lease.subnet) return undefined;
    const mac = (lease.attrs.BackendData as { VtepMAC: string }).VtepMAC;
    const net = formatIP(lease.subnet.ip);
    return [
      { kind: "neigh", spec: { dev: DEV, ip: net, mac } },
      { kind: "fdb", spec: { dev: DEV, mac, dst: lease.attrs.PublicIP } },
      { kind: "route", spec: { dst: formatNet(lease.subnet), gateway: net, dev: DEV, onlink: true } },
    ];
  }
}

function lease(n: number, opts: { mac?: string; ip?: string; type?: string } = {}): Lease {
  const subnet = parseNet(`10.244.${n}.0/24`);
  return {
    subnet,
    key: `10.244.${n}.0-24`,
    attrs: {
      PublicIP: opts.ip ?? `192.168.1.${n}`,
      PublicIPv6: null,
      BackendType: opts.type ?? "vxlan",
      BackendData: { VNI: 1, VtepMAC: opts.mac ?? `02:00:00:00:00:${n.toString(16).padStart(2, "0")}` },
    },
  };
}

async function until(cond: () => boolean, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error("condition not met in time");
    await new Promise((res) => setTimeout(res, 20));
  }
}

function setup() {
  const kernel = new FakeKernel();
  const backend = new FakeBackend();
  const r = new Reconciler(backend, kernel, CLUSTER);
  return { kernel, backend, r };
}

Deno.test("Reconciler installs a peer's neighbour, FDB entry and route, route last", async () => {
  const { kernel, r } = setup();
  r.setPeer("10.244.2.0-24", lease(2));
  await r.settled();
  assert.deepEqual(kernel.calls, [
    "apply neigh 5 10.244.2.0",
    "apply fdb 5 02:00:00:00:00:02 192.168.1.2",
    "apply route 10.244.2.0/24",
  ]);
  assert.equal(r.stats.peersProgrammed, 1);
});

Deno.test("Reconciler coalesces a burst of lease events into one apply of the final state", async () => {
  const { kernel, r } = setup();
  for (let i = 2; i < 50; i++) r.setPeer(`10.244.${i}.0-24`, lease(i));
  r.setPeer("10.244.3.0-24", undefined); // added then removed in the same burst
  await r.settled();
  assert.equal(kernel.routes.size, 47);
  assert.ok(!kernel.routes.has("10.244.3.0/24"));
  assert.ok(!kernel.calls.some((c) => c.includes("10.244.3.0")), "the transient lease never hit the kernel");
  assert.equal(r.stats.peersProgrammed, 47);
});

Deno.test("Reconciler removes a departed peer's route first, then its neighbour and FDB entries", async () => {
  const { kernel, r } = setup();
  r.setPeer("10.244.2.0-24", lease(2));
  await r.settled();
  kernel.calls = [];
  r.setPeer("10.244.2.0-24", undefined);
  await r.settled();
  assert.deepEqual(kernel.calls, [
    "remove route 10.244.2.0/24",
    "remove fdb 5 02:00:00:00:00:02 192.168.1.2",
    "remove neigh 5 10.244.2.0",
  ]);
  assert.equal(kernel.routes.size + kernel.neighs.size + kernel.fdbs.size, 0);
  assert.equal(r.stats.peersProgrammed, 0);
});

Deno.test("Reconciler replaces a changed lease and removes the FDB entry of the peer's old VTEP", async () => {
  const { kernel, r } = setup();
  r.setPeer("10.244.2.0-24", lease(2));
  await r.settled();
  r.setPeer("10.244.2.0-24", lease(2, { mac: "02:aa:00:00:00:02", ip: "192.168.1.99" }));
  await r.settled();
  assert.deepEqual([...kernel.fdbs.keys()], ["5 02:aa:00:00:00:02 192.168.1.99"]);
  assert.equal(kernel.neighs.get("5 10.244.2.0")?.mac, "02:aa:00:00:00:02");
  assert.ok(kernel.routes.has("10.244.2.0/24"));
});

Deno.test("Reconciler ignores leases of another backend type", async () => {
  const { kernel, r } = setup();
  r.setPeer("10.244.2.0-24", lease(2, { type: "host-gw" }));
  await r.settled();
  assert.equal(kernel.calls.length, 0);
  assert.equal(r.stats.peersProgrammed, 0);
  assert.equal(r.desiredCount, 1);
});

Deno.test("fullPass() puts back a deleted route and neighbour entry and counts them as drift", async () => {
  const { kernel, r } = setup();
  r.setPeer("10.244.2.0-24", lease(2));
  r.setPeer("10.244.3.0-24", lease(3));
  await r.settled();
  assert.ok(r.fullPass());
  assert.equal(r.stats.driftRepaired, 0, "nothing to repair on a clean kernel");
  kernel.routes.delete("10.244.2.0/24");
  kernel.neighs.delete("5 10.244.3.0");
  kernel.calls = [];
  assert.ok(r.fullPass());
  assert.deepEqual(kernel.calls.sort(), ["apply neigh 5 10.244.3.0", "apply route 10.244.2.0/24"]);
  assert.equal(r.stats.driftRepaired, 2);
});

Deno.test("fullPass() repairs an altered entry (a neighbour pointing at another MAC)", async () => {
  const { kernel, r } = setup();
  r.setPeer("10.244.2.0-24", lease(2));
  await r.settled();
  kernel.neighs.get("5 10.244.2.0")!.mac = "02:66:66:66:66:66";
  r.fullPass();
  assert.equal(kernel.neighs.get("5 10.244.2.0")?.mac, "02:00:00:00:00:02");
  assert.equal(r.stats.driftRepaired, 1);
});

Deno.test("fullPass() prunes weft's entries that no lease wants, and only those", async () => {
  const { kernel, r } = setup();
  // Left by a node that vanished while the agent was down.
  kernel.apply({ kind: "neigh", spec: { dev: DEV, ip: "10.244.9.0", mac: "02:00:00:00:00:09" } });
  kernel.apply({ kind: "fdb", spec: { dev: DEV, mac: "02:00:00:00:00:09", dst: "192.168.1.9" } });
  kernel.apply({
    kind: "route",
    spec: { dst: "10.244.9.0/24", gateway: "10.244.9.0", dev: DEV, onlink: true },
  });
  // weft's protocol, but outside the cluster network: not this network's, left alone.
  kernel.apply({ kind: "route", spec: { dst: "172.16.0.0/24", gateway: "192.168.1.1", dev: 2 } });
  // Entries on a device weft does not own.
  kernel.neighs.set("7 10.244.8.0", {
    index: 7,
    family: 4,
    ip: "10.244.8.0",
    mac: "02:00:00:00:00:08",
    state: 0x80,
  });
  // A learned (not permanent) neighbour on weft's device: the kernel's, not weft's.
  kernel.neighs.set(`${DEV} 10.244.7.0`, {
    index: DEV,
    family: 4,
    ip: "10.244.7.0",
    mac: "02:07",
    state: 0x02,
  });
  r.setPeer("10.244.2.0-24", lease(2));
  await r.settled();
  r.fullPass();
  assert.deepEqual([...kernel.routes.keys()].sort(), ["10.244.2.0/24", "172.16.0.0/24"]);
  assert.deepEqual([...kernel.neighs.keys()].sort(), ["5 10.244.2.0", "5 10.244.7.0", "7 10.244.8.0"]);
  assert.deepEqual([...kernel.fdbs.keys()], ["5 02:00:00:00:00:02 192.168.1.2"]);
  assert.equal(r.stats.pruned, 3);
});

Deno.test("fullPass() replays every peer after the device was recreated, and counts it", async () => {
  const { kernel, backend, r } = setup();
  r.setPeer("10.244.2.0-24", lease(2));
  r.setPeer("10.244.3.0-24", lease(3));
  await r.settled();
  r.fullPass();
  // The device is deleted by hand: the kernel drops everything on it.
  kernel.routes.clear();
  kernel.neighs.clear();
  kernel.fdbs.clear();
  backend.device = "created";
  r.fullPass(backend.ensureDevice());
  assert.equal(kernel.routes.size, 2);
  assert.equal(kernel.neighs.size, 2);
  assert.equal(kernel.fdbs.size, 2);
  assert.equal(r.stats.deviceRecreated, 1);
  assert.equal(r.stats.driftRepaired, 7, "the device and its six entries");
});

Deno.test("fullPass() does nothing but report failure when the device cannot be made", async () => {
  const { kernel, r } = setup();
  kernel.apply({
    kind: "route",
    spec: { dst: "10.244.9.0/24", gateway: "10.244.9.0", dev: DEV, onlink: true },
  });
  // The agent's full pass: the node state ensures the device first; it failed (undefined, logged there).
  const status = new AgentStatus();
  const failing = { ensure: () => undefined } as unknown as NodeState;
  await new Resync({ reconciler: r, node: failing, lease: () => lease(1), synced: () => true, status })
    .pass();
  assert.equal(r.stats.passes, 0, "no pass without a device");
  assert.ok(kernel.routes.has("10.244.9.0/24"), "nothing pruned without a device");
  assert.equal(r.stats.errors, 1);
  assert.equal(status.datapathApplied, false);
});

Deno.test("the first full pass applies the first list from one kernel read: one write per entry, no drift", async () => {
  const { kernel, r } = setup();
  const ok = { ensure: () => "unchanged" } as unknown as NodeState;
  const status = new AgentStatus();
  // A restart: the previous run left peer 2's entries and one of a peer gone since.
  r.setPeer("10.244.2.0-24", lease(2));
  await r.settled();
  const stale = { dst: "10.244.9.0/24", gateway: "10.244.9.0", dev: DEV, onlink: true };
  kernel.apply({ kind: "route", spec: stale });
  const before = kernel.calls.length;
  const fresh = new Reconciler(new FakeBackend(), kernel, CLUSTER);
  // The list arrives and the pass starts in the same turn (peer sync's onSynced), as in the agent.
  for (let i = 2; i < 6; i++) fresh.setPeer(`10.244.${i}.0-24`, lease(i));
  await new Resync({ reconciler: fresh, node: ok, lease: () => lease(1), synced: () => true, status }).pass();
  assert.deepEqual(kernel.calls.slice(before), [
    ...[3, 4, 5].flatMap((i) => [
      `apply neigh 5 10.244.${i}.0`,
      `apply fdb 5 02:00:00:00:00:0${i} 192.168.1.${i}`,
      `apply route 10.244.${i}.0/24`,
    ]),
    "remove route 10.244.9.0/24",
  ], "peer 2 was in place: not written again; the new ones once; the gone one pruned");
  assert.equal(fresh.stats.driftRepaired, 0, "a list applied is not drift");
  assert.equal(fresh.stats.peersProgrammed, 4);
  assert.equal(status.datapathApplied, true);
  await fresh.settled();
  assert.equal(kernel.calls.length, before + 10, "nothing re-applied after the pass");
});

Deno.test("applies held for a pass that never ran (no device) are made once it gives up", async () => {
  const { kernel, r } = setup();
  const failing = { ensure: () => undefined } as unknown as NodeState;
  r.setPeer("10.244.2.0-24", lease(2));
  await new Resync({
    reconciler: r,
    node: failing,
    lease: () => lease(1),
    synced: () => true,
    status: new AgentStatus(),
  })
    .pass();
  await r.settled();
  assert.equal(kernel.routes.size, 1);
  assert.equal(r.stats.peersProgrammed, 1);
});

Deno.test("a failing peer never blocks the others and is retried with back-off until it works", async () => {
  const { kernel, r } = setup();
  kernel.failing.add("fdb 5 02:00:00:00:00:03 192.168.1.3");
  for (const n of [2, 3, 4]) r.setPeer(`10.244.${n}.0-24`, lease(n));
  await r.settled();
  assert.ok(kernel.routes.has("10.244.2.0/24") && kernel.routes.has("10.244.4.0/24"));
  assert.ok(!kernel.routes.has("10.244.3.0/24"), "no route to a peer whose FDB entry failed");
  assert.equal(r.stats.peersProgrammed, 2);
  assert.equal(r.stats.peersFailing, 1);
  const failed = "apply fdb 5 02:00:00:00:00:03 192.168.1.3";
  const tries = () => kernel.calls.filter((c) => c === failed).length;
  const triedAt = () => kernel.calls.flatMap((c, i) => c === failed ? [kernel.callTimes[i]!] : []);
  assert.equal(tries(), 1);
  await until(() => tries() === 2);
  // Back-off: not retried at once but 100–200 ms after the first failure (equal jitter below a 200 ms
  // ceiling). Timers never fire early, so however slow the machine the gap is at least that (less a clock
  // tick) — where a look after a fixed 50 ms would depend on the machine's speed.
  const [first, second] = triedAt();
  assert.ok(second! - first! >= 95, `retried ${second! - first!} ms after the failure`);
  kernel.failing.clear();
  await until(() => tries() === 3);
  await r.settled();
  assert.ok(kernel.routes.has("10.244.3.0/24"));
  assert.equal(r.stats.peersProgrammed, 3);
  assert.equal(r.stats.peersFailing, 0);
  assert.equal(r.stats.errors, 2);
  r.stop();
});

Deno.test("a removed lease of a peer the reconciler never saw changes nothing", async () => {
  const { kernel, r } = setup();
  r.setPeer("10.244.2.0-24", undefined);
  await r.settled();
  assert.equal(kernel.calls.length, 0);
});

/** A driver in memory, like the WireGuard peer list of a device. */
class FakeDriver implements EntryDriver {
  readonly name = "peers";
  held = new Map<string, string>();
  apply(key: string, value: string): void {
    this.held.set(key, value);
  }
  remove(key: string): void {
    this.held.delete(key);
  }
  list(): Map<string, string> {
    return new Map(this.held);
  }
}

Deno.test("driver entries are applied, repaired when altered, updated in place and pruned like routes", async () => {
  const driver = new FakeDriver();
  const backend: DatapathBackend = {
    ownedDevices: () => [],
    drivers: () => [driver],
    entriesFor: (l) => [{ kind: "driver", driver: "peers", key: l.key, value: l.attrs.PublicIP }],
  };
  const r = new Reconciler(backend, new FakeKernel(), CLUSTER);
  driver.held.set("stale", "192.168.1.99"); // left by a node gone while weft was down
  r.setPeer("10.244.2.0-24", lease(2));
  r.setPeer("10.244.3.0-24", lease(3));
  await r.settled();
  assert.deepEqual(driver.held.get("10.244.2.0-24"), "192.168.1.2");
  driver.held.set("10.244.3.0-24", "203.0.113.1"); // altered by hand
  assert.ok(r.fullPass());
  assert.deepEqual(Object.fromEntries(driver.held), {
    "10.244.2.0-24": "192.168.1.2",
    "10.244.3.0-24": "192.168.1.3",
  });
  assert.equal(r.stats.pruned, 1);
  assert.equal(r.stats.driftRepaired, 1);
  r.setPeer("10.244.2.0-24", lease(2, { ip: "192.168.1.22" }));
  r.setPeer("10.244.3.0-24", undefined);
  await r.settled();
  assert.deepEqual(Object.fromEntries(driver.held), { "10.244.2.0-24": "192.168.1.22" });
});

Deno.test("a full pass hands all peers to a batching kernel at once; a peer that fails there fails alone and is retried", async () => {
  const kernel = new BatchingKernel();
  const r = new Reconciler(new FakeBackend(), kernel, CLUSTER);
  const ok = { ensure: () => "unchanged" } as unknown as NodeState;
  const status = new AgentStatus();
  kernel.failing.add("fdb 5 02:00:00:00:00:04 192.168.1.4");
  for (let i = 2; i < 7; i++) r.setPeer(`10.244.${i}.0-24`, lease(i));
  await new Resync({ reconciler: r, node: ok, lease: () => lease(1), synced: () => true, status }).pass();
  assert.deepEqual(kernel.batches, [5], "one call for the five peers");
  assert.deepEqual([...kernel.routes.keys()].sort(), [
    "10.244.2.0/24",
    "10.244.3.0/24",
    "10.244.5.0/24",
    "10.244.6.0/24",
  ]);
  assert.deepEqual([r.stats.peersProgrammed, r.stats.peersFailing, r.stats.errors, r.stats.driftRepaired], [
    4,
    1,
    0 + 1,
    0,
  ]);
  kernel.failing.clear();
  await until(() => kernel.routes.has("10.244.4.0/24"));
  await r.settled();
  assert.deepEqual([r.stats.peersProgrammed, r.stats.peersFailing], [5, 0]);
  assert.deepEqual(kernel.batches, [5, 1], "the retry went to the kernel as a batch of one");
  // Drift found by a later pass goes through the batch too, and counts as drift.
  kernel.neighs.delete("5 10.244.3.0");
  kernel.routes.delete("10.244.6.0/24");
  r.fullPass();
  assert.deepEqual(kernel.batches, [5, 1, 2]);
  assert.equal(r.stats.driftRepaired, 2);
  assert.ok(kernel.neighs.has("5 10.244.3.0") && kernel.routes.has("10.244.6.0/24"));
  r.stop();
});

Deno.test("a burst of lease events reaches a batching kernel as one call; a changed lease still loses its old entries first", async () => {
  const kernel = new BatchingKernel();
  const r = new Reconciler(new FakeBackend(), kernel, CLUSTER);
  for (let i = 2; i < 6; i++) r.setPeer(`10.244.${i}.0-24`, lease(i));
  await r.settled();
  assert.deepEqual(kernel.batches, [4]);
  assert.equal(r.stats.peersProgrammed, 4);
  const before = kernel.calls.length;
  r.setPeer("10.244.3.0-24", lease(3, { ip: "192.168.1.33" })); // the peer's VTEP moved
  r.setPeer("10.244.4.0-24", undefined);
  await r.settled();
  assert.deepEqual(kernel.calls.slice(before), [
    "remove fdb 5 02:00:00:00:00:03 192.168.1.3",
    "remove route 10.244.4.0/24",
    "remove fdb 5 02:00:00:00:00:04 192.168.1.4",
    "remove neigh 5 10.244.4.0",
    "apply neigh 5 10.244.3.0",
    "apply fdb 5 02:00:00:00:00:03 192.168.1.33",
    "apply route 10.244.3.0/24",
  ]);
  assert.deepEqual(kernel.batches, [4, 1]);
  assert.equal(r.stats.peersProgrammed, 3);
  r.stop();
});

Deno.test("a batch the kernel layer cannot send at all fails each of its peers, which back off and are retried", async () => {
  const kernel = new BatchingKernel();
  let broken = 1;
  const applyMany = kernel.applyMany.bind(kernel);
  kernel.applyMany = (groups) => {
    if (broken-- > 0) throw new Error("netlink batch: recvfrom failed (ENOBUFS)");
    return applyMany(groups);
  };
  const r = new Reconciler(new FakeBackend(), kernel, CLUSTER);
  const ok = { ensure: () => "unchanged" } as unknown as NodeState;
  for (let i = 2; i < 5; i++) r.setPeer(`10.244.${i}.0-24`, lease(i));
  const status = new AgentStatus();
  await new Resync({ reconciler: r, node: ok, lease: () => lease(1), synced: () => true, status }).pass();
  assert.deepEqual([r.stats.peersProgrammed, r.stats.peersFailing, r.stats.errors], [0, 3, 3]);
  assert.equal(kernel.routes.size, 0);
  await until(() => kernel.routes.size === 3);
  await r.settled();
  assert.deepEqual([r.stats.peersProgrammed, r.stats.peersFailing], [3, 0]);
  r.stop();
});

/** {@linkcode FakeKernel} that announces changes as the real kernel's notifications do, and counts reads. */
class AnnouncingKernel extends FakeKernel {
  reads = 0;
  /** Set by the test: a change weft did not make (the real kernel announces those too). */
  announced = false;
  #writes = 0;
  #writesSeen = 0;

  override apply(e: Entry): void {
    this.#writes++;
    super.apply(e);
  }

  override remove(e: Entry): void {
    this.#writes++;
    super.remove(e);
  }

  override read(devices: ReadonlySet<number>): KernelState {
    this.reads++;
    return super.read(devices);
  }

  changed(): boolean {
    const changed = this.announced || this.#writes !== this.#writesSeen;
    this.announced = false;
    this.#writesSeen = this.#writes;
    return changed;
  }
}

Deno.test("an idle full pass trusts the kernel's silence, and reads again on any change and every sixth pass", async () => {
  const kernel = new AnnouncingKernel();
  const r = new Reconciler(new FakeBackend(), kernel, CLUSTER);
  r.setPeer("10.244.2.0-24", lease(2));
  await r.settled();
  const pass = () => {
    const before = kernel.reads;
    assert.ok(r.fullPass());
    return kernel.reads > before ? "read" : "trusted";
  };
  // The first pass reads (it always does); then, in silence, five passes trust it and the sixth reads.
  assert.equal(pass(), "read");
  assert.deepEqual([1, 2, 3, 4, 5, 6].map(pass), [
    "trusted",
    "trusted",
    "trusted",
    "trusted",
    "trusted",
    "read",
  ]);
  assert.equal(r.stats.readsSkipped, 5);

  // Drift the kernel announces (a route deleted by hand): the next pass reads and repairs it.
  kernel.routes.delete("10.244.2.0/24");
  kernel.announced = true;
  assert.equal(pass(), "read");
  assert.ok(kernel.routes.has("10.244.2.0/24"));
  assert.equal(r.stats.driftRepaired, 1);
  pass(); // the repair's own write is announced
  assert.equal(pass(), "trusted");

  // A new lease: applied between passes, and the next pass reads (what is wanted changed).
  r.setPeer("10.244.3.0-24", lease(3));
  await r.settled();
  kernel.changed(); // even if the kernel had said nothing of the apply
  assert.equal(pass(), "read");
  assert.equal(pass(), "trusted");

  // A device recreated, or a peer failing: read.
  const reads = kernel.reads;
  assert.ok(r.fullPass("repaired"));
  assert.equal(kernel.reads, reads + 1);
  assert.equal(pass(), "trusted");
  kernel.failing.add("route 10.244.4.0/24");
  r.setPeer("10.244.4.0-24", lease(4));
  await r.settled();
  kernel.changed();
  assert.equal(pass(), "read");
  assert.equal(pass(), "read", "a failing peer keeps every pass reading");
  r.stop();
});
