import assert from "node:assert/strict";
import { sleep } from "../async.ts";
import { parseNetworkConfig } from "../config/net_conf.ts";
import type { Entry } from "../datapath/entries.ts";
import { type DatapathBackend, type KernelOps, Reconciler } from "../datapath/reconciler.ts";
import { formatNet, parseCIDR, parseNet } from "../net/ip.ts";
import { type Lease, type LeaseAttrs, leaseAttrsJSON } from "../lease/lease.ts";
import { SubnetManager } from "../lease/etcd/manager.ts";
import { MemoryRegistry } from "../lease/etcd/registry.ts";
import { networkRules } from "../lease/validate.ts";
import { PeerSync } from "./peer_sync.ts";

const CFG = parseNetworkConfig(JSON.stringify({ Network: "10.244.0.0/16" }));

/** A backend that wants one route per vxlan lease, and a kernel that only counts. */
function reconciler(): { r: Reconciler; applied: string[] } {
  const applied: string[] = [];
  const backend: DatapathBackend = {
    ownedDevices: () => [],
    entriesFor: (l: Lease): Entry[] | undefined =>
      l.attrs.BackendType === "vxlan" && l.subnet
        ? [{ kind: "route", spec: { dst: formatNet(l.subnet), gateway: l.attrs.PublicIP, dev: 1 } }]
        : undefined,
  } as unknown as DatapathBackend;
  const kernel: KernelOps = {
    apply: (e: Entry) => void applied.push(e.kind === "route" ? e.spec.dst : e.kind),
    remove: () => {},
    read: () => ({ routes: [], neighs: [], fdbs: [] }),
  };
  return { r: new Reconciler(backend, kernel, [parseNet("10.244.0.0/16")]), applied };
}

const attrs = (ip: string, mac: string): LeaseAttrs => ({
  PublicIP: ip,
  PublicIPv6: null,
  BackendType: "vxlan",
  BackendData: { VNI: 1, VtepMAC: mac },
});

async function until(what: string, ok: () => boolean): Promise<void> {
  const end = Date.now() + 30_000;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await sleep(10);
  }
}

Deno.test("PeerSync passes good leases to the reconciler and keeps hostile ones out, listed with their rule", async () => {
  const reg = new MemoryRegistry();
  const m = new SubnetManager(reg, "memory");
  // The own subnet is fixed: flannel's allocation picks a random free one, which could be a key the test
  // writes below (10.244.9.0 or 10.244.11.0: then that key would be the own lease, not a peer).
  const own = await m.acquireLease(CFG, attrs("192.168.1.1", "02:00:00:00:00:01"), {
    ttlSeconds: 60,
    previousSubnet: parseNet("10.244.1.0/24"),
  });
  assert.equal(own.key, "10.244.1.0-24");
  await reg.reserveSubnet("10.244.9.0-24", leaseAttrsJSON(attrs("192.168.1.9", "02:00:00:00:00:09")));
  await reg.reserveSubnet("10.244.0.0-16", leaseAttrsJSON(attrs("192.168.1.10", "02:00:00:00:00:10")));
  await reg.reserveSubnet("garbage", "x");
  await reg.reserveSubnet("10.244.11.0-24", leaseAttrsJSON(attrs("127.0.0.1", "02:00:00:00:00:11")));
  const { r, applied } = reconciler();
  const owns: string[] = [];
  let synced = false;
  const peers = new PeerSync(m, r, () => true, {
    ownKey: () => own.key,
    ownPublicIP: "192.168.1.1",
    onOwn: (type, l) => owns.push(`${type} ${l.attrs.PublicIP}`),
    onSynced: () => synced = true,
    onConnectivity: () => {},
  }, {
    network: networkRules(CFG),
    node: { ownSubnets: [], addresses: [{ ...parseCIDR("192.168.1.1/24"), dev: "eth0" }], vtepMacs: [] },
  });
  peers.setOwn(own);
  const stop = new AbortController();
  const run = peers.run(stop.signal);
  try {
    await until("synced", () => synced);
    await r.settled();
    assert.deepEqual(r.desiredKeys(), ["10.244.9.0-24"]);
    assert.deepEqual(applied, ["10.244.9.0/24"]);
    assert.deepEqual(peers.rejected().map((x) => `${x.key} ${x.rule}`), [
      "10.244.0.0-16 subnet_wrong_length",
      "10.244.11.0-24 public_ip_loopback",
      "garbage key_unparseable",
    ]);
    // A second key for the own subnet loses to the own (older) lease; a node's address as PublicIP is refused.
    await reg.reserveSubnet(
      `${own.key}&fd00::-64`,
      leaseAttrsJSON(attrs("192.168.1.12", "02:00:00:00:00:12")),
    );
    await reg.reserveSubnet("10.244.13.0-24", leaseAttrsJSON(attrs("192.168.1.255", "02:00:00:00:00:13")));
    await until("judged", () => peers.rejected().length === 5);
    assert.equal(peers.rejected().find((x) => x.key.includes("&"))?.rule, "subnet_conflict");
    assert.equal(peers.rejected().find((x) => x.key === "10.244.13.0-24")?.rule, "public_ip_broadcast");
    // Another value under the own key goes to the agent (which has the keeper write its own back).
    await reg.reserveSubnet(own.key, leaseAttrsJSON(attrs("192.168.1.66", "02:00:00:00:00:66")));
    await until("own change seen", () => owns.includes("added 192.168.1.66"));
    // Fixed in place: accepted and applied.
    await reg.reserveSubnet("10.244.11.0-24", leaseAttrsJSON(attrs("192.168.1.11", "02:00:00:00:00:11")));
    await until("fixed", () => r.desiredKeys().includes("10.244.11.0-24"));
    assert.equal(peers.rejectedTotal.get("public_ip_loopback"), 1);
    await r.settled();
    assert.deepEqual(applied.sort(), ["10.244.11.0/24", "10.244.9.0/24"]);
  } finally {
    stop.abort();
    await run;
    r.stop();
  }
});
