/**
 * Link wrappers of the FFI layer in detail, beyond tests/ffi_netlink_test.ts: what `ip -d -j link show`
 * (an independent reader) says about devices weft created, defaults, the typed errors of link operations,
 * and handles opened by namespace path and by pid.
 */
import assert from "node:assert/strict";
import { Netlink, NetlinkError, netnsCreate, netnsDelete, netnsPath } from "../ffi/mod.ts";
import { uniqueNetnsName } from "./helpers/names.ts";
import { requireRoot } from "./helpers/topology.ts";
import { iprouteJson, withScratchNetns } from "./helpers/scratch_netns.ts";

type Json = Record<string, unknown>;

async function ipLink(ns: string, dev: string): Promise<Json> {
  return (await iprouteJson(ns, "ip", "-d", "link", "show", "dev", dev))[0]!;
}

const infoData = (j: Json) => (j.linkinfo as { info_data: Json }).info_data;

/** A throw-away namespace with a handle on it, removed afterwards even when `fn` fails. */
function inNamespace(fn: (ns: string, nl: Netlink) => Promise<void> | void): Promise<void> {
  return withScratchNetns("lnk", fn);
}

/** Asserts that `fn` throws a NetlinkError with these fields. */
function assertNetlinkError(
  fn: () => unknown,
  want: { code: string; errno: number; op: RegExp },
): NetlinkError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof NetlinkError, `expected a NetlinkError, got ${caught}`);
  assert.equal(caught.name, "NetlinkError");
  assert.equal(caught.code, want.code);
  assert.equal(caught.errno, want.errno);
  assert.match(caught.op, want.op);
  assert.ok(caught.message.startsWith(caught.op), "the message starts with the operation");
  assert.ok(caught.message.endsWith(`(${want.code})`), "the message ends with the errno name");
  return caught;
}

Deno.test({
  name: "a flannel-style vxlan device reads back the same through linkGet and through ip -d -j link show",
  ignore: requireRoot(),
  async fn() {
    await inNamespace(async (ns, nl) => {
      const eth = nl.linkAddBridge({ name: "eth0" });
      nl.addrReplace(eth.index, "192.168.9.2/24");
      nl.linkSetUp(eth.index);
      const vx = nl.linkAddVxlan({
        name: "flannel.1",
        vni: 1,
        local: "192.168.9.2",
        port: 8472,
        dev: "eth0",
        learning: false,
        mtu: 1450,
        mac: "0a:58:0a:f4:01:00",
      });
      const j = await ipLink(ns, "flannel.1");
      assert.equal(j.ifindex, vx.index);
      assert.equal(j.mtu, 1450);
      assert.equal(j.address, "0a:58:0a:f4:01:00");
      assert.equal((j.linkinfo as Json).info_kind, "vxlan");
      const d = infoData(j);
      assert.deepEqual(
        [d.id, d.local, d.link, d.port, d.learning, d.gbp ?? false],
        [1, "192.168.9.2", "eth0", 8472, false, false],
      );
      assert.deepEqual(nl.linkGet("flannel.1")?.vxlan, {
        vni: 1,
        local: "192.168.9.2",
        port: 8472,
        link: eth.index,
        learning: false,
        gbp: false,
      });
      // Down by default: the agent decides when to bring it up.
      assert.equal(vx.up, false);
      assert.ok((j.flags as string[]).every((f) => f !== "UP"));
    });
  },
});

Deno.test({
  name: "vxlan defaults: no port means the kernel's 8472, learning on when asked, no local and no device",
  ignore: requireRoot(),
  async fn() {
    await inNamespace(async (ns, nl) => {
      const vx = nl.linkAddVxlan({ name: "vx7", vni: 7, learning: true });
      assert.equal(vx.vxlan?.port, 8472);
      assert.equal(vx.vxlan?.learning, true);
      assert.equal(vx.vxlan?.local, undefined);
      assert.equal(vx.vxlan?.link, undefined);
      const d = infoData(await ipLink(ns, "vx7"));
      assert.deepEqual([d.id, d.port, d.learning, d.local, d.link], [7, 8472, true, undefined, undefined]);
      // MTU and MAC can change after creation; ip sees the change.
      nl.linkSetMtu("vx7", 1370);
      nl.linkSetMac(vx.index, "0a:00:00:00:07:07");
      const j = await ipLink(ns, "vx7");
      assert.deepEqual([j.mtu, j.address], [1370, "0a:00:00:00:07:07"]);
    });
  },
});

Deno.test({
  name: "veth: both MACs and the MTU land on the right ends when the peer is created in another namespace",
  ignore: requireRoot(),
  async fn() {
    await inNamespace(async (ns, nl) => {
      const pod = uniqueNetnsName("lnkp");
      netnsCreate(pod);
      try {
        const v = nl.linkAddVeth({
          name: "veth1",
          peerName: "eth0",
          peerNetns: netnsPath(pod), // a path works as well as a name
          mtu: 1450,
          mac: "02:00:00:00:00:01",
          peerMac: "02:00:00:00:00:02",
        });
        assert.deepEqual([v.kind, v.mtu, v.mac], ["veth", 1450, "02:00:00:00:00:01"]);
        const host = await ipLink(ns, "veth1");
        const peer = await ipLink(pod, "eth0");
        assert.deepEqual([host.address, host.mtu], ["02:00:00:00:00:01", 1450]);
        assert.deepEqual([peer.address, peer.mtu], ["02:00:00:00:00:02", 1450]);
        assert.equal(host.link_netnsid !== undefined, true, "ip sees the peer in another namespace");
        // Carrier needs both ends up.
        nl.linkSetUp(v.index);
        {
          using pl = Netlink.open({ netns: pod });
          pl.linkSetUp("eth0");
        }
        assert.equal(nl.linkGet(v.index)?.running, true);
      } finally {
        netnsDelete(pod);
      }
    });
  },
});

Deno.test({
  name: "bridge ports: master on and off, hairpin on and off, as ip reports them",
  ignore: requireRoot(),
  async fn() {
    await inNamespace(async (ns, nl) => {
      const br = nl.linkAddBridge({ name: "cni0" });
      const v = nl.linkAddVeth({ name: "vp0", peerName: "vq0" });
      nl.linkSetMaster("vp0", br.index);
      nl.linkSetHairpin("vp0", true);
      const slave = (j: Json) => (j.linkinfo as { info_slave_data: Json }).info_slave_data;
      let j = await ipLink(ns, "vp0");
      assert.equal(j.master, "cni0");
      assert.equal(slave(j).hairpin, true);
      nl.linkSetHairpin(v.index, false);
      assert.equal(slave(await ipLink(ns, "vp0")).hairpin, false);
      nl.linkSetMaster(v.index, 0);
      j = await ipLink(ns, "vp0");
      assert.equal(j.master, undefined);
      assert.equal(nl.linkGet("vp0")?.master, 0);
    });
  },
});

Deno.test({
  name:
    "link operations on a missing device throw NetlinkError ENODEV naming the operation; get/delete do not",
  ignore: requireRoot(),
  async fn() {
    await inNamespace((_ns, nl) => {
      assert.equal(nl.linkGet("nosuch0"), undefined);
      assert.equal(nl.linkGet(999999), undefined);
      assert.equal(nl.linkDelete("nosuch0"), false);
      assert.equal(nl.linkDelete(999999), false);
      const e = assertNetlinkError(() => nl.linkSetUp("nosuch0"), {
        code: "ENODEV",
        errno: 19,
        op: /set up nosuch0/,
      });
      assert.equal(e.notFound, true);
      assert.equal(e.exists, false);
      assertNetlinkError(() => nl.linkSetMtu(999999, 1400), {
        code: "ENODEV",
        errno: 19,
        op: /ifindex 999999/,
      });
      assertNetlinkError(() => nl.linkIndex("nosuch0"), { code: "ENODEV", errno: 19, op: /nosuch0/ });
      assertNetlinkError(() => nl.linkAddVxlan({ name: "vx1", vni: 1, dev: "nosuch0" }), {
        code: "ENODEV",
        errno: 19,
        op: /nosuch0/,
      });
      nl.linkAddBridge({ name: "br9" });
      const dup = assertNetlinkError(() => nl.linkAddBridge({ name: "br9" }), {
        code: "EEXIST",
        errno: 17,
        op: /^link add bridge br9$/,
      });
      assert.equal(dup.exists, true);
      assert.equal(dup.notFound, false);
      // Renaming onto an existing name is refused by the kernel, also typed.
      nl.linkAddBridge({ name: "br8" });
      assert.throws(() => nl.linkSetName("br8", "br9"), NetlinkError);
      assert.equal(nl.linkGet("br8")?.kind, "bridge");
    });
  },
});

Deno.test({
  name: "dummy devices are refused with a typed EOPNOTSUPP on this kernel, or work where the kernel has them",
  ignore: requireRoot(),
  async fn() {
    await inNamespace(async (ns, nl) => {
      let made: ReturnType<Netlink["linkAddDummy"]> | undefined;
      try {
        made = nl.linkAddDummy({ name: "dum0", mtu: 1400 });
      } catch (err) {
        assert.ok(err instanceof NetlinkError, `want NetlinkError, got ${err}`);
        assert.deepEqual([err.code, err.errno, err.op], ["EOPNOTSUPP", 95, "link add dummy dum0"]);
      }
      if (made) {
        assert.deepEqual([made.kind, made.mtu], ["dummy", 1400]);
        assert.equal((((await ipLink(ns, "dum0")).linkinfo) as Json).info_kind, "dummy");
      }
    });
  },
});

Deno.test({
  name: "Netlink.open() binds to a namespace by name, by path and by pid; a closed handle refuses work",
  ignore: requireRoot(),
  async fn() {
    await inNamespace(async (ns, nl) => {
      nl.linkAddBridge({ name: "marker0" });
      {
        using byPath = Netlink.open({ netns: netnsPath(ns) });
        assert.equal(byPath.linkGet("marker0")?.kind, "bridge");
      }
      const child = new Deno.Command("ip", {
        args: ["netns", "exec", ns, "sleep", "600"], // until killed below
        stdout: "null",
        stderr: "null",
      }).spawn();
      try {
        // `ip netns exec` switches namespace before exec'ing sleep: wait until the pid is inside.
        const want = Deno.statSync(netnsPath(ns)).ino;
        for (let i = 0; i < 1500; i++) { // 30 s at most
          try {
            if (Deno.statSync(`/proc/${child.pid}/ns/net`).ino === want) break;
          } catch { /* not yet */ }
          await new Promise((r) => setTimeout(r, 20));
        }
        using byPid = Netlink.open({ pid: child.pid });
        assert.equal(byPid.linkGet("marker0")?.kind, "bridge");
      } finally {
        child.kill("SIGKILL");
        await child.status;
      }
      assert.throws(
        () => Netlink.open({ netns: "wtst-does-not-exist" }),
        (e: NetlinkError) => e.code === "ENOENT",
      );
      const h = Netlink.open({ netns: ns });
      h.close();
      h.close(); // idempotent
      assert.throws(() => h.linkList(), /used after close/);
    });
  },
});
