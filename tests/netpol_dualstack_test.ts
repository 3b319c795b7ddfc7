/**
 * Network policy for dual-stack pods: the same compiled table judges IPv4 and IPv6 connections (ip and
 * ip6 maps, per-family peer sets), for pods bridged on one node's cni0 (br_netfilter's ip6 path).
 */
import assert from "node:assert/strict";
import { Netlink, withNetns } from "../ffi/mod.ts";
import { ensureBridgeNetfilter } from "../src/policy/br_netfilter.ts";
import { compilePolicies } from "../src/policy/compile.ts";
import { parseCIDR } from "../src/net/ip.ts";
import { namespaceObject, podObject, policy } from "./helpers/netpol_cases.ts";
import { NodeTable } from "./helpers/netpol_direct.ts";
import { Prober } from "./helpers/netpol_prober.ts";
import { createTopology, requireRoot } from "./helpers/topology.ts";

Deno.test({
  name: "dual-stack pods: IPv4 and IPv6 connections are judged by the same policies, per family",
  ignore: requireRoot(),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using topo = await createTopology({ nodes: 1 });
    const node = topo.nodes[0]!;
    {
      using nl = Netlink.open({ netns: node.netns });
      const br = nl.linkAddBridge({ name: "cni0" });
      nl.addrReplace(br.index, "10.244.1.1/24");
      nl.addrReplace(br.index, "fd00:10:244:1::1/64", { nodad: true });
      nl.linkSetUp(br.index);
    }
    topo.sysctl(node, "net.ipv6.conf.all.forwarding", "1");
    withNetns(node.netns, () => ensureBridgeNetfilter());
    const names = ["a", "b", "c", "d"];
    const pods = new Map<string, { v4: string; v6: string; prober: Prober }>();
    try {
      for (const [i, name] of names.entries()) {
        const v4 = `10.244.1.${10 + i}`, v6 = `fd00:10:244:1::${10 + i}`;
        const p = await topo.addPod(node, { name, cidr: `${v4}/24`, gateway: "10.244.1.1", bridge: "cni0" });
        {
          using pl = Netlink.open({ netns: p.netns });
          pl.addrReplace("eth0", `${v6}/64`, { nodad: true });
        }
        topo.sysctl(p, "net.ipv4.tcp_syn_retries", "1");
        topo.sysctl(p, "net.ipv6.conf.all.disable_ipv6", "0");
        pods.set(name, { v4, v6, prober: await Prober.start(p.netns, `x/${name}`, [80, 81]) });
      }
      const objects = names.map((name) => {
        const { v4, v6 } = pods.get(name)!;
        const o = podObject({ ns: "x", name, labels: { pod: name }, node: 0 }, v4);
        o.status!.podIPs = [{ ip: v4 }, { ip: v6 }];
        return o;
      });
      const rs = compilePolicies({
        policies: [
          policy("x", "a-from-b", {
            podSelector: { matchLabels: { pod: "a" } },
            ingress: [{ from: [{ podSelector: { matchLabels: { pod: "b" } } }], ports: [{ port: 80 }] }],
          }),
          policy("x", "c-out-v6", {
            podSelector: { matchLabels: { pod: "c" } },
            policyTypes: ["Egress"],
            egress: [{
              to: [{ ipBlock: { cidr: "fd00:10:244:1::/64", except: [`${pods.get("b")!.v6}/128`] } }],
            }],
          }),
        ],
        pods: objects,
        namespaces: [namespaceObject("x", { ns: "x" })],
        nodeName: "node-0",
      });
      const nets = [parseCIDR("10.244.1.0/24").net, parseCIDR("fd00:10:244:1::/64").net];
      await new NodeTable(node.netns, nets).apply(rs);

      const probe = async (
        from: string,
        to: string,
        fam: "v4" | "v6",
        proto: "tcp" | "udp",
        port: number,
      ) => {
        const reply = await pods.get(from)!.prober.probe(pods.get(to)![fam], { proto, port }, 1500);
        if (reply !== undefined) assert.equal(reply, `x/${to} ${proto}/${port}`);
        return reply !== undefined;
      };
      const table: [string, string, "v4" | "v6", "tcp" | "udp", number, boolean][] = [
        ["b", "a", "v4", "tcp", 80, true],
        ["b", "a", "v6", "tcp", 80, true],
        ["b", "a", "v6", "tcp", 81, false],
        ["b", "a", "v6", "udp", 80, false],
        ["d", "a", "v4", "tcp", 80, false],
        ["d", "a", "v6", "tcp", 80, false],
        ["c", "d", "v6", "tcp", 80, true],
        ["c", "d", "v6", "udp", 81, true],
        ["c", "d", "v4", "tcp", 80, false], // c's egress allows an IPv6 block only
        ["c", "b", "v6", "tcp", 80, false], // b's address is the block's except
        ["d", "b", "v6", "udp", 80, true],
        ["d", "c", "v4", "tcp", 81, true],
      ];
      const got = await Promise.all(table.map(([f, t, fam, proto, port]) => probe(f, t, fam, proto, port)));
      const wrong = table.filter((row, i) => got[i] !== row[5])
        .map(([f, t, fam, proto, port, want]) => `${f} -> ${t} ${fam} ${proto}/${port}: expected ${want}`);
      assert.deepEqual(wrong, []);
    } finally {
      for (const p of pods.values()) await p.prober.close();
    }
  },
});
