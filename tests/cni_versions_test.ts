/**
 * weft's CNI mode as kubelet drives it, for every spec version: ADD's result shape, what ADD leaves in
 * the kernel, CHECK, and a DEL that leaves nothing behind (also when repeated or without CNI_NETNS).
 */
import assert from "node:assert/strict";
import { Netlink } from "../ffi/mod.ts";
import { cni, cniLab, nsExec } from "./helpers/cni.ts";
import { ROOT } from "./helpers/topology.ts";

const VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"];

interface IPOut {
  address: string;
  gateway?: string;
  version?: string;
  interface?: number;
}
interface IfOut {
  name: string;
  mac: string;
  sandbox?: string;
  mtu?: number;
}

function nsName(path: string): string {
  return path.slice(path.lastIndexOf("/") + 1);
}

Deno.test({
  name: "ADD, CHECK and DEL answer in each spec version's shape and DEL leaves nothing behind",
  ignore: !ROOT,
  async fn(t) {
    await using lab = await cniLab();
    for (const v of VERSIONS) {
      await t.step(`spec ${v}`, async () => {
        const pod = lab.pod();
        const env = { containerId: `ctr-${v.replaceAll(".", "")}`, netns: pod, ifname: "eth0" };
        const add = await cni(lab.node, { command: "ADD", ...env }, lab.conf(v));
        assert.equal(add.code, 0, add.stdout + add.stderr);
        const r = add.out!;
        assert.equal(r.cniVersion, v);
        const ips = r.ips as IPOut[];
        const ifs = r.interfaces as IfOut[];
        assert.equal(ips.length, 1);
        assert.match(ips[0]!.address, /^10\.244\.7\.\d+\/24$/);
        assert.notEqual(ips[0]!.address, "10.244.7.1/24", "the gateway is never handed out");
        assert.equal(ips[0]!.gateway, "10.244.7.1");
        assert.equal(ips[0]!.version, v.startsWith("0.") ? "4" : undefined, "0.x results carry version");
        assert.deepEqual(ifs.map((i) => i.name).slice(0, 1), ["cni0"]);
        const cif = ifs[ips[0]!.interface!]!;
        assert.equal(cif.name, "eth0");
        assert.equal(cif.sandbox, pod);
        assert.equal(cif.mtu, v === "1.1.0" ? 1450 : undefined, "mtu only in 1.1.0 results");
        for (const i of ifs) assert.match(i.mac, /^([0-9a-f]{2}:){5}[0-9a-f]{2}$/);
        assert.deepEqual(r.routes, [
          { dst: "10.244.0.0/16", gw: "10.244.7.1" },
          { dst: "0.0.0.0/0", gw: "10.244.7.1" },
        ]);
        assert.deepEqual(r.dns, {});
        // What the kernel has: the pod's interface, address, MTU, routes; the host end on cni0, hairpin.
        {
          using nl = Netlink.open({ netns: pod });
          const eth0 = nl.linkGet("eth0")!;
          assert.equal(eth0.mtu, 1450);
          assert.equal(eth0.mac, cif.mac);
          assert.ok(eth0.up);
          assert.deepEqual(nl.addrList(eth0.index, 4).map((a) => a.cidr), [ips[0]!.address]);
          const routes = nl.routeList({ family: 4 }).filter((x) => x.gateway === "10.244.7.1");
          assert.deepEqual(routes.map((x) => x.dst).sort(), ["0.0.0.0/0", "10.244.0.0/16"]);
        }
        const hostEnd = ifs[1]!.name;
        {
          using nl = Netlink.open({ netns: lab.node });
          const br = nl.linkGet("cni0")!;
          assert.equal(br.kind, "bridge");
          assert.equal(br.mtu, 1450);
          assert.deepEqual(nl.addrList(br.index, 4).map((a) => a.cidr), ["10.244.7.1/24"]);
          assert.equal(nl.linkGet(hostEnd)?.master, br.index);
        }
        const hairpin = await nsExec(lab.node, ["cat", `/sys/class/net/${hostEnd}/brport/hairpin_mode`]);
        assert.equal(hairpin.stdout.trim(), "1", "hairpinMode from the delegate");
        const ping = await nsExec(nsName(pod), ["ping", "-c", "1", "-W", "2", "10.244.7.1"]);
        assert.equal(ping.code, 0, ping.stdout);
        assert.ok(Deno.statSync(`${lab.dir}/flannel/${env.containerId}`).isFile, "flannel's saved config");

        if (v === "0.3.0" || v === "0.3.1") {
          const check = await cni(lab.node, { command: "CHECK", ...env }, lab.conf(v, { prevResult: r }));
          assert.equal(check.out?.code, 1, "CHECK needs 0.4.0: incompatible version");
        } else {
          const check = await cni(lab.node, { command: "CHECK", ...env }, lab.conf(v, { prevResult: r }));
          assert.equal(check.code, 0, check.stdout + check.stderr);
          assert.equal(check.stdout, "", "CHECK prints nothing on success");
          // Break the pod's default route: CHECK must notice.
          assert.equal((await nsExec(nsName(pod), ["ip", "route", "del", "default"])).code, 0);
          const broken = await cni(lab.node, { command: "CHECK", ...env }, lab.conf(v, { prevResult: r }));
          assert.equal(broken.out?.code, 100, broken.stdout);
          assert.match(String(broken.out?.msg), /route to 0\.0\.0\.0\/0/);
        }

        const del = await cni(lab.node, { command: "DEL", ...env }, lab.conf(v));
        assert.equal(del.code, 0, del.stdout + del.stderr);
        assert.equal(del.stdout, "", "DEL prints nothing on success");
        assert.deepEqual(lab.allocated(), []);
        {
          using nl = Netlink.open({ netns: pod });
          assert.equal(nl.linkGet("eth0"), undefined, "the container interface is gone");
        }
        {
          using nl = Netlink.open({ netns: lab.node });
          assert.equal(nl.linkGet(hostEnd), undefined, "the host end is gone");
        }
        assert.throws(() => Deno.statSync(`${lab.dir}/flannel/${env.containerId}`), Deno.errors.NotFound);
        // DEL again, and DEL with an empty CNI_NETNS (containerd's ctr does that), still succeed.
        assert.equal((await cni(lab.node, { command: "DEL", ...env }, lab.conf(v))).code, 0);
        assert.equal((await cni(lab.node, { command: "DEL", ...env, netns: "" }, lab.conf(v))).code, 0);
      });
    }
  },
});

Deno.test({
  name: "DEL with an empty CNI_NETNS or a deleted netns still frees the IP and removes the veth",
  ignore: !ROOT,
  async fn() {
    await using lab = await cniLab({ net: "10.244.12" });
    for (const how of ["empty CNI_NETNS", "netns already deleted"]) {
      const pod = lab.pod();
      const env = { containerId: `gone-${how.length}`, netns: pod, ifname: "eth0" };
      const add = await cni(lab.node, { command: "ADD", ...env }, lab.conf("1.0.0"));
      assert.equal(add.code, 0, add.stdout);
      const hostEnd = (add.out!.interfaces as IfOut[])[1]!.name;
      let netns = pod;
      if (how === "empty CNI_NETNS") netns = "";
      else {assert.equal(
          (await new Deno.Command("ip", { args: ["netns", "del", nsName(pod)] }).output()).code,
          0,
        );}
      const del = await cni(lab.node, { command: "DEL", ...env, netns }, lab.conf("1.0.0"));
      assert.equal(del.code, 0, `${how}: ${del.stdout}${del.stderr}`);
      assert.deepEqual(lab.allocated(), [], how);
      using nl = Netlink.open({ netns: lab.node });
      assert.equal(nl.linkGet(hostEnd), undefined, `${how}: host end removed`);
    }
  },
});

Deno.test({
  name: "a dual-stack subnet.env gives the pod an IPv4 and an IPv6 address with routes for both",
  ignore: !ROOT,
  async fn() {
    await using lab = await cniLab({
      net: "10.244.13",
      subnetEnvExtra: "FLANNEL_IPV6_NETWORK=fd00:10:244::/56\nFLANNEL_IPV6_SUBNET=fd00:10:244:13::1/64\n",
    });
    const pod = lab.pod();
    const env = { containerId: "dual", netns: pod, ifname: "eth0" };
    const add = await cni(lab.node, { command: "ADD", ...env }, lab.conf("1.1.0"));
    assert.equal(add.code, 0, add.stdout + add.stderr);
    const ips = add.out!.ips as IPOut[];
    assert.equal(ips.length, 2);
    assert.match(ips[0]!.address, /^10\.244\.13\.\d+\/24$/);
    assert.match(ips[1]!.address, /^fd00:10:244:13::[0-9a-f]+\/64$/);
    assert.equal(ips[1]!.gateway, "fd00:10:244:13::1");
    assert.deepEqual(add.out!.routes, [
      { dst: "10.244.0.0/16", gw: "10.244.13.1" },
      { dst: "0.0.0.0/0", gw: "10.244.13.1" },
      { dst: "fd00:10:244::/56", gw: "fd00:10:244:13::1" },
      { dst: "::/0", gw: "fd00:10:244:13::1" },
    ]);
    assert.ok(Deno.statSync(`${lab.dir}/networks/cbr0/last_reserved_ip.1`).isFile, "IPv6 is range 1");
    // Right after ADD, not a second later: a tentative (DAD) gateway would drop the pod's first packets.
    const gw6 = await nsExec(lab.node, ["ip", "-6", "-o", "addr", "show", "dev", "cni0", "scope", "global"]);
    assert.match(gw6.stdout, /fd00:10:244:13::1\/64/);
    assert.doesNotMatch(gw6.stdout, /tentative/, "the bridge's IPv6 gateway is usable at once");
    const ping6 = await nsExec(nsName(pod), ["ping", "-6", "-c", "1", "-W", "3", "fd00:10:244:13::1"]);
    assert.equal(ping6.code, 0, ping6.stdout);
    const check = await cni(
      lab.node,
      { command: "CHECK", ...env },
      lab.conf("1.1.0", { prevResult: add.out }),
    );
    assert.equal(check.code, 0, check.stdout);
    assert.equal((await cni(lab.node, { command: "DEL", ...env }, lab.conf("1.1.0"))).code, 0);
    assert.deepEqual(lab.allocated(), []);
  },
});

Deno.test({
  name: "the native weft form honours bridge, mtu and isDefaultGateway false (cluster route only)",
  ignore: !ROOT,
  async fn() {
    await using lab = await cniLab({ net: "10.244.14" });
    const pod = lab.pod();
    const conf = {
      cniVersion: "1.0.0",
      name: "weftnet",
      type: "weft",
      subnetFile: `${lab.dir}/subnet.env`,
      dataDir: `${lab.dir}/flannel`,
      bridge: "weft0",
      mtu: 1400,
      isDefaultGateway: false,
      ipam: { type: "host-local", dataDir: `${lab.dir}/networks` },
      someFutureField: { ignored: true },
    };
    const env = { containerId: "native", netns: pod, ifname: "net1" };
    const add = await cni(lab.node, { command: "ADD", ...env }, conf);
    assert.equal(add.code, 0, add.stdout + add.stderr);
    assert.deepEqual(add.out!.routes, [{ dst: "10.244.0.0/16", gw: "10.244.14.1" }]);
    assert.deepEqual(lab.allocated("weftnet").length, 1);
    {
      using nl = Netlink.open({ netns: pod });
      assert.equal(nl.linkGet("net1")?.mtu, 1400);
      assert.equal(nl.routeList({ family: 4 }).some((r) => r.dst === "0.0.0.0/0"), false, "no default route");
    }
    {
      using nl = Netlink.open({ netns: lab.node });
      assert.equal(nl.linkGet("weft0")?.kind, "bridge");
      assert.equal(nl.linkGet("cni0"), undefined);
    }
    const check = await cni(lab.node, { command: "CHECK", ...env }, conf);
    assert.equal(check.code, 0, check.stdout);
    assert.equal((await cni(lab.node, { command: "DEL", ...env }, conf)).code, 0);
    assert.deepEqual(lab.allocated("weftnet"), []);
  },
});

Deno.test({
  name: "a chained prevResult is passed through in front of weft's own result",
  ignore: !ROOT,
  async fn() {
    await using lab = await cniLab({ net: "10.244.15" });
    const pod = lab.pod();
    const prevResult = {
      cniVersion: "1.0.0",
      interfaces: [{ name: "other0", mac: "02:00:00:00:00:01" }],
      ips: [{ address: "192.0.2.10/24", interface: 0 }],
      routes: [{ dst: "192.0.2.0/24" }],
      dns: { nameservers: ["192.0.2.53"] },
    };
    const add = await cni(
      lab.node,
      { command: "ADD", containerId: "chain", netns: pod, ifname: "eth0" },
      lab.conf("1.0.0", { prevResult }),
    );
    assert.equal(add.code, 0, add.stdout + add.stderr);
    const ifs = add.out!.interfaces as IfOut[];
    const ips = add.out!.ips as IPOut[];
    assert.equal(ifs[0]!.name, "other0");
    assert.deepEqual(ips[0], { address: "192.0.2.10/24", interface: 0 });
    assert.equal(ifs[ips[1]!.interface!]!.name, "eth0", "weft's address points at its own interface");
    assert.deepEqual((add.out!.routes as unknown[])[0], { dst: "192.0.2.0/24" });
    assert.deepEqual(add.out!.dns, { nameservers: ["192.0.2.53"] });
  },
});

Deno.test({
  name: "with FLANNEL_IPMASQ=false ADD masquerades the pod in nftables and DEL stops it",
  ignore: !ROOT,
  async fn() {
    await using lab = await cniLab({ net: "10.244.16", agentMasq: false });
    const pod = lab.pod();
    const env = { containerId: "masq", netns: pod, ifname: "eth0" };
    const add = await cni(lab.node, { command: "ADD", ...env }, lab.conf("1.0.0"));
    assert.equal(add.code, 0, add.stdout + add.stderr);
    const ip = (add.out!.ips as IPOut[])[0]!.address.split("/")[0]!;
    const table = await nsExec(lab.node, ["nft", "list", "table", "ip", "weft-cni"]);
    assert.match(table.stdout, new RegExp(`elements = \\{ ${ip.replaceAll(".", "\\.")} \\}`));
    assert.match(
      table.stdout,
      /ip saddr @pods ip daddr != 10\.244\.16\.0\/24 ip daddr != 224\.0\.0\.0\/4 masquerade/,
    );
    const saved = JSON.parse(Deno.readTextFileSync(`${lab.dir}/flannel/masq`));
    assert.equal(saved.ipMasq, true, "the saved config says so, as flannel's would");
    assert.equal((await cni(lab.node, { command: "DEL", ...env }, lab.conf("1.0.0"))).code, 0);
    const after = await nsExec(lab.node, ["nft", "list", "set", "ip", "weft-cni", "pods"]);
    assert.doesNotMatch(after.stdout, new RegExp(ip.replaceAll(".", "\\.")));
  },
});

Deno.test({
  name: "a second ADD of the same container and ifname fails and leaves the first one working",
  ignore: !ROOT,
  async fn() {
    await using lab = await cniLab({ net: "10.244.17" });
    const pod = lab.pod();
    const env = { containerId: "twice", netns: pod, ifname: "eth0" };
    const first = await cni(lab.node, { command: "ADD", ...env }, lab.conf("1.0.0"));
    assert.equal(first.code, 0, first.stdout);
    const second = await cni(lab.node, { command: "ADD", ...env }, lab.conf("1.0.0"));
    assert.notEqual(second.code, 0);
    assert.match(String(second.out?.msg), /ADD twice/);
    assert.equal(lab.allocated().length, 1);
    const check = await cni(lab.node, { command: "CHECK", ...env }, lab.conf("1.0.0"));
    assert.equal(check.code, 0, check.stdout);
  },
});

Deno.test({
  name: "a previous lease's gateway on a cni0 without pods is replaced instead of failing every ADD",
  ignore: !ROOT,
  async fn() {
    await using lab = await cniLab({ net: "10.244.18" });
    {
      using nl = Netlink.open({ netns: lab.node });
      const br = nl.linkAddBridge({ name: "cni0", mtu: 1450 });
      nl.addrAdd(br.index, "10.244.99.1/24");
    }
    const add = await cni(
      lab.node,
      { command: "ADD", containerId: "a", netns: lab.pod(), ifname: "eth0" },
      lab.conf("1.0.0"),
    );
    assert.equal(add.code, 0, add.stdout + add.stderr);
    using nl = Netlink.open({ netns: lab.node });
    assert.deepEqual(nl.addrList("cni0", 4).map((a) => a.cidr), ["10.244.18.1/24"]);
  },
});

Deno.test({
  name: "the cni0 weft creates keeps its MAC and MTU while pods come and go",
  ignore: !ROOT,
  async fn() {
    await using lab = await cniLab({ net: "10.244.19" });
    const macs: string[] = [];
    for (const id of ["a", "b", "c"]) {
      const add = await cni(
        lab.node,
        { command: "ADD", containerId: id, netns: lab.pod(), ifname: "eth0" },
        lab.conf("1.0.0"),
      );
      assert.equal(add.code, 0, add.stdout + add.stderr);
      macs.push((add.out!.interfaces as IfOut[])[0]!.mac);
    }
    assert.equal(
      (await cni(
        lab.node,
        { command: "DEL", containerId: "a", netns: "", ifname: "eth0" },
        lab.conf("1.0.0"),
      )).code,
      0,
    );
    using nl = Netlink.open({ netns: lab.node });
    assert.deepEqual(new Set(macs).size, 1, `bridge MAC changed across ADDs: ${macs}`);
    assert.equal(nl.linkGet("cni0")!.mac, macs[0], "ports joining and leaving did not change the bridge MAC");
    for (const id of ["b", "c"]) {
      const del = await cni(
        lab.node,
        { command: "DEL", containerId: id, netns: "", ifname: "eth0" },
        lab.conf("1.0.0"),
      );
      assert.equal(del.code, 0, del.stdout);
    }
    assert.equal(nl.linkGet("cni0")!.mtu, 1450, "the MTU stays FLANNEL_MTU when the last pod leaves");
  },
});
