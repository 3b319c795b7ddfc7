import assert from "node:assert/strict";
import { iprouteJson, withScratchNetns } from "../../tests/helpers/scratch_netns.ts";
import { ROOT } from "../../tests/helpers/topology.ts";
import { netnsPath } from "../netns.ts";
import { closeFd, NetlinkError, openPath, Rtnl, SyscallError } from "./mod.ts";

Deno.test({
  name: "Rtnl builds a bridge with a veth port whose peer is born in another namespace, as iproute2 sees it",
  ignore: !ROOT,
  async fn() {
    await withScratchNetns("rn", async (node) => {
      await withScratchNetns("rp", async (pod) => {
        using nl = Rtnl.open(netnsPath(node));
        assert.equal(nl.linkGet("br9"), undefined, "absent is undefined, not an error");
        const br = nl.linkAddBridge({ name: "br9", mac: "02:11:22:33:44:55", mtu: 1400 });
        assert.equal(br.kind, "bridge");
        assert.equal(br.mac, "02:11:22:33:44:55");
        assert.equal(br.mtu, 1400);
        assert.throws(() => nl.linkAddBridge({ name: "br9" }), (e) => e instanceof NetlinkError && e.exists);
        using podNl = Rtnl.open(netnsPath(pod));
        const podFd = openPath(netnsPath(pod));
        const veth = nl.linkAddVeth({ name: "vh0", peerName: "eth0", peerNetnsFd: podFd, mtu: 1400 });
        closeFd(podFd);
        assert.equal(veth.kind, "veth");
        nl.linkSet(veth.index, { master: br.index, up: true });
        nl.linkSetHairpin(veth.index, true);
        nl.linkSet(br.index, { up: true, mtu: 1450 });
        const ports = nl.linkPorts(br.index);
        assert.deepEqual(ports.map((p) => p.name), ["vh0"]);
        const [ipVeth] = await iprouteJson(node, "ip", "-d", "link", "show", "vh0");
        assert.equal(ipVeth!.master, "br9");
        assert.equal(
          ((ipVeth!.linkinfo as Record<string, unknown>).info_slave_data as Record<string, unknown>).hairpin,
          true,
        );
        const eth0 = podNl.linkGet("eth0");
        assert.ok(eth0, "peer created inside the pod namespace");
        assert.equal(eth0.mtu, 1400);
        assert.equal(nl.linkGet("eth0"), undefined, "and not in the node namespace");
        assert.equal(nl.linkGet(br.index)?.name, "br9", "lookup by index");
        assert.equal(nl.linkGet("br9")?.mtu, 1450);

        podNl.addrAdd(eth0.index, "10.9.0.5/24");
        podNl.addrAdd(eth0.index, "10.9.0.5/24", { replace: true });
        assert.throws(
          () => podNl.addrAdd(eth0.index, "10.9.0.5/24"),
          (e) => e instanceof NetlinkError && e.exists,
        );
        podNl.addrAdd(eth0.index, "fd00:9::5/64", { nodad: true });
        podNl.linkSet(eth0.index, { up: true });
        const addrs = podNl.addrList(eth0.index).filter((a) => a.scope === 0).map((a) => a.cidr).sort();
        assert.deepEqual(addrs, ["10.9.0.5/24", "fd00:9::5/64"]);
        const ipAddrs = await iprouteJson(pod, "ip", "addr", "show", "dev", "eth0");
        const tentative = (ipAddrs[0]!.addr_info as Record<string, unknown>[]).find((a) =>
          a.local === "fd00:9::5"
        );
        assert.equal(tentative?.tentative, undefined, "nodad: usable at once");
        assert.deepEqual(podNl.addrList(eth0.index, 4).map((a) => a.cidr), ["10.9.0.5/24"]);
        podNl.routeReplace({ dst: "10.0.0.0/8", gateway: "10.9.0.1", dev: eth0.index, protocol: 3 });
        podNl.routeReplace({ dst: "0.0.0.0/0", gateway: "10.9.0.1", dev: eth0.index, protocol: 3 });
        podNl.routeReplace({ dst: "0.0.0.0/0", gateway: "10.9.0.1", dev: eth0.index, protocol: 3 });
        const routes = podNl.routeList(4).filter((r) => r.gateway);
        assert.deepEqual(
          routes.map((r) => [r.dst, r.gateway, r.index, r.protocol]).sort(),
          [["0.0.0.0/0", "10.9.0.1", eth0.index, 3], ["10.0.0.0/8", "10.9.0.1", eth0.index, 3]],
        );
        const ipRoutes = await iprouteJson(pod, "ip", "route", "show", "10.0.0.0/8");
        assert.equal(ipRoutes[0]!.gateway, "10.9.0.1");
        assert.equal(podNl.addrDelete(eth0.index, "10.9.0.5/24"), true);
        assert.equal(podNl.addrDelete(eth0.index, "10.9.0.5/24"), false, "already gone is false");

        assert.equal(nl.linkDelete("vh0"), true);
        assert.equal(nl.linkDelete("vh0"), false, "already gone is false");
        assert.equal(podNl.linkGet("eth0"), undefined, "the peer went with it");
      });
    });
  },
});

Deno.test({
  name: "Rtnl reports the kernel's own error text, and refuses paths that are not a namespace",
  ignore: !ROOT,
  async fn() {
    await withScratchNetns("re", (node) => {
      using nl = Rtnl.open(netnsPath(node));
      assert.throws(
        () => nl.routeReplace({ dst: "10.1.0.0/16", gateway: "10.9.9.9", dev: 1 }),
        (e) => {
          // The kernel's extended ACK text, not only an errno.
          assert.ok(
            e instanceof NetlinkError && /route replace 10\.1\.0\.0\/16: .*[a-z].*\(E/.test(e.message),
            String(e),
          );
          return true;
        },
      );
      const dir = Deno.makeTempDirSync();
      try {
        Deno.writeTextFileSync(`${dir}/file`, "");
        Deno.symlinkSync(`${dir}/nowhere`, `${dir}/dangling`);
        assert.throws(() => Rtnl.open(`${dir}/file`), (e) => e instanceof SyscallError && e.errno === 22);
        assert.throws(() => Rtnl.open(dir), (e) => e instanceof SyscallError && e.errno === 22);
        assert.throws(() => Rtnl.open(`${dir}/dangling`), (e) => e instanceof SyscallError && e.errno === 2);
      } finally {
        Deno.removeSync(dir, { recursive: true });
      }
    });
  },
});
