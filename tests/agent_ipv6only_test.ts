/**
 * End to end, IPv6-only (`EnableIPv4: false`, `EnableIPv6: true`): 2 nodes whose underlay NIC has a global
 * IPv6 address, a real etcd, real `weft agent` processes and weft's CNI plugin (main.ts) adding a pod on
 * each node. The lease is flannel's IPv6-only form byte for byte (PublicIP "0.0.0.0", no BackendData,
 * BackendV6Data with the `flannel-v6.1` MAC), only `flannel-v6.1` exists, subnet.env has only the IPv6
 * lines, the pods get IPv6 addresses only, and they ping6 each other across the overlay.
 */
import assert from "node:assert/strict";
import { Netlink } from "../ffi/mod.ts";
import { formatNet } from "../src/net/ip.ts";
import { type AgentProcess, startAgent, waitFor, waitReady, waitSubnetEnv } from "./helpers/agent.ts";
import { cni } from "./helpers/cni.ts";
import { etcdctl, startEtcd } from "./helpers/etcd.ts";
import { createTopology, hasBinary, ROOT } from "./helpers/topology.ts";

Deno.test({
  name:
    "weft agent IPv6-only (2 nodes): flannel's IPv6-only lease, flannel-v6.1 alone, CNI pods ping6 across vxlan",
  ignore: !ROOT || !hasBinary("etcd") || !hasBinary("ping"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using topo = await createTopology({ nodes: 2 });
    const dir = await Deno.makeTempDir({ prefix: "weft-v6only-" });
    // An IPv6-only underlay: the nodes' NICs lose their IPv4 address and route, etcd listens on IPv6.
    {
      using ul = Netlink.open({ netns: topo.underlay });
      ul.addrReplace("br0", "fd77::1/64", { nodad: true });
    }
    topo.nodes.forEach((n, i) => {
      using nl = Netlink.open({ netns: n.netns });
      nl.addrReplace(n.iface, `fd77::${11 + i}/64`, { nodad: true });
      nl.addrDelete(n.iface, `${n.ip}/24`);
      nl.routeReplace({ dst: "::/0", gateway: "fd77::1", dev: nl.linkIndex(n.iface) });
      topo.sysctl(n, "net.ipv6.conf.all.forwarding", "1");
      assert.deepEqual(nl.addrList(nl.linkIndex(n.iface), 4).filter((a) => a.scope === 0), [], "no IPv4");
    });
    await using etcd = await startEtcd({ netns: topo.underlay, host: "fd77::1" });
    const ctl = (args: string[]) => etcdctl(etcd.endpoint, args, { netns: topo.underlay });
    const P = "/weft/v6only";
    await ctl([
      "put",
      `${P}/config`,
      JSON.stringify({
        EnableIPv4: false,
        EnableIPv6: true,
        IPv6Network: "fd00:10:244::/56",
        Backend: { Type: "vxlan" },
      }),
    ]);
    let agents: AgentProcess[] = [];
    try {
      agents = topo.nodes.map((n) =>
        startAgent(n, {
          etcd: etcd.endpoint,
          dir,
          args: ["--resync-interval=1", "--ip-masq", `--etcd-prefix=${P}`],
        })
      );
      const envs = await Promise.all(agents.map((a) => waitSubnetEnv(a)));
      await Promise.all(agents.map((a) => waitReady(a)));

      // subnet.env: the IPv6 lines only, as flanneld writes them on an IPv6-only network.
      const text = Deno.readTextFileSync(agents[0]!.subnetFile);
      assert.doesNotMatch(text, /^FLANNEL_(NETWORK|SUBNET)=/m);
      assert.match(text, /^FLANNEL_IPV6_NETWORK=fd00:10:244::\/56$/m);
      assert.equal(envs[0]!.mtu, 1430);

      // The lease, byte for byte as flanneld writes it (field order, PublicIP "0.0.0.0", no BackendData).
      using nl0 = Netlink.open({ netns: topo.nodes[0]!.netns });
      const v6dev = nl0.linkGet("flannel-v6.1");
      assert.ok(v6dev, "flannel-v6.1 exists");
      assert.equal(nl0.linkGet("flannel.1"), undefined, "no IPv4 VTEP on an IPv6-only network");
      const key = `${P}/subnets/${formatNet(envs[0]!.ipv6Subnet!).replace("/", "-")}`;
      const value = (await ctl(["get", "--print-value-only", key])).trim();
      assert.equal(
        value,
        `{"PublicIP":"0.0.0.0","PublicIPv6":"fd77::11","BackendType":"vxlan","BackendV6Data":{"VNI":1,"VtepMAC":"${v6dev.mac}"}}`,
      );

      // A pod on each node through weft's CNI plugin.
      const pods: { ns: string; ip: string }[] = [];
      for (const [i, n] of topo.nodes.entries()) {
        const pod = await topo.addNamespace(`v6pod${i}`);
        const r = await cni(n.netns, {
          command: "ADD",
          containerId: `v6only${i}`,
          netns: `/run/netns/${pod}`,
          ifname: "eth0",
        }, {
          cniVersion: "1.0.0",
          name: "cbr0",
          type: "flannel",
          subnetFile: agents[i]!.subnetFile,
          dataDir: `${dir}/flannel-${i}`,
          delegate: { hairpinMode: true, isDefaultGateway: true, ipam: { dataDir: `${dir}/networks-${i}` } },
        });
        assert.equal(r.code, 0, `${r.stdout} ${r.stderr}`);
        const ips = (r.out!.ips as { address: string }[]).map((x) => x.address);
        assert.equal(ips.length, 1, `IPv6 only: ${ips}`);
        assert.match(ips[0]!, /^fd00:10:244:[0-9a-f:]+\/64$/);
        pods.push({ ns: pod, ip: ips[0]!.split("/")[0]! });
      }
      await waitFor("pod 0 → pod 1 (ping6)", 15_000, () => topo.ping(pods[0]!.ns, pods[1]!.ip));
      await waitFor("pod 1 → pod 0 (ping6)", 15_000, () => topo.ping(pods[1]!.ns, pods[0]!.ip));
    } finally {
      await Promise.all(agents.map((a) => a.stop("SIGKILL")));
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
