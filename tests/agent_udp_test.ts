/**
 * End to end, udp backend: 3 nodes in namespaces, real etcd, real `weft agent` processes. Each node gets
 * a bridge holding its subnet's first address, standing in for pods. Checks flannel's udp layout
 * (flannel0, MTU − 28, one route for the network, leases with only PublicIP), connectivity, the wire
 * format (UDP 8285 on the underlay, the inner packet as the whole payload), and what an agent restart
 * costs (the loop stops while no agent runs).
 */
import assert from "node:assert/strict";
import { Netlink } from "../ffi/mod.ts";
import { formatIP, formatNet } from "../src/net/ip.ts";
import type { SubnetEnv } from "../src/config/subnet_env.ts";
import { runIn } from "../src/lab/lab.ts";
import { parsePrometheusText } from "../src/cli/status.ts";
import {
  addPodBridge,
  agentHttp,
  type AgentProcess,
  gatewayOf,
  pingMatrix,
  pingWhile,
  startAgent,
  waitReady,
  waitSubnetEnv,
} from "./helpers/agent.ts";
import { etcdctl, startEtcd } from "./helpers/etcd.ts";
import { startCapture } from "./helpers/tcpdump.ts";
import { createTopology, ROOT } from "./helpers/topology.ts";
import { needBinaries } from "./helpers/skip.ts";

const PREFIX = "/coreos.com/network";
const MAIN = new URL("../main.ts", import.meta.url).pathname;
const CONFIG = JSON.stringify({ Network: "10.244.0.0/16", Backend: { Type: "udp" } });

const keyOf = (env: SubnetEnv) => `${PREFIX}/subnets/${formatNet(env.subnet!).replace("/", "-")}`;

Deno.test({
  name: "weft agent (udp, 3 nodes): flannel's udp layout and lease, pods ping across, a restart's cost",
  ignore: !ROOT || needBinaries("etcd", "tcpdump"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    await using topo = await createTopology({ nodes: 3 });
    const dir = await Deno.makeTempDir({ prefix: "weft-agent-udp-" });
    await using etcd = await startEtcd({ netns: topo.underlay, host: topo.underlayIP });
    const ctl = (args: string[]) => etcdctl(etcd.endpoint, args, { netns: topo.underlay });
    await ctl(["put", `${PREFIX}/config`, CONFIG]);
    const agents: AgentProcess[] = topo.nodes.map((n) =>
      startAgent(n, { etcd: etcd.endpoint, dir, args: ["--resync-interval=2"] })
    );
    try {
      const envs = await Promise.all(agents.map((a) => waitSubnetEnv(a)));
      topo.nodes.forEach((n, i) => addPodBridge(n.netns, envs[i]!));
      await Promise.all(agents.map((a) => waitReady(a)));

      await t.step("every node reaches every other node's subnet across udp", async () => {
        assert.deepEqual(await pingMatrix(topo, envs, 20_000), []);
      });

      await t.step("leases are flannel's udp leases, byte for byte: PublicIP only", async () => {
        for (const [i, n] of topo.nodes.entries()) {
          const value = (await ctl(["get", keyOf(envs[i]!), "--print-value-only"])).trim();
          assert.equal(value, `{"PublicIP":"${n.ip}","PublicIPv6":null}`);
        }
      });

      await t.step(
        "flannel0: a TUN device, MTU 1472, the lease's address /32, the network routed to it",
        () => {
          assert.equal(envs[0]!.mtu, 1472);
          using nl = Netlink.open({ netns: topo.nodes[0]!.netns });
          const dev = nl.linkGet("flannel0")!;
          assert.equal(dev.kind, "tun");
          assert.equal(dev.mtu, 1472);
          assert.ok(dev.up);
          assert.deepEqual(nl.addrList(dev.index, 4).map((a) => a.cidr), [
            `${formatIP(envs[0]!.subnet!.ip)}/32`,
          ]);
          const r = nl.routeList({ family: 4 }).find((r) => r.dst === "10.244.0.0/16");
          assert.equal(r?.index, dev.index);
        },
      );

      await t.step("weft doctor sees flannel0 with the udp loop behind it", async () => {
        const r = await runIn(topo.nodes[0]!.netns, [
          Deno.execPath(),
          "run",
          "-A",
          "--no-check",
          MAIN,
          "doctor",
          "--json",
          "--subnet-file",
          agents[0]!.subnetFile,
        ]);
        const f = (JSON.parse(r.stdout) as { findings: { id: string; status: string; message: string }[] })
          .findings.find((f) => f.id === "udp");
        assert.equal(f?.status, "ok", JSON.stringify(f));
        assert.equal(f?.message, "flannel0 (TUN) with the udp loop listening on UDP 8285");
      });

      await t.step(
        "on the underlay each inner packet is the whole payload of a datagram to port 8285",
        async () => {
          const n0 = topo.nodes[0]!, n1 = topo.nodes[1]!;
          const dump = await startCapture(n0.netns, ["-x", "-i", "eth0", "-c", "2", `udp and host ${n1.ip}`]);
          await topo.ping(n0.netns, gatewayOf(envs[1]!), { source: gatewayOf(envs[0]!), timeoutS: 1 });
          const text = await dump.output();
          const headers = text.split("\n").filter((l) => /^\d/.test(l));
          assert.ok(headers.length >= 2, text);
          for (const h of headers) assert.match(h, /\.8285 > .*\.8285: UDP, length 84/, h);
          // Bytes 28.. of the outer packet (after IP and UDP headers) are the inner IPv4 header: 0x45,
          // protocol ICMP (1), from node0's gateway to node1's.
          const hex = text.split(/\n(?=\d)/)[0]!.split("\n").slice(1).map((l) =>
            l.replace(/^\s*0x[0-9a-f]+:\s*/, "")
          )
            .join("").replace(/\s/g, "");
          assert.equal(hex.slice(56, 58), "45");
          assert.equal(hex.slice(56 + 18, 56 + 20), "01");
          const ip = (o: number) =>
            [0, 2, 4, 6].map((k) => parseInt(hex.slice(56 + o + k, 56 + o + k + 2), 16)).join(".");
          assert.equal(ip(24), gatewayOf(envs[0]!));
          assert.equal(ip(32), gatewayOf(envs[1]!));
        },
      );

      await t.step(
        "a packet for a subnet no lease holds: dropped, counted, answered with net unreachable",
        async () => {
          const a0 = agents[0]!;
          const sample = async (name: string, labels: Record<string, string>) => {
            const [, body] = await agentHttp(a0, "/metrics");
            return parsePrometheusText(body).find((s) =>
              s.name === name && Object.entries(labels).every(([k, v]) => s.labels?.[k] === v)
            )?.value ?? NaN;
          };
          const before = await sample("weft_udp_dropped_total", { reason: "no_peer" });
          assert.ok(await sample("weft_udp_packets_total", { direction: "tun_to_udp" }) > 0);
          // A UDP datagram (ICMP errors are never sent about ICMP, so not a ping) to a pod address no lease
          // holds: flannel's proxy answers it with ICMP "net unreachable" from the node's overlay address.
          const n0 = topo.nodes[0]!.netns;
          const dump = await startCapture(n0, ["-vv", "-i", "flannel0", "-c", "1", "icmp"]);
          const send = await runIn(n0, ["bash", "-c", "echo probe > /dev/udp/10.244.250.1/9"]);
          assert.equal(send.code, 0, send.stderr);
          const seen = await dump.output();
          const local = formatIP(envs[0]!.subnet!.ip).replaceAll(".", "\\.");
          assert.match(seen, new RegExp(`${local} > ${local}: ICMP net 10\\.244\\.250\\.1 unreachable`));
          assert.doesNotMatch(seen, /bad cksum|wrong/, "IP and ICMP checksums verify");
          assert.equal(await sample("weft_udp_dropped_total", { reason: "no_peer" }), before + 1);
        },
      );

      await t.step(
        "a restart: flannel0 is kept; what is lost while no agent forwards is measured",
        async () => {
          const a0 = agents[0]!;
          using nl = Netlink.open({ netns: topo.nodes[0]!.netns });
          const index = nl.linkGet("flannel0")!.index;
          let downMs = 0;
          const ping = await pingWhile(topo, [[0, 1], [1, 0]], envs, async () => {
            const t0 = Date.now();
            await a0.stop("SIGTERM");
            a0.start();
            await waitReady(a0);
            downMs = Date.now() - t0;
          });
          for (const p of ping) {
            console.log(
              `  ping ${p.from}→${p.to} (every 10 ms) across an agent restart (${downMs} ms to ready): ` +
                `${p.received}/${p.sent} received, ${p.lost} lost`,
            );
            assert.ok(p.received > 0);
          }
          assert.equal(nl.linkGet("flannel0")?.index, index, "flannel0 kept (persistent), not recreated");
          assert.deepEqual(await pingMatrix(topo, envs, 20_000), [], "connectivity after the restart");
        },
      );

      await t.step("flannel0 deleted by hand is created again and forwards", async () => {
        using nl = Netlink.open({ netns: topo.nodes[2]!.netns });
        nl.linkDelete("flannel0");
        assert.deepEqual(await pingMatrix(topo, envs, 20_000), []);
        assert.equal(nl.linkGet("flannel0")?.kind, "tun");
      });
    } finally {
      await Promise.all(agents.map((a) => a.stop()));
      await Deno.remove(dir, { recursive: true });
    }
  },
});
