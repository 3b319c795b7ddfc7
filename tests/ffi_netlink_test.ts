/**
 * Every wrapper of the FFI layer against the real kernel, in throw-away namespaces. What the wrappers
 * report is cross-checked with iproute2's JSON output (`ip -j`), an independent reader.
 */
import assert from "node:assert/strict";
import {
  LibraryNotFoundError,
  Netlink,
  NetlinkError,
  netnsCreate,
  netnsDelete,
  WEFT_ROUTE_PROTOCOL,
  withNetns,
} from "../ffi/mod.ts";
import { uniqueNetnsName } from "./helpers/names.ts";
import { requireRoot } from "./helpers/topology.ts";
import { iprouteJson, withScratchNetns } from "./helpers/scratch_netns.ts";

function ipJson(ns: string, ...args: string[]): Promise<Record<string, unknown>[]> {
  return iprouteJson(ns, "ip", "-d", ...args);
}

function nsInode(): number {
  return Deno.statSync("/proc/thread-self/ns/net").ino ?? 0;
}

function withNs(fn: (ns: string, nl: Netlink) => Promise<void> | void): Promise<void> {
  return withScratchNetns("ffi", fn);
}

Deno.test({
  name:
    "links: vxlan, bridge, veth into another namespace, dummy; up/down, MTU, master, hairpin, MAC, rename, netns move, delete",
  ignore: requireRoot(),
  async fn(t) {
    await withNs(async (ns, nl) => {
      await t.step("bridge with MTU and MAC, up and down", async () => {
        const br = nl.linkAddBridge({ name: "br0", mtu: 1400, mac: "02:00:00:00:00:aa" });
        assert.equal(br.kind, "bridge");
        assert.equal(br.mtu, 1400);
        assert.equal(br.mac, "02:00:00:00:00:aa");
        nl.linkSetUp(br.index);
        assert.equal(nl.linkGet("br0")!.up, true);
        nl.linkSetDown("br0");
        assert.equal(nl.linkGet(br.index)!.up, false);
        nl.linkSetMtu("br0", 1300);
        const [j] = await ipJson(ns, "link", "show", "br0");
        assert.equal(j!.mtu, 1300);
        nl.addrReplace("br0", "192.168.5.1/24");
        nl.linkSetUp("br0");
      });
      await t.step("vxlan with every attribute, as the kernel reports it", async () => {
        const vx = nl.linkAddVxlan({
          name: "flannel.1",
          vni: 42,
          local: "192.168.5.1",
          port: 4789,
          dev: "br0",
          learning: false,
          gbp: true,
          mtu: 1250,
          mac: "0a:00:00:00:00:42",
        });
        assert.deepEqual(
          { kind: vx.kind, mtu: vx.mtu, mac: vx.mac, ...vx.vxlan },
          {
            kind: "vxlan",
            mtu: 1250,
            mac: "0a:00:00:00:00:42",
            vni: 42,
            port: 4789,
            learning: false,
            gbp: true,
            link: nl.linkIndex("br0"),
            local: "192.168.5.1",
          },
        );
        const [j] = await ipJson(ns, "link", "show", "flannel.1");
        const info = (j!.linkinfo as { info_data: Record<string, unknown> }).info_data;
        assert.equal(info.id, 42);
        assert.equal(info.port, 4789);
        assert.equal(info.local, "192.168.5.1");
        assert.equal(info.learning, false);
        assert.equal(info.gbp, true);
        assert.throws(
          () => nl.linkAddVxlan({ name: "flannel.1", vni: 42 }),
          (e: NetlinkError) => e.code === "EEXIST",
        );
      });
      await t.step(
        "veth with the peer created in another namespace; master, hairpin, rename, move",
        async () => {
          const other = uniqueNetnsName("ffo");
          netnsCreate(other);
          try {
            const v = nl.linkAddVeth({ name: "vh0", peerName: "eth0", peerNetns: other, mtu: 1400 });
            using peerNl = Netlink.open({ netns: other });
            const peer = peerNl.linkGet("eth0");
            assert.equal(peer?.kind, "veth");
            assert.equal(peer?.mtu, 1400);
            nl.linkSetMaster(v.index, "br0");
            assert.equal(nl.linkGet(v.index)!.master, nl.linkIndex("br0"));
            nl.linkSetHairpin(v.index, true);
            const [j] = await ipJson(ns, "link", "show", "vh0");
            assert.equal(
              (j!.linkinfo as { info_slave_data: { hairpin: boolean } }).info_slave_data.hairpin,
              true,
            );
            nl.linkSetMaster(v.index, 0);
            assert.equal(nl.linkGet(v.index)!.master, 0);
            nl.linkSetName(v.index, "vh1");
            assert.equal(nl.linkGet("vh1")?.index, v.index);
            nl.linkSetMac("vh1", "02:11:22:33:44:55");
            assert.equal(nl.linkGet("vh1")!.mac, "02:11:22:33:44:55");
            nl.linkSetNetns("vh1", other);
            assert.equal(nl.linkGet("vh1"), undefined);
            assert.equal(peerNl.linkGet("vh1")?.kind, "veth");
          } finally {
            netnsDelete(other);
          }
        },
      );
      await t.step("dummy: created where the kernel has it, else a typed EOPNOTSUPP", () => {
        try {
          const d = nl.linkAddDummy({ name: "dum0" });
          assert.equal(d.kind, "dummy");
        } catch (err) {
          assert.ok(err instanceof NetlinkError);
          assert.equal(err.code, "EOPNOTSUPP");
          assert.match(err.message, /link add dummy dum0/);
        }
      });
      await t.step("list and delete (false when absent)", () => {
        assert.ok(nl.linkList().some((l) => l.name === "flannel.1"));
        assert.equal(nl.linkDelete("flannel.1"), true);
        assert.equal(nl.linkDelete("flannel.1"), false);
        assert.equal(nl.linkGet("flannel.1"), undefined);
      });
    });
  },
});

Deno.test({
  name: "addresses: add, replace, delete, list for IPv4 and IPv6",
  ignore: requireRoot(),
  async fn() {
    await withNs(async (ns, nl) => {
      const br = nl.linkAddBridge({ name: "br0" });
      nl.linkSetUp(br.index);
      nl.addrAdd(br.index, "10.1.0.1/24");
      nl.addrReplace(br.index, "10.1.0.1/24"); // idempotent
      nl.addrAdd(br.index, "fd00:1::1/64");
      assert.throws(
        () => nl.addrAdd(br.index, "10.1.0.1/24"),
        (e: NetlinkError) => e.exists && e.errno === 17,
      );
      const list = nl.addrList(br.index).filter((a) => a.scope === 0).map((a) => a.cidr).sort();
      assert.deepEqual(list, ["10.1.0.1/24", "fd00:1::1/64"]);
      assert.deepEqual(nl.addrList(br.index, 6).filter((a) => a.scope === 0).map((a) => a.cidr), [
        "fd00:1::1/64",
      ]);
      const j = await ipJson(ns, "addr", "show", "br0");
      const fromIp = (j[0]!.addr_info as { local: string; prefixlen: number; scope: string }[])
        .filter((a) => a.scope === "global").map((a) => `${a.local}/${a.prefixlen}`).sort();
      assert.deepEqual(fromIp, list);
      assert.equal(nl.addrDelete(br.index, "10.1.0.1/24"), true);
      assert.equal(nl.addrDelete(br.index, "10.1.0.1/24"), false);
      assert.throws(() => nl.addrAdd("nosuchdev", "10.2.0.1/24"), (e: NetlinkError) => e.code === "ENODEV");
    });
  },
});

Deno.test({
  name:
    "routes: replace is idempotent, weft's protocol, onlink next hops, blackhole, IPv6, delete, typed errors",
  ignore: requireRoot(),
  async fn() {
    await withNs(async (ns, nl) => {
      const br = nl.linkAddBridge({ name: "br0" });
      nl.linkSetUp(br.index);
      nl.addrReplace(br.index, "10.1.0.1/24");
      nl.addrReplace(br.index, "fd00:1::1/64");
      const vx = nl.linkAddVxlan({ name: "flannel.1", vni: 1, local: "10.1.0.1", dev: br.index });
      nl.linkSetUp(vx.index);
      for (let i = 0; i < 2; i++) {
        nl.routeReplace({ dst: "10.244.2.0/24", gateway: "10.244.2.0", dev: vx.index, onlink: true });
      }
      nl.routeReplace({ dst: "10.250.0.0/16", type: "blackhole" });
      nl.routeReplace({ dst: "fd00:2::/64", gateway: "fd00:1::2", dev: br.index });
      nl.routeReplace({ dst: "10.9.0.0/16", gateway: "10.1.0.2", dev: br.index, protocol: 4 });
      const mine = nl.routeList({ protocol: WEFT_ROUTE_PROTOCOL });
      assert.deepEqual(mine.map((r) => r.dst).sort(), ["10.244.2.0/24", "10.250.0.0/16", "fd00:2::/64"]);
      const onlink = mine.find((r) => r.dst === "10.244.2.0/24")!;
      assert.deepEqual([onlink.gateway, onlink.index, onlink.onlink], ["10.244.2.0", vx.index, true]);
      assert.equal(mine.find((r) => r.dst === "10.250.0.0/16")!.type, "blackhole");
      const j = await ipJson(ns, "route", "show", "10.244.2.0/24");
      assert.equal(j.length, 1, "replace did not duplicate the route");
      assert.deepEqual(j[0]!.flags, ["onlink"]);
      assert.equal(j[0]!.protocol, "87");
      assert.throws(
        () => nl.routeReplace({ dst: "10.77.0.0/16", gateway: "10.99.99.99" }),
        (e: NetlinkError) =>
          e.code === "ENETUNREACH" && e.errno === 101 && /route replace 10\.77\.0\.0\/16/.test(e.op),
      );
      assert.equal(nl.routeDelete({ dst: "10.244.2.0/24" }), true);
      assert.equal(nl.routeDelete({ dst: "10.244.2.0/24" }), false);
      assert.equal(nl.routeDelete({ dst: "10.250.0.0/16" }), true);
      assert.equal(nl.routeDelete({ dst: "fd00:2::/64" }), true);
    });
  },
});

Deno.test({
  name: "neighbours and FDB: permanent replace, list, delete (false when absent)",
  ignore: requireRoot(),
  async fn() {
    await withNs(async (ns, nl) => {
      const br = nl.linkAddBridge({ name: "br0" });
      nl.linkSetUp(br.index);
      nl.addrReplace(br.index, "10.1.0.1/24");
      const vx = nl.linkAddVxlan({ name: "flannel.1", vni: 1, local: "10.1.0.1", dev: br.index });
      nl.neighReplace({ dev: vx.index, ip: "10.244.2.0", mac: "0a:00:00:00:00:02" });
      nl.neighReplace({ dev: vx.index, ip: "10.244.2.0", mac: "0a:00:00:00:00:03" }); // replace updates
      nl.fdbReplace({ dev: vx.index, mac: "0a:00:00:00:00:03", dst: "10.1.0.2" });
      nl.fdbReplace({ dev: vx.index, mac: "0a:00:00:00:00:03", dst: "10.1.0.2" });
      const n = nl.neighList({ dev: vx.index });
      assert.deepEqual(n.map((x) => [x.ip, x.mac, x.state & 0x80]), [[
        "10.244.2.0",
        "0a:00:00:00:00:03",
        0x80,
      ]]);
      const f = nl.fdbList({ dev: vx.index });
      assert.deepEqual(f.map((x) => [x.mac, x.dst, x.flags & 2, x.state & 0x80]), [[
        "0a:00:00:00:00:03",
        "10.1.0.2",
        2,
        0x80,
      ]]);
      const jn = await ipJson(ns, "neigh", "show", "dev", "flannel.1");
      assert.deepEqual(jn.map((x) => [x.dst, x.lladdr]), [["10.244.2.0", "0a:00:00:00:00:03"]]);
      const bridgeOut = new TextDecoder().decode(
        (await new Deno.Command("bridge", {
          args: ["-n", ns, "fdb", "show", "dev", "flannel.1"],
          stdout: "piped",
        }).output()).stdout,
      );
      assert.match(bridgeOut, /0a:00:00:00:00:03 dst 10\.1\.0\.2 self permanent/);
      assert.equal(nl.neighDelete({ dev: vx.index, ip: "10.244.2.0" }), true);
      assert.equal(nl.neighDelete({ dev: vx.index, ip: "10.244.2.0" }), false);
      assert.equal(nl.fdbDelete({ dev: vx.index, mac: "0a:00:00:00:00:03", dst: "10.1.0.2" }), true);
      assert.equal(nl.fdbDelete({ dev: vx.index, mac: "0a:00:00:00:00:03", dst: "10.1.0.2" }), false);
      assert.throws(() => nl.neighReplace({ dev: vx.index, ip: "10.244.2.0", mac: "zz" }), /invalid MAC/);
    });
  },
});

Deno.test({
  name: "withNetns always switches back, also when the function throws; async functions are refused",
  ignore: requireRoot(),
  fn() {
    const ns = uniqueNetnsName("wns");
    netnsCreate(ns);
    try {
      const before = nsInode();
      const inside = withNetns(ns, () => nsInode());
      assert.notEqual(inside, before);
      assert.equal(nsInode(), before);
      assert.throws(() =>
        withNetns(ns, () => {
          throw new Error("boom");
        }), /boom/);
      assert.equal(nsInode(), before);
      assert.throws(() => withNetns(ns, () => Promise.resolve(1)), /synchronous/);
      assert.equal(nsInode(), before);
      assert.throws(() => withNetns("/nonexistent/ns", () => 1), (e: NetlinkError) => e.code === "ENOENT");
    } finally {
      netnsDelete(ns);
    }
  },
});

Deno.test("a missing libnl gives LibraryNotFoundError naming the Debian package", async () => {
  // A fresh process whose loader finds no libnl anywhere it looks.
  const code = `
    import { Netlink, LibraryNotFoundError } from "${new URL("../ffi/mod.ts", import.meta.url).href}";
    try { Netlink.open(); console.log("opened"); } catch (e) { console.log(e instanceof LibraryNotFoundError, e.message); }`;
  const dir = await Deno.makeTempDir();
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["eval", code],
      env: { WEFT_LIBNL_DIR: dir, WEFT_LIBNL_ONLY_DIR: "1" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    assert.match(
      text,
      /^true cannot load libnl-3\.so\.200: install the Debian\/Ubuntu package libnl-3-200/,
      text,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  assert.ok(new LibraryNotFoundError("x.so", "pkg").message.includes("apt-get install pkg"));
});
