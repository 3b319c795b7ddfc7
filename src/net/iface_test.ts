import assert from "node:assert/strict";
import type { Netlink } from "../../ffi/mod.ts";
import { withScratchNetns } from "../../tests/helpers/scratch_netns.ts";
import { selectInterface } from "./iface.ts";
import { requireRoot } from "../../tests/helpers/skip.ts";

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
const root = { ignore: requireRoot() };

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
    });
    withNode((nl) => {
      assert.throws(
        () => selectInterface(nl, none),
        /no default route: name the external interface with --iface/,
      );
    }, false);
  },
});
