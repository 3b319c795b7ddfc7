/**
 * End to end, host-gw and vxlan DirectRouting: 3 nodes in namespaces on one L2 underlay, a real etcd in
 * the underlay namespace, real `weft agent` processes (main.ts) inside the nodes.
 */
import assert from "node:assert/strict";
import { Netlink } from "../ffi/mod.ts";
import { formatNet } from "../src/net/ip.ts";
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

const MAIN = new URL("../main.ts", import.meta.url).pathname;

function lease(publicIP: string, type: string, data: unknown = null): string {
  return JSON.stringify({ PublicIP: publicIP, PublicIPv6: null, BackendType: type, BackendData: data });
}

Deno.test({
  name:
    "weft agent (host-gw, 3 nodes): routes via each peer's PublicIP, pings, refuses a public IP off the NIC",
  ignore: !ROOT,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    await using topo = await createTopology({ nodes: 3 });
    const dir = await Deno.makeTempDir({ prefix: "weft-hostgw-e2e-" });
    await using etcd = await startEtcd({ netns: topo.underlay, host: topo.underlayIP });
    const ctl = (args: string[], prefix: string) =>
      etcdctl(etcd.endpoint, args.map((a) => a.replace("$P", prefix)), { netns: topo.underlay });
    let agents: AgentProcess[] = [];
    const stopAll = async () => {
      await Promise.all(agents.map((a) => a.stop("SIGKILL")));
      agents = [];
    };
    try {
      const HG = "/weft/hostgw";
      await ctl([
        "put",
        "$P/config",
        JSON.stringify({ Network: "10.244.0.0/16", Backend: { Type: "host-gw" } }),
      ], HG);
      // A lease of another backend: ignored, with a log line, as flannel does.
      await ctl(["put", "$P/subnets/10.244.99.0-24", lease("192.168.77.99", "udp")], HG);
      let envs: SubnetEnv[] = [];

      await t.step("every node reaches every other node's subnet through host-gw routes", async () => {
        agents = topo.nodes.map((n) =>
          startAgent(n, { etcd: etcd.endpoint, dir, args: ["--resync-interval=2", `--etcd-prefix=${HG}`] })
        );
        envs = await Promise.all(agents.map((a) => waitSubnetEnv(a)));
        await Promise.all(agents.map((a) => waitReady(a)));
        topo.nodes.forEach((n, i) => addPodBridge(n.netns, envs[i]!));
        assert.deepEqual(await pingMatrix(topo, envs, 15_000), []);
        assert.match(Deno.readTextFileSync(agents[0]!.subnetFile), /^FLANNEL_MTU=1500$/m, "no encapsulation");
        using nl = Netlink.open({ netns: topo.nodes[0]!.netns });
        const eth0 = nl.linkIndex("eth0");
        for (const i of [1, 2]) {
          const r = nl.routeList({ protocol: 87 }).find((x) => x.dst === formatNet(envs[i]!.subnet!));
          assert.equal(r?.gateway, topo.nodes[i]!.ip, "host-gw routes go via the peer's public IP");
          assert.equal(r?.index, eth0);
        }
        assert.ok(!nl.routeList({}).some((r) => r.dst === "10.244.99.0/24"), "the udp lease got no route");
        assert.equal(nl.linkGet("flannel.1"), undefined, "host-gw makes no device");
        const log = Deno.readTextFileSync(agents[0]!.logFile);
        assert.match(log, /ignoring lease 10\.244\.99\.0-24: backend udp, not host-gw/);
      });

      await t.step("a peer's lease deleted: its host-gw route goes away", async () => {
        await agents[2]!.stop();
        await ctl(["del", `$P/subnets/${formatNet(envs[2]!.subnet!).replace("/", "-")}`], HG);
        using nl = Netlink.open({ netns: topo.nodes[0]!.netns });
        await waitFor(
          "route removed",
          10_000,
          () => !nl.routeList({ protocol: 87 }).some((r) => r.dst === formatNet(envs[2]!.subnet!)),
        );
      });

      await t.step("host-gw refuses to start when --public-ip is not on the interface", async () => {
        await stopAll();
        const r = await topo.exec(topo.nodes[0]!.netns, [
          Deno.execPath(),
          "run",
          "-A",
          "--no-check",
          MAIN,
          "agent",
          `--etcd-endpoints=${etcd.endpoint}`,
          `--etcd-prefix=${HG}`,
          "--iface=eth0",
          "--public-ip=203.0.113.9",
          `--subnet-file=${dir}/refused.env`,
        ]);
        assert.notEqual(r.code, 0);
        assert.match(
          r.stderr,
          /host-gw: the public IP 203\.0\.113\.9 is not an address of eth0 .*use the vxlan backend instead/,
        );
      });

      await t.step("vxlan DirectRouting: same-L2 peers get direct routes, others the tunnel", async () => {
        // A fresh network under another prefix, same cluster Network: the host-gw routes left on the
        // nodes become stale weft routes that the new agents replace or prune.
        const DR = "/weft/direct";
        await ctl([
          "put",
          "$P/config",
          JSON.stringify({ Network: "10.244.0.0/16", Backend: { Type: "vxlan", DirectRouting: true } }),
        ], DR);
        // A peer on another L2 segment (its VTEP is not on the underlay /24).
        await ctl([
          "put",
          "$P/subnets/10.244.98.0-24",
          lease("10.99.0.5", "vxlan", { VNI: 1, VtepMAC: "02:00:00:00:62:00" }),
        ], DR);
        for (const n of topo.nodes) {
          await Deno.remove(`${dir}/${n.netns}.subnet.env`).catch(() => {});
          // The new leases may reuse a subnet another node's pods bridge still holds from the last run.
          using nl = Netlink.open({ netns: n.netns });
          nl.linkDelete("cni0");
        }
        agents = topo.nodes.slice(0, 2).map((n) =>
          startAgent(n, { etcd: etcd.endpoint, dir, args: ["--resync-interval=2", `--etcd-prefix=${DR}`] })
        );
        const drEnvs = await Promise.all(agents.map((a) => waitSubnetEnv(a)));
        await Promise.all(agents.map((a) => waitReady(a)));
        topo.nodes.slice(0, 2).forEach((n, i) => addPodBridge(n.netns, drEnvs[i]!));
        assert.deepEqual(await pingMatrix({ ...topo, nodes: topo.nodes.slice(0, 2) }, drEnvs, 15_000), []);
        using nl = Netlink.open({ netns: topo.nodes[0]!.netns });
        const routes = nl.routeList({ protocol: 87 });
        const direct = routes.find((x) => x.dst === formatNet(drEnvs[1]!.subnet!));
        assert.equal(direct?.gateway, topo.nodes[1]!.ip);
        assert.equal(direct?.index, nl.linkIndex("eth0"));
        const tunnel = routes.find((x) => x.dst === "10.244.98.0/24");
        assert.equal(tunnel?.index, nl.linkIndex("flannel.1"));
        assert.equal(tunnel?.gateway, "10.244.98.0");
        assert.ok(tunnel?.onlink);
        // Only subnets some lease of this network wants are left.
        const wanted = new Set([formatNet(drEnvs[1]!.subnet!), "10.244.98.0/24"]);
        assert.deepEqual(routes.map((x) => x.dst).filter((d) => !wanted.has(d)), []);
      });
    } finally {
      await stopAll();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
