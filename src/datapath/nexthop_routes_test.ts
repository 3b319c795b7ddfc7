import assert from "node:assert/strict";
import { type Netlink, NetlinkError, type NexthopInfo, type RouteSpec } from "../../ffi/mod.ts";
import { mulberry32 } from "../../tests/helpers/prng.ts";
import { iprouteJson, withScratchNetns } from "../../tests/helpers/scratch_netns.ts";
import { requireRoot } from "../../tests/helpers/skip.ts";
import { NetlinkKernel } from "./kernel.ts";
import { parseCIDR } from "../net/ip.ts";
import {
  nexthopIdFor,
  nexthopIdForDst,
  type NexthopRouteOps,
  NexthopRoutes,
  WEFT_NEXTHOP_BASE,
} from "./nexthop_routes.ts";

Deno.test("next-hop ids: the full pass's quick parse agrees with parseCIDR on canonical, odd and broken text", () => {
  // What the id is by definition: the subnet's network address (parseCIDR masks it), upper 24 bits.
  const reference = (dst: string) => {
    try {
      const { net } = parseCIDR(dst);
      if (net.ip.family !== 4 || net.prefix > 24 || net.prefix < 8) return undefined;
      return WEFT_NEXTHOP_BASE + Number(net.ip.value >> 8n);
    } catch {
      return undefined;
    }
  };
  const rand = mulberry32(7);
  const octet = () => Math.floor(rand() * 256);
  const cases = [
    "10.244.3.0/",
    "10.244.3/24",
    "010.1.1.0/24",
    "1.2.3.4/024",
    "1.2.3.0/08",
    "256.1.1.0/24",
    "1.2.3.4/33",
    "1.2.3.4.5/24",
    "1..2.3/24",
    " 1.2.3.0/24",
    "1.2.3.0/24 ",
    "0.0.0.0/8",
    "255.255.255.255/24",
    "255.255.255.255/8",
    "10.244.3.0",
    "::ffff:10.1.2.0/120",
    "10.244.3.0/24/1",
  ];
  for (let i = 0; i < 3000; i++) {
    cases.push(`${octet()}.${octet()}.${octet()}.${octet()}/${Math.floor(rand() * 34)}`);
  }
  for (const dst of cases) assert.equal(nexthopIdForDst(dst), reference(dst), dst);
});

Deno.test("next-hop ids: one per IPv4 subnet up to /24, the same in every run; none for the rest", () => {
  assert.equal(nexthopIdForDst("10.244.3.0/24"), WEFT_NEXTHOP_BASE + (10 << 16) + (244 << 8) + 3);
  assert.equal(nexthopIdForDst("10.244.3.0/24"), nexthopIdForDst("10.244.3.0/24"));
  assert.notEqual(nexthopIdForDst("10.244.3.0/24"), nexthopIdForDst("10.245.3.0/24"));
  assert.equal(nexthopIdForDst("10.244.0.0/16"), WEFT_NEXTHOP_BASE + (10 << 16) + (244 << 8));
  assert.equal(nexthopIdForDst("10.244.3.16/28"), undefined, "longer than /24: the low byte would be lost");
  assert.equal(nexthopIdForDst("fd00::/64"), undefined);
  assert.equal(nexthopIdForDst("default"), undefined);
  const vx: RouteSpec = { dst: "10.244.3.0/24", gateway: "10.244.3.0", dev: 7, onlink: true };
  assert.ok(nexthopIdFor(vx));
  assert.equal(nexthopIdFor({ dst: vx.dst, dev: 7 }), undefined, "a device route has no next hop");
  assert.equal(nexthopIdFor({ ...vx, dev: "flannel.1" }), undefined, "a device by name: plain");
  assert.equal(nexthopIdFor({ ...vx, type: "blackhole" }), undefined);
  assert.equal(nexthopIdFor({ ...vx, table: 100 }), undefined);
  assert.equal(nexthopIdFor({ ...vx, gateway: "fd00::1" }), undefined);
});

/** Records the calls; `unsupported` answers like a kernel older than 5.3. */
function fakeOps(opts: { unsupported?: boolean; objects?: NexthopInfo[] } = {}) {
  const calls: string[] = [];
  const objects = [...(opts.objects ?? [])];
  const refuse = (op: string) => {
    throw new NetlinkError(op, 95, 0, "Operation not supported");
  };
  const ops: NexthopRouteOps = {
    routeAdd: (s) => void calls.push(`add ${s.dst} ${s.nexthopId ?? s.gateway}`),
    routeReplace: (s) => void calls.push(`replace ${s.dst} ${s.nexthopId ?? s.gateway}`),
    routeList: () => [],
    nexthopReplace: (s) => {
      if (opts.unsupported) refuse("nexthop replace");
      calls.push(`nh ${s.id} ${s.gateway}`);
      objects.push({ id: s.id, protocol: 87, gateway: s.gateway, index: s.dev, onlink: !!s.onlink });
    },
    nexthopDelete: (id) => {
      calls.push(`nh delete ${id}`);
      return true;
    },
    nexthopProtocols: () =>
      opts.unsupported ? refuse("nexthop list") : new Map(objects.map((n) => [n.id, n.protocol])),
  };
  return { ops, calls };
}

const route = (i: number): RouteSpec => ({
  dst: `10.244.${i}.0/24`,
  gateway: `10.244.${i}.0`,
  dev: 4,
  onlink: true,
});

Deno.test("without next-hop objects (Linux < 5.3) routes go in with their gateway, and nothing is asked again", () => {
  const { ops, calls } = fakeOps({ unsupported: true });
  const r = new NexthopRoutes(ops);
  r.routeAdd(route(1));
  r.routeReplace(route(2));
  r.learn([]);
  r.forget("10.244.1.0/24");
  assert.deepEqual(calls, ["add 10.244.1.0/24 10.244.1.0", "replace 10.244.2.0/24 10.244.2.0"]);
  assert.equal(r.enabled, false);
});

Deno.test("with net.ipv4.nexthop_compat_mode 0 (routes would not show their gateway) routes go in plainly", () => {
  const { ops, calls } = fakeOps();
  const r = new NexthopRoutes(ops, () => false);
  r.routeReplace(route(1));
  r.learn([]);
  assert.deepEqual(calls, ["replace 10.244.1.0/24 10.244.1.0"]);
  assert.equal(r.enabled, false);
});

Deno.test("an id held by somebody else's next-hop object is never touched: that route goes in plainly", () => {
  const taken = nexthopIdForDst("10.244.1.0/24")!;
  const { ops, calls } = fakeOps({ objects: [{ id: taken, protocol: 4, index: 2, onlink: false }] });
  const r = new NexthopRoutes(ops);
  r.routeReplace(route(1));
  r.routeReplace(route(2));
  r.forget("10.244.1.0/24");
  r.learn([]); // weft's object of 10.244.2.0/24 is named by no route of weft's: pruned; the static one stays
  const own = nexthopIdForDst("10.244.2.0/24")!;
  assert.deepEqual(calls, [
    "replace 10.244.1.0/24 10.244.1.0",
    `nh ${own} 10.244.2.0`,
    `replace 10.244.2.0/24 ${own}`,
    `nh delete ${own}`,
  ]);
});

/** A node namespace with an uplink and a flannel-like vxlan device. */
function vxlanNode(nl: Netlink): number {
  nl.linkAddVeth({ name: "eth0", peerName: "eth0p" });
  nl.addrAdd("eth0", "192.168.90.1/24");
  nl.linkSetUp("eth0");
  nl.linkSetUp("eth0p");
  const vx = nl.linkAddVxlan({ name: "flannel.1", vni: 1, local: "192.168.90.1", dev: "eth0" });
  nl.linkSetUp(vx.index);
  return vx.index;
}

Deno.test({
  name: "peers' routes through next-hop objects: what `ip route` shows, delete, prune, a restart, drift",
  ignore: requireRoot(),
  fn: () =>
    withScratchNetns("nh", async (ns, nl) => {
      const dev = vxlanNode(nl);
      const k = new NetlinkKernel(nl);
      k.read(new Set([dev]));
      const spec = (i: number) => ({ dst: `10.244.${i}.0/24`, gateway: `10.244.${i}.0`, dev, onlink: true });
      for (let i = 1; i <= 3; i++) k.apply({ kind: "route", spec: spec(i) });
      assert.ok(k.nexthops.enabled);

      // The kernel's own tools see flannel's route, with the object's id beside it.
      const shown = await iprouteJson(ns, "ip", "route", "show", "proto", "87");
      assert.deepEqual(
        shown.map((r) => [r.dst, r.gateway, r.dev, r.nhid, (r.flags as string[]).includes("onlink")]),
        [1, 2, 3].map((
          i,
        ) => [`10.244.${i}.0/24`, `10.244.${i}.0`, "flannel.1", nexthopIdForDst(`10.244.${i}.0/24`), true]),
      );
      assert.equal(nl.routeGet("10.244.2.9").gateway, "10.244.2.0");
      const id1 = nexthopIdForDst("10.244.1.0/24")!;
      assert.deepEqual(nl.nexthopList().find((n) => n.id === id1), {
        id: id1,
        protocol: 87,
        index: dev,
        onlink: true,
        gateway: "10.244.1.0",
      }, "the object as weft reads it back");
      // weft's reader (libnl) sees what it always saw: the drift check finds every entry in place.
      const read = k.read(new Set([dev])).routes.map((r) => `${r.dst} ${r.gateway} ${r.index} ${r.onlink}`);
      assert.deepEqual(read, [1, 2, 3].map((i) => `10.244.${i}.0/24 10.244.${i}.0 ${dev} true`));

      // A deleted route takes its object with it.
      k.remove({ kind: "route", spec: spec(3) });
      assert.deepEqual(
        nl.nexthopList().map((n) => n.id).sort(),
        [1, 2].map((i) => nexthopIdForDst(`10.244.${i}.0/24`)),
      );

      // A restarted agent (new state, same kernel) replaces its objects instead of adding more, and prunes
      // only objects no route names: here one left behind by a route somebody deleted.
      nl.routeDelete({ dst: "10.244.2.0/24", protocol: 87 });
      const again = new NetlinkKernel(nl);
      again.read(new Set([dev]));
      assert.deepEqual(nl.nexthopList().map((n) => n.id), [nexthopIdForDst("10.244.1.0/24")]);
      again.apply({ kind: "route", spec: spec(1) });
      again.apply({ kind: "route", spec: spec(2) });
      assert.equal(nl.nexthopList().length, 2);
      assert.equal(nl.routeList({ protocol: 87 }).length, 2);

      // Somebody changes the object's gateway: the route now shows it, and applying the entry repairs both.
      await new Deno.Command("ip", {
        args: [
          "-n",
          ns,
          "nexthop",
          "replace",
          "id",
          String(nexthopIdForDst("10.244.1.0/24")),
          "via",
          "10.244.9.0",
          "dev",
          "flannel.1",
          "onlink",
          "proto",
          "87",
        ],
      }).output();
      assert.equal(nl.routeGet("10.244.1.5").gateway, "10.244.9.0");
      again.apply({ kind: "route", spec: spec(1) });
      assert.equal(nl.routeGet("10.244.1.5").gateway, "10.244.1.0");
    }),
});
