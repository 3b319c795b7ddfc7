/**
 * Switching a node between flannel (its plugin delegating to Debian's `bridge` + `host-local`) and weft,
 * either way, without losing allocations or leaking pods: both share host-local's store (files and lock)
 * and flannel's saved per-container config.
 */
import assert from "node:assert/strict";
import { Netlink } from "../ffi/mod.ts";
import { cni, cniLab } from "./helpers/cni.ts";
import { ROOT } from "./helpers/topology.ts";
import { skipUnless } from "./helpers/skip.ts";

const BRIDGE = "/usr/lib/cni/bridge";
const HOST_LOCAL = "/usr/lib/cni/host-local";
const HAVE = (() => {
  try {
    return Deno.statSync(BRIDGE).isFile && Deno.statSync(HOST_LOCAL).isFile;
  } catch {
    return false;
  }
})();

Deno.test({
  name:
    "weft and Debian's host-local share one store: neither hands out the other's address, each frees the other's",
  ignore: !ROOT ||
    skipUnless(HAVE, `${BRIDGE} and ${HOST_LOCAL} not installed (apt: containernetworking-plugins)`),
  async fn() {
    await using lab = await cniLab({ net: "10.244.24" });
    const ipam = {
      cniVersion: "1.0.0",
      name: "cbr0",
      ipam: { type: "host-local", ranges: [[{ subnet: "10.244.24.0/24" }]], dataDir: `${lab.dir}/networks` },
    };
    const hl = await cni(
      lab.node,
      { command: "ADD", containerId: "hl1", netns: lab.pod(), ifname: "eth0" },
      ipam,
      [
        HOST_LOCAL,
      ],
    );
    assert.equal(hl.code, 0, hl.stdout + hl.stderr);
    assert.equal((hl.out!.ips as { address: string }[])[0]!.address, "10.244.24.2/24");
    const w = await cni(
      lab.node,
      { command: "ADD", containerId: "w1", netns: lab.pod(), ifname: "eth0" },
      lab.conf("1.0.0"),
    );
    assert.equal(w.code, 0, w.stdout + w.stderr);
    assert.equal(
      (w.out!.ips as { address: string }[])[0]!.address,
      "10.244.24.3/24",
      "after host-local's last_reserved_ip",
    );
    const hl2 = await cni(
      lab.node,
      { command: "ADD", containerId: "hl2", netns: lab.pod(), ifname: "eth0" },
      ipam,
      [
        HOST_LOCAL,
      ],
    );
    assert.equal(
      (hl2.out!.ips as { address: string }[])[0]!.address,
      "10.244.24.4/24",
      "host-local continues after weft's",
    );
    // host-local frees weft's allocation; weft's GC frees host-local's.
    const del = await cni(lab.node, { command: "DEL", containerId: "w1", netns: "", ifname: "eth0" }, ipam, [
      HOST_LOCAL,
    ]);
    assert.equal(del.code, 0, del.stdout + del.stderr);
    assert.deepEqual(lab.allocated(), ["10.244.24.2", "10.244.24.4"]);
    const gc = await cni(
      lab.node,
      { command: "GC" },
      lab.conf("1.1.0", { "cni.dev/valid-attachments": [{ containerID: "hl2", ifname: "eth0" }] }),
    );
    assert.equal(gc.code, 0, gc.stdout);
    assert.deepEqual(lab.allocated(), ["10.244.24.4"]);
  },
});

Deno.test({
  name: "weft DELs a pod that flannel's bridge + host-local added, replaying flannel's saved config",
  ignore: !ROOT ||
    skipUnless(HAVE, `${BRIDGE} and ${HOST_LOCAL} not installed (apt: containernetworking-plugins)`),
  async fn() {
    await using lab = await cniLab({ net: "10.244.25" });
    const pod = lab.pod();
    // What flannel's plugin renders and saves under dataDir/<containerID> before delegating to bridge.
    const rendered = {
      cniVersion: "0.3.1",
      name: "cbr0",
      type: "bridge",
      hairpinMode: true,
      isDefaultGateway: true,
      isGateway: true,
      ipMasq: false,
      mtu: 1450,
      ipam: {
        type: "host-local",
        ranges: [[{ subnet: "10.244.25.0/24" }]],
        routes: [{ dst: "10.244.0.0/16" }],
        dataDir: `${lab.dir}/networks`,
      },
    };
    const env = { containerId: "from-flannel", netns: pod, ifname: "eth0" };
    const add = await cni(lab.node, { command: "ADD", ...env }, rendered, [BRIDGE]);
    assert.equal(add.code, 0, add.stdout + add.stderr);
    Deno.mkdirSync(`${lab.dir}/flannel`, { recursive: true });
    Deno.writeTextFileSync(`${lab.dir}/flannel/from-flannel`, JSON.stringify(rendered));
    assert.equal(lab.allocated().length, 1);
    // kubelet now runs weft (installed as /opt/cni/bin/flannel). Its config even points the IPAM store
    // elsewhere: the saved config must win, as it does for flannel.
    const today = lab.conf("0.3.1", {
      delegate: { isDefaultGateway: true, ipam: { dataDir: `${lab.dir}/elsewhere` } },
    });
    const del = await cni(lab.node, { command: "DEL", ...env }, today);
    assert.equal(del.code, 0, del.stdout + del.stderr);
    assert.deepEqual(lab.allocated(), [], "the IP host-local gave is free");
    using nl = Netlink.open({ netns: pod });
    assert.equal(nl.linkGet("eth0"), undefined, "the pod's interface is gone");
    assert.throws(() => Deno.statSync(`${lab.dir}/flannel/from-flannel`), Deno.errors.NotFound);
  },
});

Deno.test({
  name: "flannel's way back works: Debian's bridge DELs a pod weft added, from weft's saved config",
  ignore: !ROOT ||
    skipUnless(HAVE, `${BRIDGE} and ${HOST_LOCAL} not installed (apt: containernetworking-plugins)`),
  async fn() {
    await using lab = await cniLab({ net: "10.244.26" });
    const pod = lab.pod();
    const env = { containerId: "from-weft", netns: pod, ifname: "eth0" };
    const add = await cni(lab.node, { command: "ADD", ...env }, lab.conf("1.0.0"));
    assert.equal(add.code, 0, add.stdout + add.stderr);
    // flannel's plugin DEL = read dataDir/<containerID>, hand it to the plugin it names.
    const saved = JSON.parse(Deno.readTextFileSync(`${lab.dir}/flannel/from-weft`));
    assert.equal(saved.type, "bridge");
    const del = await cni(lab.node, { command: "DEL", ...env }, saved, [BRIDGE]);
    assert.equal(del.code, 0, del.stdout + del.stderr);
    assert.deepEqual(lab.allocated(), [], "host-local (called by bridge) freed weft's allocation");
    using nl = Netlink.open({ netns: pod });
    assert.equal(nl.linkGet("eth0"), undefined);
  },
});
