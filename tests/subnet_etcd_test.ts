/**
 * Subnet leases against a real etcd-server child process: flannel's acquire algorithm under contention,
 * wire compatibility with flannel's JSON, renewal across many TTLs, expiry after the keeper is killed,
 * an operator deleting the own lease, and a watch whose revision was compacted.
 */
import assert from "node:assert/strict";
import { parseNetworkConfig } from "../src/config/net_conf.ts";
import { formatNet, parseNet } from "../src/net/ip.ts";
import {
  type EtcdRegistry,
  type Lease,
  type LeaseAttrs,
  leaseAttrsJSON,
  type LeaseEvent,
  openEtcdRegistry,
  OutOfSubnetsError,
  type Registry,
  SubnetManager,
} from "../src/lease/etcd/mod.ts";
import { haveEtcd, startEtcd } from "./helpers/etcd.ts";

const PREFIX = "/coreos.com/network";

async function manager(endpoint: string): Promise<SubnetManager & AsyncDisposable & { reg: EtcdRegistry }> {
  const reg = await openEtcdRegistry({ endpoints: [endpoint], prefix: PREFIX, timeoutMs: 3000 });
  return Object.assign(new SubnetManager(reg), { reg, [Symbol.asyncDispose]: () => reg.close() });
}

function vxlanAttrs(ip: string, mac = "0a:00:00:00:00:01"): LeaseAttrs {
  return { PublicIP: ip, PublicIPv6: null, BackendType: "vxlan", BackendData: { VNI: 1, VtepMAC: mac } };
}

async function until(what: string, ms: number, ok: () => boolean | Promise<boolean>): Promise<void> {
  const end = Date.now() + ms;
  while (!(await ok())) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

Deno.test({
  name:
    "50 concurrent acquirers on a /20 with SubnetLen 24: exactly 15 get distinct subnets, 35 get out of subnets",
  ignore: !haveEtcd(),
  async fn() {
    await using etcd = await startEtcd();
    const cfg = parseNetworkConfig({ Network: "10.5.0.0/20", SubnetLen: 24 });
    // 50 separate clients, like 50 nodes starting at once.
    const managers = await Promise.all(Array.from({ length: 50 }, () => manager(etcd.endpoint)));
    try {
      const t0 = performance.now();
      const results = await Promise.allSettled(
        managers.map((m, i) => m.acquireLease(cfg, vxlanAttrs(`192.168.10.${i + 1}`), { ttlSeconds: 60 })),
      );
      const ms = performance.now() - t0;
      const won = results.flatMap((r, i) => r.status === "fulfilled" ? [{ i, lease: r.value }] : []);
      const lost = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
      const subnets = won.map((w) => formatNet(w.lease.subnet!));
      assert.equal(
        won.length,
        15,
        `winners: ${subnets.join(" ")}; errors: ${lost.map((l) => l.reason).join("; ")}`,
      );
      assert.equal(new Set(subnets).size, 15, "no subnet handed out twice");
      assert.ok(!subnets.includes("10.5.0.0/24"), "SubnetMin skips the first subnet");
      for (const l of lost) {
        assert.ok(l.reason instanceof OutOfSubnetsError, String(l.reason));
        assert.match(l.reason.message, /^out of subnets: every subnet of 10\.5\.0\.0\/20/);
      }
      // etcd agrees with every winner: the key it holds carries that winner's PublicIP.
      const stored = new Map(
        (await managers[0]!.listLeases()).leases.map((l) => [formatNet(l.subnet!), l.attrs.PublicIP]),
      );
      assert.equal(stored.size, 15);
      for (const w of won) assert.equal(stored.get(formatNet(w.lease.subnet!)), `192.168.10.${w.i + 1}`);
      console.log(`  50 acquirers → 15 leases + 35 "out of subnets" in ${ms.toFixed(0)} ms`);
    } finally {
      await Promise.all(managers.map((m) => m[Symbol.asyncDispose]()));
    }
  },
});

Deno.test({
  name: "an agent restarting with the same PublicIP gets the same subnet back",
  ignore: !haveEtcd(),
  async fn() {
    await using etcd = await startEtcd();
    const cfg = parseNetworkConfig({ Network: "10.244.0.0/16" });
    let first: Lease;
    {
      await using m = await manager(etcd.endpoint);
      first = await m.acquireLease(cfg, vxlanAttrs("192.168.64.3", "0a:00:00:00:00:01"), { ttlSeconds: 120 });
      // The process ends without releasing anything, as a crash or a restart would.
    }
    await using m = await manager(etcd.endpoint);
    // Others come and go meanwhile; our subnet must not be handed to them.
    for (let i = 0; i < 5; i++) {
      await m.acquireLease(cfg, vxlanAttrs(`192.168.64.${10 + i}`), { ttlSeconds: 120 });
    }
    const again = await m.acquireLease(cfg, vxlanAttrs("192.168.64.3", "0a:00:00:00:00:02"), {
      ttlSeconds: 120,
    });
    assert.equal(formatNet(again.subnet!), formatNet(first.subnet!));
    const mine = (await m.listLeases()).leases.filter((l) => l.attrs.PublicIP === "192.168.64.3");
    assert.equal(mine.length, 1, "one key for the node, not two");
    assert.deepEqual(
      mine[0]!.attrs,
      vxlanAttrs("192.168.64.3", "0a:00:00:00:00:02"),
      "new VTEP MAC published",
    );
    assert.ok(await m.reg.leaseTTL(again.etcdLeaseId!) > 100, "a fresh TTL");
  },
});

Deno.test({
  name:
    "a lease written by etcdctl in flannel's exact JSON is read with every field, and weft's JSON is flannel's",
  ignore: !haveEtcd(),
  async fn() {
    await using etcd = await startEtcd();
    await using m = await manager(etcd.endpoint);
    const cfg = parseNetworkConfig({
      Network: "10.244.0.0/16",
      EnableIPv6: true,
      IPv6Network: "fd00:10:244::/56",
    });
    // Exactly what flanneld v0.28 writes: a TTL'd vxlan lease, a dual-stack one, a host-gw reservation,
    // a udp and a wireguard lease (LeaseAttrs' BackendType/BackendData/BackendV6Data are `omitempty`: host-gw
    // has no BackendData, udp neither BackendType nor BackendData).
    const vxlan =
      '{"PublicIP":"192.168.64.7","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}';
    const dual =
      '{"PublicIP":"192.168.64.8","PublicIPv6":"fd00::8","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:45"},"BackendV6Data":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:46"}}';
    const hostgw = '{"PublicIP":"192.168.64.9","PublicIPv6":null,"BackendType":"host-gw"}';
    const udp = '{"PublicIP":"192.168.64.10","PublicIPv6":null}';
    const wireguard =
      '{"PublicIP":"192.168.64.11","PublicIPv6":null,"BackendType":"wireguard","BackendData":{"PublicKey":"ydz5Ryw6jQ5QIE1JgpvDd9Oqr3ZpmhrEuChsN6HpNVU=","Port":51820}}';
    const grant = await etcd.etcdctl(["lease", "grant", "300"]);
    const leaseId = /lease ([0-9a-f]+) granted/.exec(grant)![1]!;
    await etcd.etcdctl(["put", `--lease=${leaseId}`, `${PREFIX}/subnets/10.244.9.0-24`, vxlan]);
    await etcd.etcdctl([
      "put",
      `--lease=${leaseId}`,
      `${PREFIX}/subnets/10.244.10.0-24&fd00:10:244:a::-64`,
      dual,
    ]);
    await etcd.etcdctl(["put", `${PREFIX}/subnets/10.244.11.0-24`, hostgw]);
    await etcd.etcdctl(["put", `--lease=${leaseId}`, `${PREFIX}/subnets/10.244.12.0-24`, udp]);
    await etcd.etcdctl(["put", `--lease=${leaseId}`, `${PREFIX}/subnets/10.244.13.0-24`, wireguard]);
    const { leases } = await m.listLeases();
    const byKey = new Map(leases.map((l) => [l.key, l]));
    const v = byKey.get("10.244.9.0-24")!;
    assert.deepEqual(v.attrs, JSON.parse(vxlan));
    assert.equal(formatNet(v.subnet!), "10.244.9.0/24");
    // etcdctl prints the ID as %016x (leading zeros), so compare numbers, not spellings.
    assert.equal(BigInt(v.etcdLeaseId!), BigInt(`0x${leaseId}`), "the etcd lease it is attached to");
    const d = byKey.get("10.244.10.0-24&fd00:10:244:a::-64")!;
    assert.deepEqual(d.attrs, JSON.parse(dual));
    assert.equal(formatNet(d.ipv6Subnet!), "fd00:10:244:a::/64");
    const h = byKey.get("10.244.11.0-24")!;
    assert.equal(h.etcdLeaseId, undefined, "written without a lease: a reservation");
    // weft's serialisation of what it read is byte-identical to what flanneld wrote.
    assert.equal(leaseAttrsJSON(v.attrs), vxlan);
    assert.equal(leaseAttrsJSON(d.attrs), dual);
    assert.equal(leaseAttrsJSON(h.attrs), hostgw);
    const u = byKey.get("10.244.12.0-24")!;
    assert.equal(u.attrs.BackendType, "", "a udp lease carries no BackendType");
    assert.equal(leaseAttrsJSON(u.attrs), udp);
    assert.equal(leaseAttrsJSON(byKey.get("10.244.13.0-24")!.attrs), wireguard);
    // And what weft writes, etcdctl reads back as flannel's JSON.
    const mine = await m.acquireLease(cfg, { ...vxlanAttrs("192.168.64.20"), PublicIPv6: "fd00::20" }, {
      ttlSeconds: 60,
      previousSubnet: parseNet("10.244.11.0/24"), // reserved for another node: must not be taken
    });
    assert.notEqual(formatNet(mine.subnet!), "10.244.11.0/24", "a reservation is never taken");
    const raw = await etcd.etcdctl(["get", "--print-value-only", `${PREFIX}/subnets/${mine.key}`]);
    assert.equal(
      raw.trim(),
      '{"PublicIP":"192.168.64.20","PublicIPv6":"fd00::20","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0a:00:00:00:00:01"}}',
    );
    assert.match(mine.key, /^10\.244\.\d+\.0-24&fd00:10:244:[0-9a-f]+::-64$/, "dual-stack key form");
  },
});

Deno.test({
  name:
    "a keeper renews a 2 s lease across 5 TTLs; SIGKILLing it lets the key expire and watchers see the removal",
  ignore: !haveEtcd(),
  async fn() {
    await using etcd = await startEtcd();
    await using observer = await manager(etcd.endpoint);
    await observer.registry.setConfig('{"Network":"10.244.0.0/16"}');
    const removed: { key: string; at: number }[] = [];
    const stop = new AbortController();
    const watching = observer.watchLeases((b) => {
      for (const e of b) if (e.type === "removed") removed.push({ key: e.lease.key, at: Date.now() });
    }, { signal: stop.signal });
    // The keeper runs in its own process, so that "killing" it is a real SIGKILL.
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--no-check", new URL("./helpers/lease_holder.ts", import.meta.url).pathname],
      env: { ETCD: etcd.endpoint, PREFIX, TTL: "2", PUBLIC_IP: "192.168.1.1" },
      stdout: "piped",
      stderr: "null",
    }).spawn();
    try {
      const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      const first = await lines.read();
      const { key } = JSON.parse(first.value!.split("\n")[0]!) as { key: string };
      // Watch the key from etcd's side until 8 renewals were seen (however long a loaded machine takes
      // for them): present at every look, each renewal attaching a fresh etcd lease.
      const leaseIds = new Set<string>();
      const t0 = Date.now();
      while (leaseIds.size < 9) {
        const l = await observer.getLease(key);
        assert.ok(l, `the key vanished ${Date.now() - t0} ms into the run`);
        leaseIds.add(l.etcdLeaseId!);
        assert.ok(Date.now() - t0 < 60_000, `only ${leaseIds.size - 1} renewals in 60 s at TTL 2 s`);
        await new Promise((r) => setTimeout(r, 100));
      }
      const renewedMs = Date.now() - t0;
      child.kill("SIGKILL");
      await child.status;
      const killedAt = Date.now();
      // A deadline far below any default TTL (etcd's 60 s, flannel's 24 h): only the 2 s lease expires.
      await until("the watcher sees the expiry", 30_000, () => removed.some((r) => r.key === key));
      const after = removed.find((r) => r.key === key)!.at - killedAt;
      console.log(
        `  ${
          leaseIds.size - 1
        } renewals in ${renewedMs} ms at TTL 2 s; removal seen ${after} ms after SIGKILL`,
      );
    } finally {
      try {
        child.kill("SIGKILL");
      } catch { /* already dead */ }
      await child.status;
      stop.abort();
      await watching;
    }
  },
});

Deno.test({
  name:
    "an operator deleting the own lease makes the keeper re-acquire the same subnet, and peers see it back",
  ignore: !haveEtcd(),
  async fn() {
    await using etcd = await startEtcd();
    await using owner = await manager(etcd.endpoint);
    await using peer = await manager(etcd.endpoint);
    const cfg = parseNetworkConfig({ Network: "10.244.0.0/16" });
    const attrs = vxlanAttrs("192.168.5.1");
    const lease = await owner.acquireLease(cfg, attrs, { ttlSeconds: 30 });
    const stop = new AbortController();
    const keeper = owner.keepLease(cfg, attrs, lease, { ttlSeconds: 30, renewMarginSeconds: 10 });
    const keeping = keeper.run(stop.signal);
    // The owner's own watch tells the keeper; a peer's watch shows the lease going and coming back.
    const ownWatch = owner.watchLeases(() => {}, {
      signal: stop.signal,
      ownKey: () => keeper.lease.key,
      onOwn: (ev) => ev.type === "removed" && keeper.poke(),
    });
    const seen: LeaseEvent["type"][] = [];
    let synced = false;
    const peerWatch = peer.watchLeases(
      (b) => b.forEach((e) => e.lease.key === lease.key && seen.push(e.type)),
      {
        signal: stop.signal,
        onSync: () => synced = true,
      },
    );
    try {
      await until("peer synced", 30_000, () => synced && seen.length === 1);
      const t0 = Date.now();
      await etcd.etcdctl(["del", `${PREFIX}/subnets/${lease.key}`]);
      await until("re-acquired", 30_000, () => keeper.reacquisitions === 1);
      const ms = Date.now() - t0;
      assert.equal(keeper.lease.key, lease.key, "the same subnet, it was still free");
      assert.notEqual(keeper.lease.etcdLeaseId, lease.etcdLeaseId);
      await until("peer sees it back", 30_000, () => seen.length === 3);
      assert.deepEqual(seen, ["added", "removed", "added"]);
      console.log(`  own lease deleted → re-acquired in ${ms} ms`);
    } finally {
      stop.abort();
      await Promise.all([keeping, ownWatch, peerWatch]);
    }
  },
});

/** Wraps a registry so that a test can hold the start of the next watch, and counts lists. */
function gated(reg: Registry): Registry & { hold(): () => void; lists: number } {
  let gate: Promise<void> | undefined;
  const g = {
    lists: 0,
    hold() {
      let open!: () => void;
      gate = new Promise((r) => open = r);
      return () => {
        gate = undefined;
        open();
      };
    },
    getConfig: () => reg.getConfig(),
    setConfig: (t: string) => reg.setConfig(t),
    listSubnets() {
      g.lists++;
      return reg.listSubnets();
    },
    getSubnet: (k: string) => reg.getSubnet(k),
    createSubnet: (...a: Parameters<Registry["createSubnet"]>) => reg.createSubnet(...a),
    renewSubnet: (...a: Parameters<Registry["renewSubnet"]>) => reg.renewSubnet(...a),
    reserveSubnet: (k: string, v: string) => reg.reserveSubnet(k, v),
    deleteSubnet: (k: string) => reg.deleteSubnet(k),
    async watchSubnets(...a: Parameters<Registry["watchSubnets"]>) {
      if (gate) await gate;
      return reg.watchSubnets(...a);
    },
    close: () => reg.close(),
  };
  return g;
}

Deno.test({
  name: "a compaction past the watch revision makes the watcher re-list and converge",
  ignore: !haveEtcd(),
  async fn() {
    await using etcd = await startEtcd();
    const reg = await openEtcdRegistry({ endpoints: etcd.endpoints, prefix: PREFIX, timeoutMs: 3000 });
    try {
      await etcd.etcdctl(["put", `${PREFIX}/subnets/10.244.1.0-24`, JSON.stringify(vxlanAttrs("10.0.0.1"))]);
      await etcd.etcdctl(["put", `${PREFIX}/subnets/10.244.3.0-24`, JSON.stringify(vxlanAttrs("10.0.0.3"))]);
      const g = gated(reg);
      // The watcher lists (revision R) but its watch only starts after R has been compacted away.
      const release = g.hold();
      const seen = new Map<string, LeaseEvent>();
      const stop = new AbortController();
      const watching = new SubnetManager(g).watchLeases((b) => b.forEach((e) => seen.set(e.lease.key, e)), {
        signal: stop.signal,
      });
      await until("snapshot", 30_000, () => seen.size === 2);
      await etcd.etcdctl(["put", `${PREFIX}/subnets/10.244.2.0-24`, JSON.stringify(vxlanAttrs("10.0.0.2"))]);
      await etcd.etcdctl(["del", `${PREFIX}/subnets/10.244.1.0-24`]);
      await etcd.etcdctl([
        "put",
        `${PREFIX}/subnets/10.244.3.0-24`,
        JSON.stringify(vxlanAttrs("10.0.0.3", "0a:00:00:00:00:33")),
      ]);
      const compacted = await etcd.compact();
      release();
      await until(
        "converged after compaction",
        10_000,
        () =>
          seen.get("10.244.2.0-24")?.type === "added" && seen.get("10.244.1.0-24")?.type === "removed" &&
          !!seen.get("10.244.3.0-24")?.previous,
      );
      assert.equal(g.lists, 2, "the compacted watch made it list again");
      // And the new watch works: a put after the re-list arrives as an event.
      await etcd.etcdctl(["put", `${PREFIX}/subnets/10.244.4.0-24`, JSON.stringify(vxlanAttrs("10.0.0.4"))]);
      await until("watching again", 30_000, () => seen.get("10.244.4.0-24")?.type === "added");
      stop.abort();
      await watching;
      console.log(`  compacted at revision ${compacted}; re-listed once and converged`);
    } finally {
      await reg.close();
    }
  },
});
