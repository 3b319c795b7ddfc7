/**
 * Route, neighbour and FDB wrappers in detail, beyond tests/ffi_netlink_test.ts: what replace really
 * changes, route attributes (metric, scope, family, protocol), IPv6 neighbours, FDB remote updates, and the
 * fields of the typed errors — each checked against `ip -j`/`bridge -j` where it matters.
 */
import assert from "node:assert/strict";
import {
  type BatchRequest,
  type Netlink,
  NetlinkError,
  type RouteInfo,
  WEFT_ROUTE_PROTOCOL,
} from "../ffi/mod.ts";
import { requireRoot } from "./helpers/topology.ts";
import { iprouteJson, withScratchNetns } from "./helpers/scratch_netns.ts";

type Json = Record<string, unknown>;

function json(ns: string, tool: "ip" | "bridge", ...args: string[]): Promise<Json[]> {
  return iprouteJson(ns, tool, ...args);
}

/** A namespace with `eth0` (a bridge, up, 10.1.0.1/24 and fd00:1::1/64) and `flannel.1` (vxlan, up). */
function inNode(fn: (ns: string, nl: Netlink, vx: number, eth: number) => Promise<void> | void) {
  return withScratchNetns("rtn", async (ns, nl) => {
    const eth = nl.linkAddBridge({ name: "eth0" });
    nl.linkSetUp(eth.index);
    nl.addrReplace(eth.index, "10.1.0.1/24");
    nl.addrReplace(eth.index, "fd00:1::1/64");
    const vx = nl.linkAddVxlan({ name: "flannel.1", vni: 1, local: "10.1.0.1", dev: eth.index, port: 8472 });
    nl.addrReplace(vx.index, "10.244.1.0/32");
    nl.linkSetUp(vx.index);
    await fn(ns, nl, vx.index, eth.index);
  });
}

function caught(fn: () => unknown): NetlinkError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof NetlinkError, `expected NetlinkError, got ${err}`);
    return err;
  }
  assert.fail("expected a NetlinkError, nothing was thrown");
}

Deno.test({
  name: "routeReplace() changes the next hop of an existing route in place; routeAdd() refuses a duplicate",
  ignore: requireRoot(),
  async fn() {
    await inNode(async (ns, nl, vx, eth) => {
      nl.routeReplace({ dst: "10.244.2.0/24", gateway: "10.244.2.0", dev: vx, onlink: true });
      // DirectRouting switch: same destination, now via the peer's public IP on eth0.
      nl.routeReplace({ dst: "10.244.2.0/24", gateway: "10.1.0.2", dev: eth });
      const r = nl.routeList({ protocol: WEFT_ROUTE_PROTOCOL }).filter((x) => x.dst === "10.244.2.0/24");
      assert.equal(r.length, 1);
      assert.deepEqual([r[0]!.gateway, r[0]!.index, r[0]!.onlink], ["10.1.0.2", eth, false]);
      const j = await json(ns, "ip", "route", "show", "10.244.2.0/24");
      assert.deepEqual([j.length, j[0]!.gateway, j[0]!.dev], [1, "10.1.0.2", "eth0"]);
      const dup = caught(() => nl.routeAdd({ dst: "10.244.2.0/24", gateway: "10.1.0.3", dev: eth }));
      assert.deepEqual([dup.code, dup.errno, dup.exists, dup.op], [
        "EEXIST",
        17,
        true,
        "route add 10.244.2.0/24",
      ]);
      nl.routeAdd({ dst: "10.244.3.0/24", gateway: "10.1.0.3", dev: eth });
      assert.ok(nl.routeList().some((x) => x.dst === "10.244.3.0/24"));
    });
  },
});

Deno.test({
  name: "routes carry metric, scope, type and protocol as given; list filters by family and protocol",
  ignore: requireRoot(),
  async fn() {
    await inNode(async (ns, nl, vx, eth) => {
      nl.routeReplace({ dst: "10.50.0.0/16", dev: eth, metric: 300 }); // device route: scope link
      nl.routeReplace({ dst: "10.60.0.0/16", type: "unreachable" });
      nl.routeReplace({ dst: "10.70.0.0/16", gateway: "10.1.0.9", dev: eth, protocol: 3 }); // boot
      nl.routeReplace({ dst: "fd00:2::/64", gateway: "fd00:2::", dev: vx, onlink: true });
      const mine = nl.routeList({ protocol: WEFT_ROUTE_PROTOCOL });
      const byDst = new Map(mine.map((r) => [r.dst, r]));
      assert.deepEqual([...byDst.keys()].sort(), ["10.50.0.0/16", "10.60.0.0/16", "fd00:2::/64"]);
      const dev = byDst.get("10.50.0.0/16")!;
      assert.deepEqual([dev.metric, dev.scope, dev.gateway, dev.index, dev.type], [
        300,
        253,
        undefined,
        eth,
        "unicast",
      ]);
      assert.equal(byDst.get("10.60.0.0/16")!.type, "unreachable");
      const v6 = byDst.get("fd00:2::/64")!;
      assert.deepEqual([v6.family, v6.gateway, v6.onlink, v6.index], [6, "fd00:2::", true, vx]);
      assert.deepEqual(nl.routeList({ protocol: WEFT_ROUTE_PROTOCOL, family: 6 }).map((r) => r.dst), [
        "fd00:2::/64",
      ]);
      assert.deepEqual(nl.routeList({ protocol: 3 }).map((r) => r.dst), ["10.70.0.0/16"]);
      // The kernel's own routes (proto kernel = 2) are listed unfiltered, never stamped as weft's.
      assert.ok(nl.routeList({ family: 4 }).some((r) => r.dst === "10.1.0.0/24" && r.protocol === 2));
      const j = await json(ns, "ip", "route", "show", "10.50.0.0/16");
      assert.deepEqual([j[0]!.metric, j[0]!.scope, j[0]!.protocol], [300, "link", "87"]);
      const j6 = await json(ns, "ip", "-6", "route", "show", "fd00:2::/64");
      assert.deepEqual([j6[0]!.gateway, j6[0]!.flags], ["fd00:2::", ["onlink"]]);
      // Deleting needs only the destination; protocol and type are wildcards.
      assert.equal(nl.routeDelete({ dst: "10.60.0.0/16" }), true);
      assert.equal(nl.routeDelete({ dst: "fd00:2::/64" }), true);
      assert.equal(nl.routeDelete({ dst: "fd00:2::/64" }), false);
    });
  },
});

Deno.test({
  name: "route errors are typed: ENETUNREACH for an unreachable gateway, ENODEV for a missing device",
  ignore: requireRoot(),
  async fn() {
    await inNode((_ns, nl) => {
      const unreach = caught(() => nl.routeReplace({ dst: "10.77.0.0/16", gateway: "10.99.99.99" }));
      assert.deepEqual([unreach.code, unreach.errno, unreach.op], [
        "ENETUNREACH",
        101,
        "route replace 10.77.0.0/16",
      ]);
      assert.ok(unreach.nlerr > 0, "libnl's own code is kept too");
      assert.equal(unreach.notFound, false);
      const nodev = caught(() => nl.routeReplace({ dst: "10.78.0.0/16", dev: "nosuch0" }));
      assert.deepEqual([nodev.code, nodev.errno], ["ENODEV", 19]);
      assert.match(nodev.op, /nosuch0/);
      assert.throws(() => nl.routeReplace({ dst: "10.300.0.0/16", dev: "eth0" }), /invalid IP/);
    });
  },
});

Deno.test({
  name: "IPv6 neighbours (NDP) are permanent and replaceable like IPv4 ones; list filters by family",
  ignore: requireRoot(),
  async fn() {
    await inNode(async (ns, nl, _vx, eth) => {
      nl.neighReplace({ dev: eth, ip: "fd00:1::2", mac: "02:00:00:00:00:02" });
      nl.neighReplace({ dev: eth, ip: "fd00:1::2", mac: "02:00:00:00:00:03" });
      nl.neighReplace({ dev: eth, ip: "10.1.0.2", mac: "02:00:00:00:00:04" });
      const v6 = nl.neighList({ dev: eth, family: 6 }).filter((n) => n.state & 0x80);
      assert.deepEqual(v6.map((n) => [n.ip, n.mac, n.family]), [["fd00:1::2", "02:00:00:00:00:03", 6]]);
      // Permanent ones only, as for IPv6 above: the kernel adds NOARP multicast entries of its own (e.g.
      // 224.0.0.22 once the bridge sends its IGMP report), at a moment no test controls.
      const v4 = nl.neighList({ dev: "eth0", family: 4 }).filter((n) => n.state & 0x80);
      assert.deepEqual(v4.map((n) => [n.ip, n.mac, n.family]), [["10.1.0.2", "02:00:00:00:00:04", 4]]);
      const j = await json(ns, "ip", "-6", "neigh", "show", "dev", "eth0", "nud", "permanent");
      assert.deepEqual(j.map((n) => [n.dst, n.lladdr]), [["fd00:1::2", "02:00:00:00:00:03"]]);
      assert.equal(nl.neighDelete({ dev: eth, ip: "fd00:1::2" }), true);
      assert.equal(nl.neighDelete({ dev: eth, ip: "fd00:1::2" }), false);
      const e = caught(() => nl.neighReplace({ dev: "nosuch0", ip: "10.1.0.3", mac: "02:00:00:00:00:05" }));
      assert.deepEqual([e.code, e.errno], ["ENODEV", 19]);
    });
  },
});

Deno.test({
  name: "fdbReplace() moves a MAC to a new remote VTEP (a peer whose public IP changed) without duplicates",
  ignore: requireRoot(),
  async fn() {
    await inNode(async (ns, nl, vx) => {
      nl.fdbReplace({ dev: vx, mac: "0a:00:00:00:00:02", dst: "10.1.0.2" });
      nl.fdbReplace({ dev: vx, mac: "0a:00:00:00:00:02", dst: "10.1.0.7" });
      nl.fdbReplace({ dev: vx, mac: "0a:00:00:00:00:03", dst: "10.1.0.3" });
      const mine = nl.fdbList({ dev: vx }).filter((f) => f.mac !== "00:00:00:00:00:00");
      assert.deepEqual(mine.map((f) => [f.mac, f.dst]).sort(), [
        ["0a:00:00:00:00:02", "10.1.0.7"],
        ["0a:00:00:00:00:03", "10.1.0.3"],
      ]);
      const j = await json(ns, "bridge", "fdb", "show", "dev", "flannel.1");
      const fromBridge = j.filter((f) => f.mac !== "00:00:00:00:00:00").map((f) => [f.mac, f.dst, f.state]);
      assert.deepEqual(fromBridge.sort(), [
        ["0a:00:00:00:00:02", "10.1.0.7", "permanent"],
        ["0a:00:00:00:00:03", "10.1.0.3", "permanent"],
      ]);
      // Without dst, the delete matches the MAC alone.
      assert.equal(nl.fdbDelete({ dev: vx, mac: "0a:00:00:00:00:03" }), true);
      assert.equal(nl.fdbDelete({ dev: vx, mac: "0a:00:00:00:00:03" }), false);
      assert.deepEqual(nl.fdbList({ dev: "flannel.1" }).filter((f) => f.mac === "0a:00:00:00:00:03"), []);
      assert.throws(() => nl.fdbReplace({ dev: vx, mac: "0a:00:00:00:00", dst: "10.1.0.3" }), /invalid MAC/);
    });
  },
});

Deno.test({
  name: "addresses: /32 on a vxlan device as flannel does, IPv6 replace and delete, list of every link",
  ignore: requireRoot(),
  async fn() {
    await inNode(async (ns, nl, vx, eth) => {
      assert.deepEqual(nl.addrList(vx, 4).map((a) => [a.cidr, a.family, a.scope]), [["10.244.1.0/32", 4, 0]]);
      nl.addrReplace(eth, "fd00:1::1/64"); // again: idempotent
      assert.equal(nl.addrDelete(eth, "fd00:1::1/64"), true);
      assert.equal(nl.addrDelete(eth, "fd00:1::1/64"), false);
      assert.deepEqual(nl.addrList(eth, 6).filter((a) => a.scope === 0), []);
      const every = nl.addrList().map((a) => a.cidr);
      assert.ok(every.includes("10.1.0.1/24") && every.includes("10.244.1.0/32"), every.join(" "));
      const j = await json(ns, "ip", "-4", "addr", "show", "dev", "flannel.1");
      const ai = j[0]!.addr_info as { local: string; prefixlen: number }[];
      assert.deepEqual(ai.map((a) => `${a.local}/${a.prefixlen}`), ["10.244.1.0/32"]);
      const dup = caught(() => nl.addrAdd(vx, "10.244.1.0/32"));
      assert.deepEqual([dup.code, dup.errno, dup.op], ["EEXIST", 17, "address add 10.244.1.0/32"]);
    });
  },
});

Deno.test({
  name:
    "batch() installs neighbour and FDB entries as neighReplace/fdbReplace do, hundreds per datagram, and fails only the entries the kernel or the parser refuses",
  ignore: requireRoot(),
  async fn() {
    await inNode(async (ns, nl, vx) => {
      const mac = (i: number) =>
        `0a:00:00:00:${(i >> 8).toString(16).padStart(2, "0")}:${(i & 255).toString(16).padStart(2, "0")}`;
      const entries: BatchRequest[] = [];
      for (let i = 0; i < 300; i++) {
        const ip = `10.${10 + (i >> 8)}.${i & 255}.0`;
        entries.push({ kind: "neigh", spec: { dev: vx, ip, mac: mac(i) } });
        entries.push({ kind: "fdb", spec: { dev: vx, mac: mac(i), dst: `10.1.${1 + (i >> 8)}.${i & 255}` } });
      }
      // Three that must fail alone: a device the kernel has not got (in the middle of the first datagram),
      // a MAC that does not parse, and the last entry of all (whose ACK the batch waits for).
      entries.splice(100, 0, { kind: "neigh", spec: { dev: 9999, ip: "10.99.0.1", mac: mac(1) } });
      entries.splice(400, 0, { kind: "fdb", spec: { dev: vx, mac: "not-a-mac", dst: "10.1.9.9" } });
      entries.push({ kind: "neigh", spec: { dev: 9998, ip: "10.99.0.2", mac: mac(2) } });
      entries.push({ kind: "neigh", spec: { dev: vx, ip: "fd00:1::7", mac: mac(7) } });
      entries.push({ kind: "fdb", spec: { dev: 9997, mac: mac(3), dst: "10.1.9.8" } });
      const errors = nl.batch(entries);
      const failed = errors.flatMap((e, i) => e ? [[i, e.code, e.op]] : []);
      assert.deepEqual(failed, [
        [100, "ENODEV", `neighbour replace 10.99.0.1 lladdr ${mac(1)}`],
        [400, "EINVAL", "fdb replace not-a-mac dst 10.1.9.9"],
        [602, "ENODEV", `neighbour replace 10.99.0.2 lladdr ${mac(2)}`],
        [604, "ENODEV", `fdb replace ${mac(3)} dst 10.1.9.8`],
      ]);
      const neighs = await json(ns, "ip", "neigh", "show", "dev", "flannel.1");
      assert.equal(neighs.length, 301);
      const n7 = neighs.find((n) => n.dst === "10.10.7.0")!;
      assert.deepEqual([n7.lladdr, n7.state], [mac(7), ["PERMANENT"]]);
      assert.ok(neighs.some((n) => n.dst === "fd00:1::7" && n.lladdr === mac(7)));
      const fdb = (await json(ns, "bridge", "fdb", "show", "dev", "flannel.1")).filter((f) => f.dst);
      assert.equal(fdb.length, 300);
      const f7 = fdb.find((f) => f.mac === mac(7))!;
      assert.deepEqual([f7.dst, f7.flags, f7.state], ["10.1.1.7", ["self"], "permanent"]);
      // Equal to one entry put in by fdbReplace/neighReplace, field for field.
      nl.neighReplace({ dev: vx, ip: "10.20.0.0", mac: mac(500) });
      nl.fdbReplace({ dev: vx, mac: mac(500), dst: "10.1.20.0" });
      const one = nl.neighList({ dev: vx }).find((n) => n.ip === "10.20.0.0")!;
      const batched = nl.neighList({ dev: vx }).find((n) => n.ip === "10.10.7.0")!;
      assert.deepEqual({ ...batched, ip: "", mac: "" }, { ...one, ip: "", mac: "" });
      // Replace semantics: a second batch with other MACs changes the entries in place.
      const again = nl.batch(
        Array.from({ length: 300 }, (_, i) => ({
          kind: "neigh" as const,
          spec: { dev: vx, ip: `10.${10 + (i >> 8)}.${i & 255}.0`, mac: mac(i + 1000) },
        })),
      );
      assert.equal(again.filter(Boolean).length, 0);
      const after = await json(ns, "ip", "neigh", "show", "dev", "flannel.1");
      assert.equal(after.length, 302);
      assert.equal(after.find((n) => n.dst === "10.10.7.0")!.lladdr, mac(1007));
    });
  },
});

Deno.test({
  name:
    "batch() makes next-hop objects and routes naming them in order; an add meets EEXIST, a route naming no object fails alone",
  ignore: requireRoot(),
  async fn() {
    await inNode(async (ns, nl, vx) => {
      const requests: BatchRequest[] = [];
      for (let i = 0; i < 200; i++) {
        const gw = `10.${10 + (i >> 8)}.${i & 255}.0`;
        requests.push(
          { kind: "nexthop", spec: { id: 1000 + i, gateway: gw, dev: vx, onlink: true } },
          { kind: "route", spec: { dst: `${gw}/24`, nexthopId: 1000 + i }, replace: false },
        );
      }
      requests.push(
        // The same destination added again: EEXIST. Replaced: fine, and now via object 1001.
        { kind: "route", spec: { dst: "10.10.0.0/24", nexthopId: 1000 }, replace: false },
        { kind: "route", spec: { dst: "10.10.0.0/24", nexthopId: 1001 }, replace: true },
        // An object that does not exist (the kernel: "Nexthop id does not exist", EINVAL), and a gateway that
        // does not parse.
        { kind: "route", spec: { dst: "10.30.0.0/24", nexthopId: 77 }, replace: false },
        { kind: "nexthop", spec: { id: 5, gateway: "10.300.0.1", dev: vx, onlink: true } },
      );
      const errors = nl.batch(requests);
      const failed = errors.flatMap((e, i) => e ? [[i, e.code, e.op]] : []);
      assert.deepEqual(failed.map(([i, code]) => [i, code]), [[400, "EEXIST"], [402, "EINVAL"], [
        403,
        "EINVAL",
      ]]);
      assert.deepEqual(failed.map(([, , op]) => op), [
        "route add 10.10.0.0/24",
        "route add 10.30.0.0/24",
        "nexthop replace id 5 via 10.300.0.1",
      ]);
      assert.match(
        errors[402]!.message,
        /Nexthop id does not exist/,
        "the kernel's own words (extended ACK)",
      );
      const routes = await json(ns, "ip", "route", "show", "proto", String(WEFT_ROUTE_PROTOCOL));
      assert.equal(routes.length, 200);
      const r0 = routes.find((r) => r.dst === "10.10.0.0/24")!;
      assert.deepEqual([r0.nhid, r0.gateway, r0.dev], [1001, "10.10.1.0", "flannel.1"]);
      assert.equal(nl.nexthopList().length, 200);
      assert.equal(nl.nexthopList().find((n) => n.id === 1199)!.gateway, "10.10.199.0");
    });
  },
});

Deno.test({
  name:
    "routeList() reads what `ip -j route show table all` shows: default, multipath, metric, tables, next-hop objects, IPv6",
  ignore: requireRoot(),
  async fn() {
    await inNode(async (ns, nl, vx, eth) => {
      const ip = async (...args: string[]) => {
        const out = await new Deno.Command("ip", { args: ["-n", ns, ...args], stderr: "piped" }).output();
        assert.ok(out.success, `ip ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
      };
      await ip("route", "add", "default", "via", "10.1.0.254", "dev", "eth0", "metric", "50");
      await ip(
        "route",
        "add",
        "10.80.0.0/16",
        "nexthop",
        "via",
        "10.1.0.7",
        "dev",
        "eth0",
        "nexthop",
        "via",
        "10.1.0.8",
      );
      await ip("route", "add", "10.81.0.0/16", "dev", "eth0", "table", "100", "proto", "static");
      await ip("route", "add", "blackhole", "10.82.0.0/16");
      await ip("route", "add", "10.83.0.0/16", "via", "10.244.9.0", "dev", "flannel.1", "onlink");
      await ip("nexthop", "add", "id", "7", "via", "10.1.0.9", "dev", "eth0");
      await ip("route", "add", "10.84.0.0/16", "nhid", "7");
      await ip("-6", "route", "add", "fd00:9::/64", "via", "fd00:1::9", "dev", "eth0", "metric", "7");
      const all = nl.routeList({ table: 0 });
      const names = new Map([[eth, "eth0"], [vx, "flannel.1"]]);
      const devOf = (r: RouteInfo) => r.index ? names.get(r.index) ?? "lo" : undefined;
      const tableIds: Record<string, number> = { local: 255, main: 254 };
      let compared = 0;
      for (const family of ["-4", "-6"]) {
        for (const j of await json(ns, "ip", family, "route", "show", "table", "all")) {
          const table = tableIds[String(j.table ?? "main")] ?? Number(j.table);
          const six = family === "-6";
          let dst = String(j.dst);
          if (dst === "default") dst = six ? "::/0" : "0.0.0.0/0";
          else if (!dst.includes("/")) dst += six ? "/128" : "/32";
          const hop = (j.nexthops as Json[] | undefined)?.[0] ?? j;
          // fe80::/64 is there once per device.
          const r = all.find((r) => r.table === table && r.dst === dst && devOf(r) === hop.dev);
          assert.ok(r, `${table} ${dst} (${JSON.stringify(j)}) is missing from routeList()`);
          assert.equal(r.gateway, hop.gateway, `${dst} gateway`);
          assert.equal(r.metric, j.metric ?? 0, `${dst} metric`);
          assert.equal(r.type, j.type === "blackhole" ? "blackhole" : j.type === "local" ? "local" : r.type);
          assert.equal(
            r.onlink,
            ((hop.flags as string[] | undefined) ?? []).includes("onlink"),
            `${dst} onlink`,
          );
          compared++;
        }
      }
      assert.ok(compared >= 12, `compared ${compared} routes`);
      const main = nl.routeList();
      assert.ok(main.every((r) => r.table === 254));
      assert.deepEqual(main.find((r) => r.dst === "0.0.0.0/0"), {
        dst: "0.0.0.0/0",
        family: 4,
        gateway: "10.1.0.254",
        index: eth,
        onlink: false,
        type: "unicast",
        protocol: 3,
        table: 254,
        metric: 50,
        scope: 0,
      });
      assert.deepEqual(nl.routeList({ table: 100 }).map((r) => [r.dst, r.protocol, r.gateway]), [
        ["10.81.0.0/16", 4, undefined],
      ]);
      assert.deepEqual(nl.routeList({ family: 6, protocol: 3 }).map((r) => r.dst), ["fd00:9::/64"]);
    });
  },
});
