/**
 * End to end, wireguard backend: 3 nodes in namespaces, real etcd, real `weft agent` processes, each in its
 * own mount namespace with its own /run/wireguard (as separate machines have) and its own key file. This
 * kernel has no WireGuard, so the agents run userspace wireguard-go; `wg` (wireguard-tools) and tcpdump
 * check the result from outside.
 */
import assert from "node:assert/strict";
import { Netlink } from "../ffi/mod.ts";
import { formatNet } from "../src/net/ip.ts";
import type { SubnetEnv } from "../src/config/subnet_env.ts";
import { runIn } from "../src/lab/lab.ts";
import {
  addPodBridge,
  type AgentProcess,
  gatewayOf,
  pingMatrix,
  pingWhile,
  startAgent,
  waitFor,
  waitReady,
  waitSubnetEnv,
} from "./helpers/agent.ts";
import { etcdctl, startEtcd } from "./helpers/etcd.ts";
import { startCapture } from "./helpers/tcpdump.ts";
import { pidsInNetns, stopNetnsProcesses } from "./helpers/netns_procs.ts";
import { createTopology, ROOT } from "./helpers/topology.ts";
import { needBinaries } from "./helpers/skip.ts";

const PREFIX = "/coreos.com/network";
const MAIN = new URL("../main.ts", import.meta.url).pathname;
const CONFIG = JSON.stringify({ Network: "10.244.0.0/16", Backend: { Type: "wireguard" } });
const RESYNC_S = 2;

const keyOf = (env: SubnetEnv) => `${PREFIX}/subnets/${formatNet(env.subnet!).replace("/", "-")}`;

/** `wg pubkey` of a private key file: the public key derived by WireGuard's own tool. */
async function wgPubkey(keyFile: string): Promise<string> {
  const r = await runIn(undefined, ["wg", "pubkey"], { stdin: Deno.readTextFileSync(keyFile) });
  if (r.code !== 0) throw new Error(r.stderr);
  return r.stdout.trim();
}

interface WgDump {
  privateKey: string;
  listenPort: number;
  peers: { publicKey: string; endpoint: string; allowedIPs: string; keepalive: string }[];
}

/** `wg show flannel-wg dump`, run in the agent's mount namespace (where its /run/wireguard is). */
async function wgDump(a: AgentProcess, dev = "flannel-wg"): Promise<WgDump> {
  const r = await runIn(undefined, ["nsenter", "-t", String(a.pid), "-m", "wg", "show", dev, "dump"]);
  if (r.code !== 0) throw new Error(`wg show ${dev}: ${r.stderr}`);
  const [head, ...rows] = r.stdout.trim().split("\n").map((l) => l.split("\t"));
  return {
    privateKey: head![0]!,
    listenPort: Number(head![2]),
    peers: rows.map((f) => ({ publicKey: f[0]!, endpoint: f[2]!, allowedIPs: f[3]!, keepalive: f[7]! })),
  };
}

Deno.test({
  name: "weft agent (wireguard, 3 nodes): encrypted pod traffic, flannel's lease, peers follow the leases",
  ignore: !ROOT || needBinaries("etcd", "wireguard-go", "wg", "tcpdump", "nsenter"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    await using topo = await createTopology({ nodes: 3 });
    const dir = await Deno.makeTempDir({ prefix: "weft-agent-wg-" });
    await using etcd = await startEtcd({ netns: topo.underlay, host: topo.underlayIP });
    const ctl = (args: string[]) => etcdctl(etcd.endpoint, args, { netns: topo.underlay });
    await ctl(["put", `${PREFIX}/config`, CONFIG]);
    const keyFile = (i: number) => `${dir}/${topo.nodes[i]!.netns}.wgkey`;
    const agents: AgentProcess[] = topo.nodes.map((n, i) =>
      startAgent(n, {
        etcd: etcd.endpoint,
        dir,
        args: [`--resync-interval=${RESYNC_S}`],
        env: { WIREGUARD_KEY_FILE: keyFile(i) },
        binds: { "/run/wireguard": `${dir}/${n.netns}-run-wireguard` },
      })
    );
    const [n0, n1] = topo.nodes as [typeof topo.nodes[0], typeof topo.nodes[0]];
    const [a0, , a2] = agents as [AgentProcess, AgentProcess, AgentProcess];
    try {
      const envs = await Promise.all(agents.map((a) => waitSubnetEnv(a)));
      topo.nodes.forEach((n, i) => addPodBridge(n.netns, envs[i]!));
      await Promise.all(agents.map((a) => waitReady(a)));

      await t.step("every node reaches every other node's subnet across WireGuard", async () => {
        assert.deepEqual(await pingMatrix(topo, envs, 20_000), []);
      });

      await t.step(
        "leases are flannel's wireguard leases, byte for byte, with the key `wg pubkey` derives",
        async () => {
          for (const [i, n] of topo.nodes.entries()) {
            const value = (await ctl(["get", keyOf(envs[i]!), "--print-value-only"])).trim();
            const pub = await wgPubkey(keyFile(i));
            assert.equal(
              value,
              `{"PublicIP":"${n.ip}","PublicIPv6":null,"BackendType":"wireguard","BackendData":{"PublicKey":"${pub}","Port":51820}}`,
            );
            assert.equal(Deno.statSync(keyFile(i)).mode! & 0o777, 0o400);
          }
        },
      );

      await t.step(
        "flannel-wg: userspace WireGuard, MTU 1420, one peer per node with its subnet",
        async () => {
          assert.equal(envs[0]!.mtu, 1420);
          using nl = Netlink.open({ netns: n0.netns });
          const dev = nl.linkGet("flannel-wg")!;
          assert.equal(dev.kind, "tun", "wireguard-go's device (this kernel has no WireGuard)");
          assert.equal(dev.mtu, 1420);
          const dump = await wgDump(a0);
          assert.equal(dump.privateKey, Deno.readTextFileSync(keyFile(0)).trim());
          assert.equal(dump.listenPort, 51820);
          const want = await Promise.all([1, 2].map(async (i) => ({
            publicKey: await wgPubkey(keyFile(i)),
            endpoint: `${topo.nodes[i]!.ip}:51820`,
            allowedIPs: formatNet(envs[i]!.subnet!),
            keepalive: "off",
          })));
          const byKey = (a: { publicKey: string }, b: { publicKey: string }) =>
            a.publicKey.localeCompare(b.publicKey);
          assert.deepEqual(dump.peers.sort(byKey), want.sort(byKey));
          const routes = nl.routeList({ family: 4 });
          assert.equal(routes.find((r) => r.dst === "10.244.0.0/16")?.index, dev.index);
          for (const i of [1, 2]) {
            assert.equal(routes.find((r) => r.dst === formatNet(envs[i]!.subnet!))?.index, dev.index);
          }
        },
      );

      await t.step(
        "weft doctor says which WireGuard is in use (userspace wireguard-go, its pid)",
        async () => {
          const [pid] = pidsInNetns(n0.netns, "wireguard-go");
          // In the agent's namespaces: its network namespace and its /run/wireguard.
          const r = await runIn(undefined, [
            "nsenter",
            "-t",
            String(a0.pid),
            "-m",
            "-n",
            Deno.execPath(),
            "run",
            "-A",
            "--no-check",
            MAIN,
            "doctor",
            "--json",
            "--subnet-file",
            a0.subnetFile,
          ]);
          const f = (JSON.parse(r.stdout) as { findings: { id: string; status: string; message: string }[] })
            .findings.find((f) => f.id === "wireguard");
          assert.equal(f?.status, "ok", JSON.stringify(f));
          assert.equal(
            f?.message,
            `flannel-wg: userspace WireGuard (wireguard-go, pid ${pid}), port 51820, 2 peers`,
          );
        },
      );

      await t.step(
        "tcpdump on the underlay sees only UDP between WireGuard ports, never the pods' ICMP",
        async () => {
          // Everything between the nodes (etcd, in the underlay namespace, is the only other host).
          const dump = await startCapture(n0.netns, ["-i", "eth0", `ip and not host ${topo.underlayIP}`]);
          const ping = await runIn(n0.netns, [
            "ping",
            "-c",
            "10",
            "-i",
            "0.05",
            "-I",
            gatewayOf(envs[0]!),
            gatewayOf(envs[1]!),
          ]);
          assert.equal(ping.code, 0, ping.stdout);
          // 10 echoes and 10 replies crossed the underlay: wait for tcpdump to have printed them.
          const lines = (await dump.stopAfter(20)).trim().split("\n").filter(Boolean);
          assert.ok(lines.length >= 20, `${lines.length} packets captured:\n${lines.join("\n")}`);
          for (const l of lines) {
            assert.match(
              l,
              new RegExp(
                `IP ${n0.ip.replaceAll(".", "\\.")}\\.51820 > ${
                  n1.ip.replaceAll(".", "\\.")
                }\\.51820: UDP|IP ${n1.ip.replaceAll(".", "\\.")}\\.51820 > ${
                  n0.ip.replaceAll(".", "\\.")
                }\\.51820: UDP`,
              ),
              l,
            );
            assert.doesNotMatch(l, /ICMP|10\.244\./, l);
          }
        },
      );

      await t.step("an agent restart keeps the key and wireguard-go: forwarding goes on", async () => {
        const [pid] = pidsInNetns(n0.netns, "wireguard-go");
        const before = (await ctl(["get", keyOf(envs[0]!), "--print-value-only"])).trim();
        const ping = await pingWhile(topo, [[0, 1], [1, 0]], envs, async () => {
          await a0.stop("SIGTERM");
          a0.start();
          await waitReady(a0);
        });
        for (const p of ping) {
          console.log(
            `  ping ${p.from}→${p.to} across an agent restart: ${p.received}/${p.sent}, ${p.lost} lost`,
          );
          // The datapath is untouched (same process, keys, peers); but wireguard-go is a userspace process
          // on a shared 2-core machine, and a starting agent's CPU burst can make it drop a queued packet.
          assert.ok(p.lost <= Math.ceil(p.sent / 100), `${p.lost} of ${p.sent} lost`);
        }
        assert.deepEqual(pidsInNetns(n0.netns, "wireguard-go"), [pid], "the same wireguard-go, adopted");
        assert.equal((await ctl(["get", keyOf(envs[0]!), "--print-value-only"])).trim(), before);
      });

      const node2Key = await wgPubkey(keyFile(2));
      const node2Subnet = formatNet(envs[2]!.subnet!);
      await t.step("a peer's lease deleted: its WireGuard peer and its route go", async () => {
        await a2.stop("SIGKILL"); // or it would take its lease again
        await ctl(["del", keyOf(envs[2]!)]);
        using nl = Netlink.open({ netns: n0.netns });
        const t0 = Date.now();
        await waitFor("peer removed", 10_000, async () => {
          const dump = await wgDump(a0);
          return !dump.peers.some((p) => p.publicKey === node2Key) &&
            !nl.routeList({ family: 4 }).some((r) => r.dst === node2Subnet);
        }, 100);
        console.log(`  peer and route gone ${Date.now() - t0} ms after the lease was deleted`);
        assert.equal((await wgDump(a0)).peers.length, 1);
      });

      await t.step("a peer whose key changed is updated, not duplicated", async () => {
        Deno.removeSync(keyFile(2));
        a2.start(); // a new key; the same subnet (its subnet.env) and the same, adopted wireguard-go
        await waitReady(a2);
        const newKey = await wgPubkey(keyFile(2));
        assert.notEqual(newKey, node2Key);
        await waitFor("new key on node0", 10_000, async () => {
          return (await wgDump(a0)).peers.some((p) => p.publicKey === newKey);
        }, 100);
        const peers = (await wgDump(a0)).peers;
        assert.equal(peers.length, 2, JSON.stringify(peers));
        assert.ok(!peers.some((p) => p.publicKey === node2Key), "the old key is gone");
        assert.equal(peers.find((p) => p.publicKey === newKey)?.allowedIPs, node2Subnet);
        assert.deepEqual(await pingMatrix(topo, envs, 20_000), []);
      });
    } finally {
      await Promise.all(agents.map((a) => a.stop()));
      for (const n of topo.nodes) await stopNetnsProcesses(n.netns, "wireguard-go");
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name:
    "weft agent (wireguard, dual-stack, separate mode): flannel-wg-v6, flannel's v6 lease data, IPv6 pings",
  ignore: !ROOT || needBinaries("etcd", "wireguard-go", "wg", "nsenter"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using topo = await createTopology({ nodes: 2 });
    const dir = await Deno.makeTempDir({ prefix: "weft-agent-wg6-" });
    await using etcd = await startEtcd({ netns: topo.underlay, host: topo.underlayIP });
    const ctl = (args: string[]) => etcdctl(etcd.endpoint, args, { netns: topo.underlay });
    topo.nodes.forEach((n, i) => {
      using nl = Netlink.open({ netns: n.netns });
      nl.addrReplace(n.iface, `fd77::${11 + i}/64`, { nodad: true });
      topo.sysctl(n, "net.ipv6.conf.all.forwarding", "1");
    });
    await ctl([
      "put",
      `${PREFIX}/config`,
      JSON.stringify({
        Network: "10.244.0.0/16",
        EnableIPv6: true,
        IPv6Network: "fd00:10:244::/56",
        Backend: { Type: "wireguard" },
      }),
    ]);
    const keyFile = (i: number) => `${dir}/${topo.nodes[i]!.netns}.wgkey`;
    const agents = topo.nodes.map((n, i) =>
      startAgent(n, {
        etcd: etcd.endpoint,
        dir,
        args: [`--resync-interval=${RESYNC_S}`],
        env: { WIREGUARD_KEY_FILE: keyFile(i) },
        binds: { "/run/wireguard": `${dir}/${n.netns}-run-wireguard` },
      })
    );
    try {
      const envs = await Promise.all(agents.map((a) => waitSubnetEnv(a)));
      topo.nodes.forEach((n, i) => addPodBridge(n.netns, envs[i]!));
      await Promise.all(agents.map((a) => waitReady(a)));
      assert.deepEqual(await pingMatrix(topo, envs, 20_000, 6), [], "IPv6 across flannel-wg-v6");
      assert.deepEqual(await pingMatrix(topo, envs, 20_000, 4), [], "IPv4 across flannel-wg");
      assert.equal(envs[0]!.mtu, 1420);
      const key = `${PREFIX}/subnets/${formatNet(envs[1]!.subnet!).replace("/", "-")}&${
        formatNet(envs[1]!.ipv6Subnet!).replace("/", "-")
      }`;
      const pub = await wgPubkey(keyFile(1));
      assert.equal(
        (await ctl(["get", key, "--print-value-only"])).trim(),
        `{"PublicIP":"${topo.nodes[1]!.ip}","PublicIPv6":"fd77::12","BackendType":"wireguard",` +
          `"BackendData":{"PublicKey":"${pub}","Port":51820},"BackendV6Data":{"PublicKey":"${pub}","Port":51821}}`,
      );
      const v6 = await wgDump(agents[0]!, "flannel-wg-v6");
      assert.equal(v6.listenPort, 51821);
      assert.deepEqual(
        v6.peers.map((p) => [p.publicKey, p.endpoint, p.allowedIPs]),
        [[pub, "[fd77::12]:51821", formatNet(envs[1]!.ipv6Subnet!)]],
      );
      const v4 = await wgDump(agents[0]!, "flannel-wg");
      assert.deepEqual(
        v4.peers.map((p) => [p.publicKey, p.endpoint, p.allowedIPs]),
        [[pub, `${topo.nodes[1]!.ip}:51820`, formatNet(envs[1]!.subnet!)]],
      );
    } finally {
      await Promise.all(agents.map((a) => a.stop()));
      for (const n of topo.nodes) await stopNetnsProcesses(n.netns, "wireguard-go");
      await Deno.remove(dir, { recursive: true });
    }
  },
});
