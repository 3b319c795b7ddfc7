/**
 * etcd goes away for 15 s and comes back: lease watches resume without losing what changed while they
 * were disconnected, and the own lease survives (its keeper retries through the outage).
 */
import assert from "node:assert/strict";
import { parseNetworkConfig } from "../src/config/net_conf.ts";
import {
  type LeaseAttrs,
  type LeaseEvent,
  openEtcdRegistry,
  type Registry,
  SubnetManager,
} from "../src/lease/etcd/mod.ts";
import { haveEtcd, startEtcd, startEtcdProxy } from "./helpers/etcd.ts";

const PREFIX = "/coreos.com/network";
const attrs = (ip: string, mac = "0a:00:00:00:00:01"): LeaseAttrs => ({
  PublicIP: ip,
  PublicIPv6: null,
  BackendType: "vxlan",
  BackendData: { VNI: 1, VtepMAC: mac },
});

async function until(what: string, ms: number, ok: () => boolean): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A lease watch that records what it delivered and when it could reach etcd. */
function recorder(reg: Registry, signal: AbortSignal) {
  const state = new Map<string, LeaseEvent>();
  const events: { at: number; ev: LeaseEvent }[] = [];
  const ups: { at: number; up: boolean }[] = [];
  const done = new SubnetManager(reg).watchLeases((b) => {
    for (const ev of b) {
      state.set(ev.lease.key, ev);
      events.push({ at: Date.now(), ev });
    }
  }, { signal, onConnectivity: (up) => ups.push({ at: Date.now(), up }) });
  return { state, events, ups, done };
}

Deno.test({
  name:
    "etcd stopped for 15 s and restarted: watches resume, nothing changed meanwhile is lost, the own lease survives",
  ignore: !haveEtcd(),
  async fn() {
    await using etcd = await startEtcd();
    // One watcher talks to etcd directly; the other through a proxy that stays cut for 3 s after etcd is
    // back, so that changes are made while it is disconnected and must reach it afterwards.
    await using proxy = startEtcdProxy(etcd);
    const open = (endpoint: string) =>
      openEtcdRegistry({ endpoints: [endpoint], prefix: PREFIX, timeoutMs: 2000 });
    const ownerReg = await open(etcd.endpoint);
    const directReg = await open(etcd.endpoint);
    const cutReg = await open(proxy.endpoint);
    const owner = new SubnetManager(ownerReg);
    const stop = new AbortController();
    try {
      // The own lease stays below 10.244.41.0 so the subnets written by hand below never overwrite it.
      const cfg = parseNetworkConfig({
        Network: "10.244.0.0/16",
        SubnetMin: "10.244.1.0",
        SubnetMax: "10.244.40.0",
      });
      // A 10 s lease across a 15 s outage: it only survives if the keeper renews once etcd is back
      // (etcd restarts leases with a full TTL when it comes up).
      const own = await owner.acquireLease(cfg, attrs("192.168.2.1"), { ttlSeconds: 10 });
      const keeper = owner.keepLease(cfg, attrs("192.168.2.1"), own, {
        ttlSeconds: 10,
        renewMarginSeconds: 5,
      });
      const keeping = keeper.run(stop.signal);
      const put = (key: string, a: LeaseAttrs) =>
        etcd.etcdctl(["put", `${PREFIX}/subnets/${key}`, JSON.stringify(a)]);
      await put("10.244.50.0-24", attrs("10.0.0.50")); // deleted after the outage
      await put("10.244.51.0-24", attrs("10.0.0.51")); // changes its VTEP MAC after the outage
      const direct = recorder(directReg, stop.signal);
      const cut = recorder(cutReg, stop.signal);
      await until("snapshots", 30_000, () => direct.state.size === 3 && cut.state.size === 3);

      await etcd.stop();
      proxy.cut();
      const stoppedAt = Date.now();
      await new Promise((r) => setTimeout(r, 15_000));
      for (const w of [direct, cut]) {
        assert.equal(
          w.events.filter((e) => e.at >= stoppedAt).length,
          0,
          "an unreachable etcd removes nobody",
        );
        assert.ok(w.ups.some((u) => !u.up && u.at >= stoppedAt), "the outage was noticed");
      }
      assert.ok(keeper.failures > 0, "the keeper noticed the outage");
      const renewalsBefore = keeper.renewals;
      await etcd.restart();
      const upAt = Date.now();
      for (let i = 0; i < 5; i++) await put(`10.244.${100 + i}.0-24`, attrs(`10.0.1.${i}`));
      await etcd.etcdctl(["del", `${PREFIX}/subnets/10.244.50.0-24`]);
      await put("10.244.51.0-24", attrs("10.0.0.51", "0a:00:00:00:00:51"));
      const changedAt = Date.now();
      const converged = (w: typeof direct) => () =>
        [0, 1, 2, 3, 4].every((i) => w.state.get(`10.244.${100 + i}.0-24`)?.type === "added") &&
        w.state.get("10.244.50.0-24")?.type === "removed" && !!w.state.get("10.244.51.0-24")?.previous;
      await until("the direct watcher has every change", 20_000, converged(direct));
      await new Promise((r) => setTimeout(r, Math.max(0, upAt + 3000 - Date.now())));
      assert.ok(!converged(cut)(), "the cut-off watcher cannot have seen the changes yet");
      proxy.heal();
      const healedAt = Date.now();
      await until("the cut-off watcher has every change", 20_000, converged(cut));
      const cutDone = Date.now();
      assert.ok(changedAt < healedAt, "all 7 changes were made while it was disconnected");

      await until("the keeper renews after the outage", 30_000, () => keeper.renewals > renewalsBefore);
      const stored = await new SubnetManager(directReg).getLease(own.key);
      assert.equal(stored?.attrs.PublicIP, "192.168.2.1", "the own lease is still ours");
      assert.equal(keeper.reacquisitions, 0, "never lost, so never re-acquired");
      const directBack = direct.ups.find((u) => u.up && u.at > stoppedAt)!.at - upAt;
      console.log(
        `  direct watch re-listed ${directBack} ms after etcd answered again; the watcher cut off for 3 s ` +
          `more got all 7 changes ${cutDone - healedAt} ms after it could connect; keeper: ` +
          `${keeper.failures} failed tries during the outage, renewed after it`,
      );
      stop.abort();
      await Promise.all([keeping, direct.done, cut.done]);
    } finally {
      stop.abort();
      await Promise.all([ownerReg.close(), directReg.close(), cutReg.close()]);
    }
  },
});
