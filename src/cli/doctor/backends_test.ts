import assert from "node:assert/strict";
import { withNetns } from "../../../ffi/mod.ts";
import { Tun } from "../../../ffi/tun.ts";
import { UdpSocket } from "../../../ffi/udp_socket.ts";
import { requireRoot } from "../../../tests/helpers/topology.ts";
import { withScratchNetns } from "../../../tests/helpers/scratch_netns.ts";
import { checkUdpBackend, checkWireguard, kernelHasWireguard } from "./backends.ts";

Deno.test({
  name: "doctor: flannel0 without the udp loop fails with a fix; with a listener on 8285 it is ok",
  ignore: requireRoot(),
  async fn() {
    await withScratchNetns("docudp", (ns, nl) => {
      nl.linkSetUp("lo");
      assert.equal(withNetns(ns, () => checkUdpBackend(nl)).status, "skip");
      using tun = withNetns(ns, () => Tun.open({ name: "flannel0" }));
      const down = withNetns(ns, () => checkUdpBackend(nl));
      assert.equal(down.status, "fail");
      assert.match(down.message, /nothing listens on UDP 8285/);
      assert.match(down.fix!, /start the agent/);
      using sock = withNetns(ns, () => UdpSocket.bind("127.0.0.1", 8285));
      assert.equal(withNetns(ns, () => checkUdpBackend(nl)).status, "ok");
      assert.ok(tun.fd >= 0 && sock.fd >= 0);
    });
  },
});

Deno.test({
  name: "doctor: with no flannel-wg it says which WireGuard the backend would use",
  ignore: requireRoot(),
  async fn() {
    await withScratchNetns("docwg", (ns, nl) => {
      const f = withNetns(ns, () => checkWireguard(nl));
      assert.equal(f.status, "skip");
      assert.match(
        f.message,
        kernelHasWireguard()
          ? /would use kernel WireGuard/
          : /userspace wireguard-go|wireguard-go is not installed/,
      );
    });
  },
});
