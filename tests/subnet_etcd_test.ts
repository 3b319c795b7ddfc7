/**
 * Subnet leases against a real etcd-server child process: flannel's acquire algorithm under contention,
 * wire compatibility with flannel's JSON, renewal, expiry, watches through outages and compaction.
 */
import assert from "node:assert/strict";
import { parseNetworkConfig } from "../src/config/net_conf.ts";
import { formatNet, parseNet } from "../src/net/ip.ts";
import {
  type Lease,
  type LeaseEvent,
  LeaseKeeper,
  openEtcdRegistry,
  OutOfSubnetsError,
  SubnetManager,
} from "../src/subnet/mod.ts";
import { etcdctl, startEtcd } from "./helpers/etcd.ts";

const HAVE_ETCD = (() => {
  try {
    return Deno.statSync("/usr/bin/etcd").isFile;
  } catch {
    return false;
  }
})();
const PREFIX = "/coreos.com/network";

async function manager(endpoint: string): Promise<SubnetManager & AsyncDisposable> {
  const reg = await openEtcdRegistry({ endpoints: [endpoint], prefix: PREFIX, timeoutMs: 3000 });
  return Object.assign(new SubnetManager(reg), { [Symbol.asyncDispose]: () => reg.close() });
}

function vxlanAttrs(ip: string) {
  return {
    PublicIP: ip,
    PublicIPv6: null,
    BackendType: "vxlan",
    BackendData: { VNI: 1, VtepMAC: "0a:00:00:00:00:01" },
  };
}

async function until(what: string, ms: number, ok: () => boolean): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

Deno.test({
  name:
    "50 concurrent acquirers on a /20 with SubnetLen 24: exactly 15 distinct subnets, the rest out of subnets",
  ignore: !HAVE_ETCD,
  async fn() {
    await using etcd = await startEtcd();
    const cfg = parseNetworkConfig({ Network: "10.5.0.0/20", SubnetLen: 24 });
    const managers = await Promise.all(Array.from({ length: 50 }, () => manager(etcd.endpoint)));
    try {
      const t0 = performance.now();
      const results = await Promise.allSettled(
        managers.map((m, i) =>
          m.acquireLease(cfg, vxlanAttrs(`192.168.10.${i + 1}`), { ttlSeconds: 60, attempts: 30 })
        ),
      );
      const ms = performance.now() - t0;
      const won = results.filter((r): r is PromiseFulfilledResult<Lease> => r.status === "fulfilled").map((
        r,
      ) => r.value);
      const lost = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
      const subnets = won.map((l) => formatNet(l.subnet!));
      assert.equal(
        won.length,
        15,
        `winners: ${subnets.join(" ")}; errors: ${lost.map((l) => String(l.reason)).join("; ")}`,
      );
      assert.equal(new Set(subnets).size, 15, "no duplicate subnet");
      assert.ok(!subnets.includes("10.5.0.0/24"), "SubnetMin skips the first subnet");
      for (const l of lost) assert.ok(l.reason instanceof OutOfSubnetsError, String(l.reason));
      const { leases } = await managers[0]!.listLeases();
      assert.equal(leases.length, 15);
      console.log(`  50 acquirers → 15 leases in ${ms.toFixed(0)} ms`);
    } finally {
      await Promise.all(managers.map((m) => m[Symbol.asyncDispose]()));
    }
  },
});

Deno.test({
  name:
    "a restart with the same PublicIP gets the same subnet, and flannel's etcdctl-written JSON round-trips",
  ignore: !HAVE_ETCD,
  async fn() {
    await using etcd = await startEtcd();
    const cfg = parseNetworkConfig({ Network: "10.244.0.0/16", Backend: { Type: "vxlan" } });
    let first: Lease;
    {
      await using m = await manager(etcd.endpoint);
      first = await m.acquireLease(cfg, vxlanAttrs("192.168.64.3"), { ttlSeconds: 120 });
    }
    {
      await using m = await manager(etcd.endpoint);
      const again = await m.acquireLease(cfg, vxlanAttrs("192.168.64.3"), { ttlSeconds: 120 });
      assert.equal(formatNet(again.subnet!), formatNet(first.subnet!));
    }
    // A lease exactly as flanneld writes it.
    const flannelJson =
      '{"PublicIP":"192.168.64.7","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}';
    await etcdctl(etcd.endpoint, ["put", `${PREFIX}/subnets/10.244.9.0-24`, flannelJson]);
    await using m = await manager(etcd.endpoint);
    const { leases } = await m.listLeases();
    const l = leases.find((x) => x.key === "10.244.9.0-24")!;
    assert.deepEqual(l.attrs, JSON.parse(flannelJson));
    assert.equal(formatNet(l.subnet!), "10.244.9.0/24");
    assert.equal(l.etcdLeaseId, undefined, "written without a lease: a reservation");
    // weft's JSON for the same attributes is byte-identical to flannel's.
    const { leaseAttrsJSON } = await import("../src/subnet/mod.ts");
    assert.equal(leaseAttrsJSON(l.attrs), flannelJson);
    // Reservations are never taken by others.
    const other = await m.acquireLease(cfg, vxlanAttrs("192.168.64.8"), {
      previousSubnet: parseNet("10.244.9.0/24"),
    });
    assert.notEqual(formatNet(other.subnet!), "10.244.9.0/24");
  },
});

Deno.test({
  name:
    "a keeper renews a 2 s lease across many TTLs; killing it lets the key expire and watchers see the removal",
  ignore: !HAVE_ETCD,
  async fn() {
    await using etcd = await startEtcd();
    const cfg = parseNetworkConfig({ Network: "10.244.0.0/16" });
    await using owner = await manager(etcd.endpoint);
    await using observer = await manager(etcd.endpoint);
    const lease = await owner.acquireLease(cfg, vxlanAttrs("192.168.1.1"), { ttlSeconds: 2 });
    const events: LeaseEvent[] = [];
    const watchStop = new AbortController();
    const watching = observer.watchLeases((b) => events.push(...b), { signal: watchStop.signal });
    const keeperStop = new AbortController();
    const keeper = new LeaseKeeper(owner, lease, {
      ttlSeconds: 2,
      renewMarginSeconds: 3600,
      reacquire: () => Promise.reject(new Error("lease must not be lost while the keeper runs")),
    });
    const keeping = keeper.run(keeperStop.signal);
    await new Promise((r) => setTimeout(r, 7000)); // 3.5 TTLs
    assert.ok(keeper.renewals >= 4, `renewed ${keeper.renewals} times in 3.5 TTLs`);
    const { leases } = await observer.listLeases();
    assert.ok(leases.some((l) => l.key === lease.key), "the lease is still there");
    keeperStop.abort(); // "kill" the keeper: nobody renews any more
    await keeping;
    await until(
      "the watcher sees the expiry",
      6000,
      () => events.some((e) => e.type === "removed" && e.lease.key === lease.key),
    );
    watchStop.abort();
    await watching;
    console.log(`  ${keeper.renewals} renewals over 7 s with TTL 2 s`);
  },
});

Deno.test({
  name:
    "etcd stopped for 15 s and restarted: the watch resumes, no put made meanwhile is lost, the own lease survives",
  ignore: !HAVE_ETCD,
  async fn() {
    await using etcd = await startEtcd();
    const cfg = parseNetworkConfig({ Network: "10.244.0.0/16" });
    await using owner = await manager(etcd.endpoint);
    await using observer = await manager(etcd.endpoint);
    const own = await owner.acquireLease(cfg, vxlanAttrs("192.168.2.1"), { ttlSeconds: 60 });
    const seen = new Map<string, string>();
    const stop = new AbortController();
    const watching = observer.watchLeases((b) => {
      for (const e of b) seen.set(e.lease.key, e.type);
    }, { signal: stop.signal, ownKey: () => undefined });
    await until("snapshot", 3000, () => seen.has(own.key));
    await etcd.stop();
    await new Promise((r) => setTimeout(r, 15_000));
    await etcd.restart();
    // Puts made while the watcher was still disconnected.
    for (let i = 0; i < 5; i++) {
      await etcdctl(etcd.endpoint, [
        "put",
        `${PREFIX}/subnets/10.244.${100 + i}.0-24`,
        JSON.stringify(vxlanAttrs(`10.0.0.${i}`)),
      ]);
    }
    await until(
      "all puts delivered",
      30_000,
      () => [0, 1, 2, 3, 4].every((i) => seen.get(`10.244.${100 + i}.0-24`) === "added"),
    );
    const renewed = await owner.renewLease(own, 60);
    assert.ok(renewed, "the own lease survived the outage and renews");
    stop.abort();
    await watching;
  },
});

Deno.test({
  name: "a compaction past the watch revision makes the watcher re-list and converge",
  ignore: !HAVE_ETCD,
  async fn() {
    await using etcd = await startEtcd();
    await using observer = await manager(etcd.endpoint);
    const seen = new Map<string, string>();
    const stop = new AbortController();
    const watching = observer.watchLeases((b) => {
      for (const e of b) seen.set(e.lease.key, e.type);
    }, { signal: stop.signal });
    await etcdctl(etcd.endpoint, [
      "put",
      `${PREFIX}/subnets/10.244.1.0-24`,
      JSON.stringify(vxlanAttrs("10.0.0.1")),
    ]);
    await until("first put", 3000, () => seen.get("10.244.1.0-24") === "added");
    // Stop the etcd member to freeze the watcher at its revision, change things, compact past them.
    await etcd.stop();
    await etcd.restart();
    await etcdctl(etcd.endpoint, [
      "put",
      `${PREFIX}/subnets/10.244.2.0-24`,
      JSON.stringify(vxlanAttrs("10.0.0.2")),
    ]);
    await etcdctl(etcd.endpoint, ["del", `${PREFIX}/subnets/10.244.1.0-24`]);
    const status = JSON.parse(await etcdctl(etcd.endpoint, ["endpoint", "status", "-w", "json"])) as {
      Status: { header: { revision: number } };
    }[];
    await etcdctl(etcd.endpoint, ["compaction", String(status[0]!.Status.header.revision)]);
    await until(
      "converged after compaction",
      30_000,
      () => seen.get("10.244.2.0-24") === "added" && seen.get("10.244.1.0-24") === "removed",
    );
    stop.abort();
    await watching;
  },
});
