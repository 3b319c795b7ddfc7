import assert from "node:assert/strict";
import { type Netlink, setTxChecksumOffload, txChecksumOffload } from "../../../ffi/mod.ts";
import { withScratchNetns } from "../../../tests/helpers/scratch_netns.ts";
import { selectInterface } from "../../net/iface.ts";
import type { VxlanBackendOptions } from "./options.ts";
import { parseNet } from "../../net/ip.ts";
import type { Lease } from "../../lease/lease.ts";
import { leaseFilterFor } from "../backend.ts";
import { HostGwBackend } from "../hostgw/hostgw.ts";
import { VxlanBackend } from "./vxlan.ts";

const OPTS: VxlanBackendOptions = {
  vni: 1,
  port: 0,
  gbp: false,
  directRouting: false,
  learning: false,
  txChecksumOffload: false,
};
const root = { ignore: Deno.uid() !== 0 };

function lease(n: number, publicIP: string, type = "vxlan"): Lease {
  return {
    subnet: parseNet(`10.244.${n}.0/24`),
    key: `10.244.${n}.0-24`,
    attrs: {
      PublicIP: publicIP,
      PublicIPv6: null,
      BackendType: type,
      BackendData: type === "vxlan" ? { VNI: 1, VtepMAC: `02:00:00:00:00:0${n}` } : null,
    },
  };
}

/** A node namespace whose external interface is ext0 (a bridge: no dummy here), 192.168.9.2/24, MTU 1400. */
function withNode(fn: (nl: Netlink) => void): Promise<void> {
  return withScratchNetns("vx", (_ns, nl) => {
    const ext = nl.linkAddBridge({ name: "ext0", mtu: 1400 });
    nl.addrReplace(ext.index, "192.168.9.2/24");
    nl.linkSetUp(ext.index);
    fn(nl);
  });
}

const extOf = (nl: Netlink, publicIP?: string) =>
  selectInterface(nl, { iface: ["ext0"], ifaceRegex: [], ...(publicIP ? { publicIP } : {}) });

Deno.test({
  name: "VxlanBackend creates flannel.1 like flannel: MTU − 50, the lease's /32, the previous lease's MAC",
  ...root,
  fn: () =>
    withNode((nl) => {
      const b = new VxlanBackend(nl, OPTS, extOf(nl), "02:11:22:33:44:55");
      assert.equal(b.mtu, 1350);
      assert.deepEqual(b.backendData(), { VNI: 1, VtepMAC: "02:11:22:33:44:55" });
      assert.equal(b.ensureDevice(lease(3, "192.168.9.2")), "created");
      const dev = nl.linkGet("flannel.1")!;
      assert.equal(dev.mac, "02:11:22:33:44:55");
      assert.equal(dev.mtu, 1350);
      assert.ok(dev.up);
      assert.equal(dev.vxlan?.vni, 1);
      assert.equal(dev.vxlan?.local, "192.168.9.2");
      assert.equal(dev.vxlan?.learning, false);
      assert.equal(dev.vxlan?.link, nl.linkIndex("ext0"));
      assert.deepEqual(nl.addrList(dev.index, 4).map((a) => a.cidr), ["10.244.3.0/32"]);
      assert.equal(b.ensureDevice(lease(3, "192.168.9.2")), "unchanged");
    }),
});

Deno.test({
  name: "VxlanBackend keeps an existing compatible device and its MAC across a restart",
  ...root,
  fn: () =>
    withNode((nl) => {
      const first = new VxlanBackend(nl, OPTS, extOf(nl));
      first.ensureDevice(lease(3, "192.168.9.2"));
      const before = nl.linkGet("flannel.1")!;
      // The restarted agent: a different "previous lease" MAC must not win over the device's own.
      const again = new VxlanBackend(nl, OPTS, extOf(nl), "02:99:99:99:99:99");
      assert.equal(again.mac, before.mac);
      assert.equal(again.ensureDevice(lease(3, "192.168.9.2")), "unchanged");
      assert.equal(nl.linkGet("flannel.1")!.index, before.index, "the same device, not a new one");
    }),
});

Deno.test({
  name: "VxlanBackend puts back an altered MAC, MTU, address and link state in place",
  ...root,
  fn: () =>
    withNode((nl) => {
      const b = new VxlanBackend(nl, OPTS, extOf(nl), "02:11:22:33:44:55");
      b.ensureDevice(lease(3, "192.168.9.2"));
      const index = nl.linkIndex("flannel.1");
      nl.linkSetDown(index);
      nl.linkSetMac(index, "02:66:66:66:66:66");
      nl.linkSetMtu(index, 1000);
      nl.addrDelete(index, "10.244.3.0/32");
      assert.equal(b.ensureDevice(lease(3, "192.168.9.2")), "repaired");
      const dev = nl.linkGet("flannel.1")!;
      assert.equal(dev.index, index);
      assert.equal(dev.mac, "02:11:22:33:44:55");
      assert.equal(dev.mtu, 1350);
      assert.ok(dev.up);
      assert.deepEqual(nl.addrList(index, 4).map((a) => a.cidr), ["10.244.3.0/32"]);
    }),
});

Deno.test({
  name: "VxlanBackend recreates a flannel.1 with another VNI or port, keeping the published MAC",
  ...root,
  fn: () =>
    withNode((nl) => {
      const stale = nl.linkAddVxlan({
        name: "flannel.1",
        vni: 7,
        local: "192.168.9.2",
        dev: "ext0",
        port: 4789,
      });
      const b = new VxlanBackend(nl, OPTS, extOf(nl), "02:11:22:33:44:55");
      assert.equal(b.mac, "02:11:22:33:44:55", "an incompatible device's MAC is not adopted");
      assert.equal(b.ensureDevice(lease(3, "192.168.9.2")), "created");
      const dev = nl.linkGet("flannel.1")!;
      assert.notEqual(dev.index, stale.index);
      assert.equal(dev.vxlan?.vni, 1);
      assert.equal(dev.mac, "02:11:22:33:44:55");
    }),
});

Deno.test({
  name: "VxlanBackend wants flannel's three entries per vxlan peer and ignores other backends' leases",
  ...root,
  fn: () =>
    withNode((nl) => {
      const b = new VxlanBackend(nl, OPTS, extOf(nl));
      b.ensureDevice(lease(3, "192.168.9.2"));
      const dev = nl.linkIndex("flannel.1");
      assert.deepEqual(b.entriesFor(lease(4, "192.168.50.4")), [
        { kind: "neigh", spec: { dev, ip: "10.244.4.0", mac: "02:00:00:00:00:04" } },
        { kind: "fdb", spec: { dev, mac: "02:00:00:00:00:04", dst: "192.168.50.4" } },
        { kind: "route", spec: { dst: "10.244.4.0/24", gateway: "10.244.4.0", dev, onlink: true } },
      ]);
      assert.equal(leaseFilterFor(b)(lease(5, "192.168.9.5", "host-gw")), false);
      assert.equal(leaseFilterFor(b)(lease(4, "192.168.50.4")), true);
    }),
});

Deno.test({
  name: "VxlanBackend with DirectRouting routes same-L2 peers via their PublicIP and tunnels the rest",
  ...root,
  fn: () =>
    withNode((nl) => {
      const b = new VxlanBackend(nl, { ...OPTS, directRouting: true }, extOf(nl));
      b.ensureDevice(lease(3, "192.168.9.2"));
      const ext = nl.linkIndex("ext0");
      assert.deepEqual(b.entriesFor(lease(4, "192.168.9.4")), [
        { kind: "route", spec: { dst: "10.244.4.0/24", gateway: "192.168.9.4", dev: ext } },
      ]);
      assert.equal(b.entriesFor(lease(5, "192.168.50.5"))?.length, 3, "another segment goes through VXLAN");
    }),
});

Deno.test({
  name: "HostGwBackend refuses a public IP that is not on the interface, naming the way out",
  ...root,
  fn: () =>
    withNode((nl) => {
      assert.throws(
        () => new HostGwBackend(extOf(nl, "203.0.113.7")),
        /host-gw: the public IP 203\.0\.113\.7 is not an address of ext0 .*use the vxlan backend/,
      );
      const b = new HostGwBackend(extOf(nl));
      assert.deepEqual(b.entriesFor(lease(4, "192.168.9.4", "host-gw")), [
        { kind: "route", spec: { dst: "10.244.4.0/24", gateway: "192.168.9.4", dev: nl.linkIndex("ext0") } },
      ]);
      assert.equal(leaseFilterFor(b)(lease(5, "192.168.9.5")), false, "vxlan leases are ignored");
    }),
});

Deno.test({
  name: "VxlanBackend dual-stack: flannel-v6.1 (MTU − 70, /128, own MAC) and per-peer IPv6 entries",
  ...root,
  fn: () =>
    withNode((nl) => {
      nl.addrReplace("ext0", "fd09::2/64", { nodad: true });
      const ext = extOf(nl);
      assert.equal(ext.ifaceIPv6, "fd09::2");
      const b = new VxlanBackend(nl, OPTS, ext, undefined, {
        ipv4: true,
        ipv6: true,
        previousMac6: "02:66:00:00:00:01",
      });
      assert.equal(b.mtu, 1330, "pods get the smaller MTU of the two devices");
      assert.deepEqual(b.backendV6Data(), { VNI: 1, VtepMAC: "02:66:00:00:00:01" });
      const own: Lease = { ...lease(3, "192.168.9.2"), ipv6Subnet: parseNet("fd00:0:0:3::/64") };
      assert.equal(b.ensureDevice(own), "created");
      const v6 = nl.linkGet("flannel-v6.1")!;
      assert.equal(v6.vxlan?.local, "fd09::2");
      assert.equal(v6.mtu, 1330);
      assert.equal(v6.mac, "02:66:00:00:00:01");
      assert.deepEqual(nl.addrList(v6.index, 6).filter((a) => a.scope === 0).map((a) => a.cidr), [
        "fd00:0:0:3::/128",
      ]);
      assert.equal(b.ensureDevice(own), "unchanged");
      assert.deepEqual(b.ownedDevices().sort(), [nl.linkIndex("flannel.1"), v6.index].sort());
      const peer: Lease = {
        ...lease(4, "192.168.9.4"),
        ipv6Subnet: parseNet("fd00:0:0:4::/64"),
        attrs: {
          ...lease(4, "192.168.9.4").attrs,
          PublicIPv6: "fd09::4",
          BackendV6Data: { VNI: 1, VtepMAC: "02:66:00:00:00:04" },
        },
      };
      const six = b.entriesFor(peer)!.filter((e) => e.kind !== "driver" && e.spec.dev === v6.index);
      assert.deepEqual(six, [
        { kind: "neigh", spec: { dev: v6.index, ip: "fd00:0:0:4::", mac: "02:66:00:00:00:04" } },
        { kind: "fdb", spec: { dev: v6.index, mac: "02:66:00:00:00:04", dst: "fd09::4" } },
        {
          kind: "route",
          spec: { dst: "fd00:0:0:4::/64", gateway: "fd00:0:0:4::", dev: v6.index, onlink: true },
        },
      ]);
      // A peer without IPv6 in its lease still gets its IPv4 entries.
      assert.equal(b.entriesFor(lease(5, "192.168.9.5"))!.length, 3);
    }),
});

Deno.test({
  name: "VxlanBackend and HostGwBackend refuse EnableIPv6 when the interface has no global IPv6 address",
  ...root,
  fn: () =>
    withNode((nl) => {
      assert.throws(
        () => new VxlanBackend(nl, OPTS, extOf(nl), undefined, { ipv6: true }),
        /EnableIPv6 is set but ext0 has no global IPv6 address/,
      );
      assert.throws(() => new HostGwBackend(extOf(nl), { ipv6: true }), /host-gw: EnableIPv6 is set/);
    }),
});

Deno.test({
  name:
    "VxlanBackend switches TX checksum offload off (Calico's rule), again after it is switched on, and leaves it with TxChecksumOffload",
  ...root,
  fn: () =>
    withNode((nl) => {
      const b = new VxlanBackend(nl, OPTS, extOf(nl));
      assert.equal(b.ensureDevice(lease(3, "192.168.9.2")), "created");
      assert.equal(txChecksumOffload("flannel.1", nl.netns), false);
      assert.ok(setTxChecksumOffload("flannel.1", true, nl.netns));
      assert.equal(b.ensureDevice(lease(3, "192.168.9.2")), "repaired");
      assert.equal(txChecksumOffload("flannel.1", nl.netns), false);
      // Kept across recreation: the device deleted, made again, offload off from the start.
      nl.linkDelete("flannel.1");
      assert.equal(b.ensureDevice(lease(3, "192.168.9.2")), "created");
      assert.equal(txChecksumOffload("flannel.1", nl.netns), false);
      nl.linkDelete("flannel.1");
      const keep = new VxlanBackend(nl, { ...OPTS, txChecksumOffload: true }, extOf(nl));
      keep.ensureDevice(lease(3, "192.168.9.2"));
      assert.equal(txChecksumOffload("flannel.1", nl.netns), true, "the kernel's default, untouched");
    }),
});

Deno.test({
  name: "VxlanBackend binds flannel.1 to the external interface again after it is deleted and re-added",
  ...root,
  fn: () =>
    withNode((nl) => {
      const ext = extOf(nl);
      const b = new VxlanBackend(nl, OPTS, ext);
      b.ensureDevice(lease(3, "192.168.9.2"));
      const old = nl.linkIndex("ext0");
      nl.linkDelete("ext0"); // the kernel deletes flannel.1 with it
      assert.equal(nl.linkGet("flannel.1"), undefined);
      assert.throws(() => b.ensureDevice(lease(3, "192.168.9.2")), /ext0 is gone/);
      const again = nl.linkAddBridge({ name: "ext0", mtu: 1400 });
      nl.addrReplace(again.index, "192.168.9.2/24");
      nl.linkSetUp(again.index);
      assert.notEqual(again.index, old);
      assert.equal(b.ensureDevice(lease(3, "192.168.9.2")), "created");
      assert.equal(nl.linkGet("flannel.1")?.vxlan?.link, again.index);
      assert.equal(ext.index, again.index, "the interface's new ifindex is the one entries use");
      assert.equal(b.ensureDevice(lease(3, "192.168.9.2")), "unchanged");
    }),
});
