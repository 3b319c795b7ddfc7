/**
 * End to end, dual-stack (EnableIPv6): 2 nodes in namespaces whose underlay NIC has an IPv4 and a global
 * IPv6 address, a real etcd in the underlay namespace, real `weft agent` processes (main.ts) inside the
 * nodes. vxlan: flannel's `flannel-v6.1` device, a lease with PublicIPv6 and BackendV6Data, subnet.env
 * with the IPv6 lines, pods' IPv6 gateways pinging across the IPv6 overlay, IPv6 drift repaired; then
 * host-gw: IPv6 routes via each peer's PublicIPv6.
 */
import assert from "node:assert/strict";
import { Netlink } from "../ffi/mod.ts";
import { formatIP, formatNet } from "../src/net/ip.ts";
import type { SubnetEnv } from "../src/config/subnet_env.ts";
import {
  addPodBridge,
  type AgentProcess,
  pingMatrix,
  startAgent,
  waitFor,
  waitReady,
  waitSubnetEnv,
} from "./helpers/agent.ts";
import { etcdctl, startEtcd } from "./helpers/etcd.ts";
import { createTopology, ROOT } from "./helpers/topology.ts";
import { needBinaries } from "./helpers/skip.ts";

Deno.test({
  name: "weft agent dual-stack (2 nodes): IPv6 leases, flannel-v6.1, IPv6 pods ping across vxlan and host-gw",
  ignore: !ROOT || needBinaries("etcd", "ping"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    await using topo = await createTopology({ nodes: 2 });
    const dir = await Deno.makeTempDir({ prefix: "weft-dual-e2e-" });
    await using etcd = await startEtcd({ netns: topo.underlay, host: topo.underlayIP });
    const ctl = (args: string[]) => etcdctl(etcd.endpoint, args, { netns: topo.underlay });
    // Each node's NIC gets a global IPv6 address on one /64 (the underlay bridge carries it as is).
    topo.nodes.forEach((n, i) => {
      using nl = Netlink.open({ netns: n.netns });
      nl.addrReplace(n.iface, `fd77::${11 + i}/64`, { nodad: true });
      topo.sysctl(n, "net.ipv6.conf.all.forwarding", "1");
    });
    let agents: AgentProcess[] = [];
    const stopAll = async () => {
      await Promise.all(agents.map((a) => a.stop("SIGKILL")));
      agents = [];
    };
    /** Writes a dual-stack network config under `prefix` and starts an agent per node on it. */
    const startNetwork = async (prefix: string, backend: string): Promise<SubnetEnv[]> => {
      await ctl([
        "put",
        `${prefix}/config`,
        JSON.stringify({
          Network: "10.244.0.0/16",
          EnableIPv6: true,
          IPv6Network: "fd00:10:244::/56",
          Backend: { Type: backend },
        }),
      ]);
      agents = topo.nodes.map((n) =>
        startAgent(n, { etcd: etcd.endpoint, dir, args: ["--resync-interval=1", `--etcd-prefix=${prefix}`] })
      );
      const envs = await Promise.all(agents.map((a) => waitSubnetEnv(a)));
      await Promise.all(agents.map((a) => waitReady(a)));
      return envs;
    };
    try {
      await t.step("vxlan: IPv6 lease fields, devices, subnet.env, pings over both overlays", async () => {
        try {
          const P = "/weft/dual-vxlan";
          const envs = await startNetwork(P, "vxlan");
          for (const env of envs) {
            assert.equal(formatNet(env.ipv6Network!), "fd00:10:244::/56");
            assert.equal(env.ipv6Subnet?.prefix, 64, "flannel's IPv6SubnetLen default");
            // Pods get the smaller of the two overlays' MTUs: 1500 - 70 (IPv6 outer header) = 1430.
            assert.equal(env.mtu, 1430);
          }
          const text = Deno.readTextFileSync(agents[0]!.subnetFile);
          assert.match(text, /^FLANNEL_IPV6_NETWORK=fd00:10:244::\/56$/m);
          assert.match(text, /^FLANNEL_IPV6_SUBNET=fd00:10:244:[0-9a-f]*::1\/64$/m);

          // The lease is flannel's dual-stack form: key `v4&v6`, PublicIPv6, BackendV6Data.
          const key = `${formatNet(envs[0]!.subnet!).replace("/", "-")}&${
            formatNet(envs[0]!.ipv6Subnet!).replace("/", "-")
          }`;
          const stored = JSON.parse(await ctl(["get", "--print-value-only", `${P}/subnets/${key}`]));
          assert.equal(stored.PublicIPv6, "fd77::11");
          using nl0 = Netlink.open({ netns: topo.nodes[0]!.netns });
          const v6dev = nl0.linkGet("flannel-v6.1")!;
          assert.ok(v6dev, "flannel-v6.1 exists");
          assert.deepEqual(stored.BackendV6Data, { VNI: 1, VtepMAC: v6dev.mac });
          assert.equal(stored.BackendData.VtepMAC, nl0.linkGet("flannel.1")!.mac);
          assert.equal(v6dev.vxlan?.local, "fd77::11");
          assert.equal(v6dev.mtu, 1430);
          assert.deepEqual(
            nl0.addrList(v6dev.index, 6).filter((a) => a.scope === 0).map((a) => a.cidr),
            [`${formatIP(envs[0]!.ipv6Subnet!.ip)}/128`],
          );
          // The peer's IPv6 entries: onlink route, permanent neighbour, FDB entry towards its PublicIPv6. Both
          // agents start at once, so node 0's first list may not hold node 1's lease yet (/readyz is about the
          // leases it knows): its entries follow with the watch event, moments later.
          const peer6 = formatNet(envs[1]!.ipv6Subnet!);
          const route = await waitFor(
            "the peer's IPv6 route",
            10_000,
            () => nl0.routeList({ protocol: 87, family: 6 }).find((r) => r.dst === peer6),
          );
          assert.equal(route?.index, v6dev.index);
          assert.equal(route?.gateway, formatIP(envs[1]!.ipv6Subnet!.ip));
          assert.ok(nl0.fdbList().some((f) => f.index === v6dev.index && f.dst === "fd77::12"));

          topo.nodes.forEach((n, i) => addPodBridge(n.netns, envs[i]!));
          assert.deepEqual(await pingMatrix(topo, envs, 15_000), [], "IPv4 still works");
          assert.deepEqual(
            await pingMatrix(topo, envs, 15_000, 6),
            [],
            "IPv6 pods' gateways reach each other",
          );

          // Drift on the IPv6 side is repaired like the IPv4 side: route and neighbour deleted by hand.
          nl0.routeDelete({ dst: peer6, protocol: 87 });
          nl0.neighDelete({ dev: v6dev.index, ip: formatIP(envs[1]!.ipv6Subnet!.ip) });
          await waitFor(
            "IPv6 route repaired",
            10_000,
            () => nl0.routeList({ protocol: 87, family: 6 }).some((r) => r.dst === peer6) || undefined,
          );
          assert.deepEqual(await pingMatrix(topo, envs, 10_000, 6), []);
        } finally {
          await stopAll(); // also after a failure: the next step must not run beside these agents
        }
      });

      await t.step("host-gw: IPv6 routes via each peer's PublicIPv6", async () => {
        // Node 1 asks for the subnets node 0 had under vxlan (the subnet.env's subnet is tried first): node
        // 0's flannel.1 and flannel-v6.1 stay with those subnets' addresses, which must not make node 1's
        // new lease look "directly connected" on node 0.
        const env0 = `${dir}/${topo.nodes[0]!.netns}.subnet.env`;
        const vxlanEnv0 = await Deno.readTextFile(env0);
        for (const n of topo.nodes) {
          await Deno.remove(`${dir}/${n.netns}.subnet.env`).catch(() => {});
          using nl = Netlink.open({ netns: n.netns });
          nl.linkDelete("cni0");
        }
        await Deno.writeTextFile(`${dir}/${topo.nodes[1]!.netns}.subnet.env`, vxlanEnv0);
        const envs = await startNetwork("/weft/dual-hostgw", "host-gw");
        assert.match(
          vxlanEnv0,
          new RegExp(`^FLANNEL_IPV6_SUBNET=${formatIP(envs[1]!.ipv6Subnet!.ip)}1/64$`, "m"),
        );
        topo.nodes.forEach((n, i) => addPodBridge(n.netns, envs[i]!));
        using nl0 = Netlink.open({ netns: topo.nodes[0]!.netns });
        // The previous run's vxlan routes are weft's, in the same cluster network, and unwanted now: pruned.
        // Wait for both: the peers' host-gw routes exist, and no other route of weft's is left (an empty
        // list alone would pass before the new routes are in).
        const peers6 = envs.slice(1).map((e) => formatNet(e.ipv6Subnet!));
        await waitFor("only host-gw routes left", 10_000, () => {
          const routes = nl0.routeList({ protocol: 87, family: 6 });
          const onEth0 = routes.every((r) => r.index === nl0.linkIndex("eth0"));
          return (onEth0 && peers6.every((d) => routes.some((r) => r.dst === d))) || undefined;
        });
        const r = nl0.routeList({ protocol: 87, family: 6 }).find((x) =>
          x.dst === formatNet(envs[1]!.ipv6Subnet!)
        );
        assert.equal(r?.gateway, "fd77::12");
        assert.deepEqual(await pingMatrix(topo, envs, 15_000, 6), []);
      });
    } finally {
      await stopAll();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
