import assert from "node:assert/strict";
import type { Netlink } from "../../ffi/mod.ts";
import { iprouteJson, withScratchNetns } from "../../tests/helpers/scratch_netns.ts";
import { selectInterface } from "./iface.ts";

/** A namespace with two "NICs" (bridges, as this kernel has no dummy): ext0 (default route) and data0. */
function withNode(fn: (nl: Netlink) => void, defaultRoute = true): Promise<void> {
  return withScratchNetns("if", (_ns, nl) => {
    const ext = nl.linkAddBridge({ name: "ext0", mtu: 1400 });
    nl.addrReplace(ext.index, "192.168.9.2/24");
    nl.linkSetUp(ext.index);
    const data = nl.linkAddBridge({ name: "data0", mtu: 9000 });
    nl.addrReplace(data.index, "10.20.0.5/16");
    nl.addrReplace(data.index, "10.20.0.6/16");
    nl.linkSetUp(data.index);
    if (defaultRoute) {
      nl.routeReplace({ dst: "0.0.0.0/0", gateway: "192.168.9.1", dev: ext.index, protocol: 3 });
    }
    fn(nl);
  });
}

const none = { iface: [], ifaceRegex: [] };
const root = { ignore: Deno.uid() !== 0 };

Deno.test({
  name: "selectInterface() takes the default route's interface when no flag names one",
  ...root,
  fn: () =>
    withNode((nl) => {
      const e = selectInterface(nl, none);
      assert.equal(e.name, "ext0");
      assert.equal(e.ifaceIP, "192.168.9.2");
      assert.equal(e.publicIP, "192.168.9.2");
      assert.equal(e.mtu, 1400);
      assert.deepEqual(e.cidrs, ["192.168.9.2/24"]);
    }),
});

Deno.test({
  name: "selectInterface() takes --iface by name, the first existing one of several",
  ...root,
  fn: () =>
    withNode((nl) => {
      const e = selectInterface(nl, { ...none, iface: ["eth7", "data0", "ext0"] });
      assert.equal(e.name, "data0");
      assert.equal(e.ifaceIP, "10.20.0.5");
      assert.equal(e.mtu, 9000);
    }),
});

Deno.test({
  name: "selectInterface() takes --iface by IP and uses that IP on a multi-address interface",
  ...root,
  fn: () =>
    withNode((nl) => {
      const e = selectInterface(nl, { ...none, iface: ["10.20.0.6"] });
      assert.equal(e.name, "data0");
      assert.equal(e.ifaceIP, "10.20.0.6");
      assert.equal(e.publicIP, "10.20.0.6");
    }),
});

Deno.test({
  name: "selectInterface() matches --iface-regex against names and addresses",
  ...root,
  fn: () =>
    withNode((nl) => {
      assert.equal(selectInterface(nl, { ...none, ifaceRegex: ["^data"] }).name, "data0");
      assert.equal(selectInterface(nl, { ...none, ifaceRegex: ["^192\\.168\\."] }).name, "ext0");
    }),
});

Deno.test({
  name: "selectInterface() publishes --public-ip while the tunnel keeps the interface's own address",
  ...root,
  fn: () =>
    withNode((nl) => {
      const e = selectInterface(nl, { ...none, publicIP: "203.0.113.7" });
      assert.equal(e.publicIP, "203.0.113.7");
      assert.equal(e.ifaceIP, "192.168.9.2");
    }),
});

Deno.test({
  name: "selectInterface() says what to do when nothing matches or there is no default route",
  ...root,
  fn() {
    withNode((nl) => {
      assert.throws(
        () => selectInterface(nl, { ...none, iface: ["eth9"] }),
        /--iface eth9: no such interface/,
      );
      assert.throws(() => selectInterface(nl, { ...none, ifaceRegex: ["^wlan"] }), /no interface matches/);
      assert.throws(
        () => selectInterface(nl, { iface: ["eth9"], ifaceRegex: ["^wlan"] }),
        /--iface eth9: no such interface.*; --iface-regex \^wlan: no interface matches/,
      );
    });
    withNode((nl) => {
      assert.throws(
        () => selectInterface(nl, none),
        /no default route: name the external interface with --iface/,
      );
    }, false);
  },
});

Deno.test({
  name:
    "selectInterface() takes --iface-can-reach's interface: the one the kernel routes each target through",
  ...root,
  fn: () =>
    withScratchNetns("ifr", async (ns, nl) => {
      const ext = nl.linkAddBridge({ name: "ext0", mtu: 1400 });
      nl.addrReplace(ext.index, "192.168.9.2/24");
      nl.linkSetUp(ext.index);
      const data = nl.linkAddBridge({ name: "data0", mtu: 9000 });
      nl.addrReplace(data.index, "10.20.0.5/16");
      nl.addrReplace(data.index, "10.20.0.6/16");
      nl.linkSetUp(data.index);
      // Two targets behind two different links; the nodes' network prefers the second address.
      nl.routeReplace({ dst: "0.0.0.0/0", gateway: "192.168.9.1", dev: ext.index, protocol: 3 });
      nl.routeReplace({
        dst: "172.16.0.0/16",
        gateway: "10.20.0.1",
        dev: data.index,
        src: "10.20.0.6",
        protocol: 3,
      });

      const nodes = selectInterface(nl, { ...none, ifaceCanReach: "172.16.5.5" });
      assert.equal(nodes.name, "data0");
      assert.equal(nodes.ifaceIP, "10.20.0.6", "the route's source address, as `ip route get` prints it");
      assert.equal(nodes.publicIP, "10.20.0.6");
      assert.equal(nodes.mtu, 9000);
      const internet = selectInterface(nl, { ...none, ifaceCanReach: "198.51.100.1" });
      assert.equal(internet.name, "ext0");
      assert.equal(internet.ifaceIP, "192.168.9.2");
      const onLink = selectInterface(nl, { ...none, ifaceCanReach: "10.20.7.7" });
      assert.equal(onLink.name, "data0");

      // The FFI lookup answers what iproute2 answers.
      for (const target of ["172.16.5.5", "198.51.100.1", "10.20.7.7"]) {
        const [ref] = await iprouteJson(ns, "ip", "route", "get", target);
        const got = nl.routeGet(target);
        assert.equal(got.index, nl.linkGet(String(ref!.dev))!.index, target);
        assert.equal(got.src, ref!.prefsrc, target);
        assert.equal(got.gateway, ref!.gateway, target);
      }
      nl.routeDelete({ dst: "0.0.0.0/0", protocol: 3 });
      assert.throws(
        () => selectInterface(nl, { ...none, ifaceCanReach: "198.51.100.1" }),
        /--iface-can-reach 198\.51\.100\.1: no route to it \(.*ENETUNREACH/,
      );
    }),
});

Deno.test({
  name:
    "selectInterface() follows flanneld's precedence: --iface, then --iface-regex, then --iface-can-reach",
  ...root,
  fn: () =>
    withNode((nl) => {
      nl.routeReplace({
        dst: "172.16.0.0/16",
        gateway: "10.20.0.1",
        dev: nl.linkGet("data0")!.index,
        protocol: 3,
      });
      const reach = { ifaceCanReach: "172.16.5.5" };
      assert.equal(selectInterface(nl, { ...none, ...reach, iface: ["ext0"] }).name, "ext0", "--iface first");
      assert.equal(
        selectInterface(nl, { ...none, ...reach, ifaceRegex: ["^ext"] }).name,
        "ext0",
        "then regexes",
      );
      // An --iface or regex that finds nothing falls through to the next rule, as in flanneld.
      assert.equal(
        selectInterface(nl, { iface: ["eth9"], ifaceRegex: ["^wlan"], ...reach }).name,
        "data0",
        "then --iface-can-reach",
      );
      assert.equal(selectInterface(nl, { iface: ["eth9"], ifaceRegex: ["^ext"] }).name, "ext0");
      // A regex matching an address wins over one matching a name, and that address is used.
      const e = selectInterface(nl, { ...none, ifaceRegex: ["^10\\.20\\.0\\.6$|^ext"] });
      assert.equal(e.name, "data0");
      assert.equal(e.ifaceIP, "10.20.0.6");
    }),
});

Deno.test({
  name: "selectInterface() without interface flags takes the interface holding --public-ip, as flanneld does",
  ...root,
  fn: () =>
    withNode((nl) => {
      const e = selectInterface(nl, { ...none, publicIP: "10.20.0.6" });
      assert.equal(e.name, "data0", "not the default route's ext0");
      assert.equal(e.ifaceIP, "10.20.0.6");
      assert.equal(e.publicIP, "10.20.0.6");
    }),
});
