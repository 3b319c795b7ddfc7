import assert from "node:assert/strict";
import { withNetns } from "../../../ffi/mod.ts";
import { stopPid } from "../../lab/lab.ts";
import { hasBinary, requireRoot, skipUnless } from "../../../tests/helpers/topology.ts";
import { uniqueIfName } from "../../../tests/helpers/names.ts";
import { withScratchNetns } from "../../../tests/helpers/scratch_netns.ts";
import { WireguardDevice } from "./device.ts";
import { generatePrivateKey, keyToBase64, publicKeyOf } from "./key.ts";
import { WireguardPeerDriver } from "./peers.ts";

const hasKernelWg = (() => {
  try {
    Deno.statSync("/sys/module/wireguard");
    return true;
  } catch {
    return false;
  }
})();

Deno.test({
  name:
    "WireguardDevice runs userspace WireGuard when the kernel has none, adopts it again, repairs drift, and its peers are reconciled by key",
  ignore: requireRoot() || skipUnless(hasBinary("wireguard-go"), "wireguard-go is not installed") ||
    skipUnless(!hasKernelWg, "the kernel has WireGuard: the userspace path is not taken"),
  sanitizeResources: false,
  sanitizeOps: false,
  async fn(t) {
    await withScratchNetns("wgdev", async (ns, nl) => {
      const name = uniqueIfName("wg");
      const privateKey = generatePrivateKey();
      const spec = { name, listenPort: 51820, mtu: 1420, privateKey };
      const pids: number[] = [];
      try {
        const dev = new WireguardDevice(nl, spec);
        const ensure = (d = dev) => withNetns(ns, () => d.ensure(["10.244.3.0/32"], ["10.244.0.0/16"]));

        await t.step("first ensure creates it with wireguard-go, key, port, MTU, address, route", () => {
          assert.equal(ensure(), "created");
          assert.equal(dev.impl, "userspace");
          pids.push(dev.startedPid!);
          const link = nl.linkGet(name)!;
          assert.equal(link.kind, "tun");
          assert.equal(link.mtu, 1420);
          assert.ok(link.up);
          assert.deepEqual(nl.addrList(link.index, 4).map((a) => a.cidr), ["10.244.3.0/32"]);
          const route = nl.routeList({ family: 4 }).find((r) => r.dst === "10.244.0.0/16");
          assert.equal(route?.index, link.index);
          const state = dev.control.get();
          assert.deepEqual(state.privateKey, privateKey);
          assert.equal(state.listenPort, 51820);
          assert.equal(ensure(), "unchanged");
        });

        const driver = new WireguardPeerDriver(name, () => dev.control);
        const k1 = keyToBase64(publicKeyOf(generatePrivateKey()));
        const k2 = keyToBase64(publicKeyOf(generatePrivateKey()));
        await t.step("peers are set, changed in place, and removed by public key", () => {
          const v1 = driver.value({
            endpoint: "192.168.77.12:51820",
            allowedIPs: ["10.244.1.0/24"],
            keepalive: 0,
          });
          driver.apply(k1, v1);
          assert.deepEqual(driver.list(), new Map([[k1, v1]]));
          const v1b = driver.value({
            endpoint: "192.168.77.22:51820",
            allowedIPs: ["10.244.1.0/24"],
            keepalive: 25,
          });
          driver.apply(k1, v1b);
          assert.deepEqual(driver.list(), new Map([[k1, v1b]]));
          // A new key for the same subnet: the new peer takes the subnet, then the old one is removed.
          driver.apply(k2, v1b);
          driver.remove(k1);
          assert.deepEqual(driver.list(), new Map([[k2, v1b]]));
          driver.remove(k1); // absent is fine
        });

        await t.step("a second WireguardDevice adopts the running device: no new process, peers kept", () => {
          const again = new WireguardDevice(nl, spec);
          assert.equal(ensure(again), "unchanged");
          assert.equal(again.startedPid, undefined);
          assert.equal(again.control.get().peers.length, 1);
        });

        await t.step("drift (MTU, address, down, route) is repaired in place", () => {
          const idx = nl.linkGet(name)!.index;
          nl.linkSetMtu(idx, 1300);
          nl.addrDelete(idx, "10.244.3.0/32");
          nl.routeDelete({ dst: "10.244.0.0/16" });
          nl.linkSetDown(idx);
          assert.equal(ensure(), "repaired");
          assert.equal(ensure(), "unchanged");
          assert.equal(nl.linkGet(name)!.mtu, 1420);
        });

        await t.step(
          "wireguard-go gone: the device is created again (its peers must be replayed)",
          async () => {
            await stopPid(pids[0]!);
            assert.equal(ensure(), "created");
            pids.push(dev.startedPid!);
            assert.notEqual(pids[1], pids[0]);
            assert.equal(dev.control.get().peers.length, 0);
          },
        );
      } finally {
        for (const pid of pids) await stopPid(pid);
      }
    });
  },
});
