/**
 * End to end, vxlan: 3 nodes in namespaces on an underlay bridge, a real etcd in the underlay namespace,
 * real `weft agent` processes started through main.ts (the binary's entry point) inside the nodes. Each
 * node gets a bridge holding its subnet's first address, standing in for pods.
 *
 * One topology, ordered steps: readiness, the fixed lease's subnet.env, connectivity, pruning, metrics,
 * nftables and subnet.env drift, restarts under ping, kernel drift, own-lease loss, etcd outage, and
 * nodes that vanish (while the agent runs, and while it is down).
 */
import assert from "node:assert/strict";
import { Netlink, nftRun, withNetns } from "../ffi/mod.ts";
import { parsePrometheusText } from "../src/cli/status.ts";
import { formatIP, formatNet } from "../src/net/ip.ts";
import { readSubnetEnv, type SubnetEnv } from "../src/config/subnet_env.ts";
import {
  addPodBridge,
  agentHttp,
  type AgentProcess,
  metric,
  pingMatrix,
  pingWhile,
  startAgent,
  waitFor,
  waitReady,
  waitSubnetEnv,
} from "./helpers/agent.ts";
import { etcdctl, startEtcd } from "./helpers/etcd.ts";
import { createTopology, ROOT } from "./helpers/topology.ts";

const PREFIX = "/coreos.com/network";
const RESYNC_S = 2;
/**
 * How long the test waits for a repair the next resync makes: a deadline for a failure, not a budget (a
 * loaded machine stretches every pass); the figures printed say how long it took.
 */
const REPAIR_DEADLINE_MS = 30_000;
// SubnetMax keeps the agents' own leases clear of 10.244.200.0/24, which the outage step writes by hand.
// EnableNFTables: the masquerade/forward rules in weft's nftables table (the iptables mode, flannel's
// default, is tests/host_firewall_test.ts's).
const CONFIG = JSON.stringify({
  Network: "10.244.0.0/16",
  EnableNFTables: true,
  SubnetMax: "10.244.150.0",
  Backend: { Type: "vxlan" },
});
/** node0's fixed lease: a reservation (no TTL) for its public IP. */
const FIXED_KEY = `${PREFIX}/subnets/10.244.7.0-24`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function keyOf(env: SubnetEnv): string {
  return `${PREFIX}/subnets/${formatNet(env.subnet!).replace("/", "-")}`;
}

/** Polls the node's kernel (through netlink, in process) until `cond` holds; returns the ms it took. */
async function kernelUntil(netns: string, what: string, ms: number, cond: (nl: Netlink) => boolean) {
  using nl = Netlink.open({ netns });
  const t0 = Date.now();
  await waitFor(what, ms, () => cond(nl), 25);
  return Date.now() - t0;
}

function peerEntries(nl: Netlink, env: SubnetEnv, publicIP: string) {
  const vx = nl.linkGet("flannel.1");
  const dst = formatNet(env.subnet!);
  return {
    route: nl.routeList({ protocol: 87 }).some((r) => r.dst === dst),
    neigh: !!vx && nl.neighList({ dev: vx.index }).some((n) => n.ip === formatIP(env.subnet!.ip)),
    fdb: !!vx && nl.fdbList({ dev: vx.index }).some((f) => f.dst === publicIP),
  };
}

Deno.test({
  name: "weft agent (vxlan, 3 nodes): connects, restarts without loss, repairs drift, prunes, rides out etcd",
  ignore: !ROOT,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    await using topo = await createTopology({ nodes: 3 });
    const dir = await Deno.makeTempDir({ prefix: "weft-agent-e2e-" });
    await using etcd = await startEtcd({ netns: topo.underlay, host: topo.underlayIP });
    const ctl = (args: string[]) => etcdctl(etcd.endpoint, args, { netns: topo.underlay });
    const [n0, n1, n2] = topo.nodes as [typeof topo.nodes[0], typeof topo.nodes[0], typeof topo.nodes[0]];
    const agents: AgentProcess[] = [];
    const args = [`--resync-interval=${RESYNC_S}`, `--iptables-resync=${RESYNC_S}`, "--ip-masq"];
    try {
      // Before any agent: a stale weft route (protocol 87) in the cluster network that no lease wants,
      // a foreign nftables table weft must not touch, and node0's fixed lease.
      {
        using nl = Netlink.open({ netns: n0.netns });
        nl.routeReplace({ dst: "10.244.250.0/24", type: "blackhole" });
      }
      withNetns(
        n0.netns,
        () =>
          nftRun(
            "table ip other {\n chain c {\n  type filter hook forward priority 0; policy accept;\n }\n}\n",
          ),
      );
      const foreignTable = withNetns(n0.netns, () => nftRun("list table ip other"));
      await ctl([
        "put",
        FIXED_KEY,
        JSON.stringify({ PublicIP: n0.ip, PublicIPv6: null, BackendType: "vxlan", BackendData: null }),
      ]);

      const a0 = startAgent(n0, { etcd: etcd.endpoint, dir, args });
      agents.push(a0);

      await t.step(
        "/readyz is 503 before the first apply and 200 after; /healthz is 200 throughout",
        async () => {
          // No network config in etcd yet: the agent is up but can hold no lease.
          const early = await waitFor(
            "health endpoint",
            20_000,
            () => agentHttp(a0, "/readyz").catch(() => undefined),
          );
          assert.equal(early[0], 503);
          assert.match(early[1], /no lease yet/);
          assert.equal((await agentHttp(a0, "/healthz"))[0], 200);
          assert.equal(await metric(a0, "weft_ready"), 0);
          await ctl(["put", `${PREFIX}/config`, CONFIG]);
          const ms = await waitReady(a0);
          console.log(`  config written → /readyz 200 in ${ms} ms`);
          assert.equal((await agentHttp(a0, "/healthz"))[0], 200);
        },
      );

      await t.step("subnet.env for the fixed lease is flannel's, byte for byte, mode 0644", () => {
        assert.equal(
          Deno.readTextFileSync(a0.subnetFile),
          "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.7.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
        );
        assert.equal(Deno.statSync(a0.subnetFile).mode! & 0o777, 0o644);
      });

      const a1 = startAgent(n1, { etcd: etcd.endpoint, dir, args });
      const a2 = startAgent(n2, { etcd: etcd.endpoint, dir, args });
      agents.push(a1, a2);
      const envs = [readSubnetEnv(a0.subnetFile), await waitSubnetEnv(a1), await waitSubnetEnv(a2)];
      topo.nodes.forEach((n, i) => addPodBridge(n.netns, envs[i]!));
      await Promise.all([waitReady(a1), waitReady(a2)]);

      await t.step("every node reaches every other node's subnet across VXLAN", async () => {
        const failed = await pingMatrix(topo, envs, 15_000);
        assert.deepEqual(failed, []);
        // The reservation now carries node0's VTEP MAC, as flanneld would publish it; still no TTL.
        const fixed = JSON.parse(await ctl(["get", FIXED_KEY, "--print-value-only"]));
        using nl = Netlink.open({ netns: n0.netns });
        assert.equal(fixed.BackendData.VtepMAC, nl.linkGet("flannel.1")!.mac);
        assert.match(await ctl(["get", FIXED_KEY, "-w", "fields"]), /"Lease" : 0\b/);
      });

      await t.step("the stale protocol-87 route present before start was pruned", async () => {
        await kernelUntil(
          n0.netns,
          "prune",
          5000,
          (nl) => !nl.routeList({ protocol: 87 }).some((r) => r.dst === "10.244.250.0/24"),
        );
        assert.ok((await metric(a0, "weft_pruned_total")) >= 1);
      });

      await t.step("/metrics parses as Prometheus text and reports the node", async () => {
        const [code, body] = await agentHttp(a0, "/metrics");
        assert.equal(code, 200);
        const samples = parsePrometheusText(body);
        const v = (name: string) => samples.find((s) => s.name === name)?.value;
        assert.equal(v("weft_peers_programmed"), 2);
        assert.equal(v("weft_leases_known"), 2);
        assert.deepEqual(samples.find((s) => s.name === "weft_store_up")?.labels, { store: "etcd" });
        assert.equal(v("weft_store_up"), 1);
        assert.equal(v("weft_etcd_up"), 1, "the deprecated alias");
        assert.equal(v("weft_ready"), 1);
        assert.ok(v("weft_reconcile_passes_total")! >= 1);
        const info = samples.find((s) => s.name === "weft_lease_info");
        assert.deepEqual(info?.labels, { subnet: "10.244.7.0/24", public_ip: n0.ip, backend: "vxlan" });
        assert.match(body, /# TYPE weft_drift_repaired_total counter/);
        // Memory gauges are the process's own: RSS agrees with the kernel's view of the agent's pid.
        const kernelRss = Number(/VmRSS:\s+(\d+)/.exec(Deno.readTextFileSync(`/proc/${a0.pid}/status`))![1]) *
          1024;
        const rss = v("process_resident_memory_bytes")!;
        assert.ok(Math.abs(rss - kernelRss) < kernelRss * 0.25, `RSS ${rss} vs /proc ${kernelRss}`);
        assert.ok(
          v("weft_js_heap_used_bytes")! > 0 &&
            v("weft_js_heap_used_bytes")! <= v("weft_js_heap_total_bytes")!,
        );
      });

      await t.step(
        "weft's nftables table is installed, restored after deletion, others untouched",
        async () => {
          const listed = withNetns(n0.netns, () => nftRun("list table ip weft"));
          assert.match(
            listed,
            /ip saddr 10\.244\.0\.0\/16 ip daddr != 224\.0\.0\.0\/4 masquerade fully-random/,
          );
          assert.match(listed, /ip saddr 10\.244\.7\.0\/24 ip daddr 10\.244\.0\.0\/16 return/);
          const before = await metric(a0, "weft_rules_repaired_total");
          withNetns(n0.netns, () => nftRun("delete table ip weft"));
          const t0 = Date.now();
          await waitFor("table restored", REPAIR_DEADLINE_MS, () => {
            try {
              return withNetns(n0.netns, () => nftRun("list table ip weft")) === listed;
            } catch {
              return false;
            }
          }, 25);
          console.log(`  nftables table restored in ${Date.now() - t0} ms`);
          assert.equal(await metric(a0, "weft_rules_repaired_total"), before + 1);
          assert.equal(withNetns(n0.netns, () => nftRun("list table ip other")), foreignTable);
        },
      );

      await t.step("a deleted subnet.env is rewritten by the next resync", async () => {
        const content = Deno.readTextFileSync(a1.subnetFile);
        Deno.removeSync(a1.subnetFile);
        const t0 = Date.now();
        await waitFor("subnet.env rewritten", REPAIR_DEADLINE_MS, () => {
          try {
            return Deno.readTextFileSync(a1.subnetFile) === content;
          } catch {
            return false;
          }
        }, 25);
        console.log(`  subnet.env rewritten in ${Date.now() - t0} ms`);
        assert.equal(await metric(a1, "weft_subnet_env_rewritten_total"), 1);
      });

      await t.step(
        "SIGTERM, then SIGKILL at random moments: ping -i 0.01 both ways loses nothing",
        async () => {
          using nl1 = Netlink.open({ netns: n1.netns });
          const dev = nl1.linkGet("flannel.1")!;
          const ping = await pingWhile(topo, [[0, 1], [1, 0]], envs, async () => {
            await a1.stop("SIGTERM");
            a1.start();
            await waitReady(a1);
            await a1.stop("SIGKILL");
            a1.start();
            await waitReady(a1);
            // SIGKILL at arbitrary points of startup (etcd client, lease, device, first apply).
            for (const ms of [50, 250, 450, 650, 900]) {
              a1.start();
              await sleep(ms + Math.floor(Math.random() * 100));
              await a1.stop("SIGKILL");
            }
            a1.start();
            await waitReady(a1);
          });
          for (const p of ping) {
            console.log(
              `  ping ${p.from}→${p.to} across 7 restarts: ${p.received}/${p.sent} received, ${p.lost} lost`,
            );
            assert.equal(p.lost, 0, `${p.lost} lost (${p.from}→${p.to})`);
          }
          const after = nl1.linkGet("flannel.1")!;
          assert.equal(after.index, dev.index, "flannel.1 was kept, not recreated");
          assert.equal(after.mac, dev.mac, "the VTEP MAC is stable");
          assert.deepEqual(readSubnetEnv(a1.subnetFile), envs[1], "same lease after the restarts");
        },
      );

      await t.step(
        "a deleted route, neighbour entry and FDB entry are back by the next resync",
        async () => {
          // Idle, the agent trusts the kernel's silence instead of reading it every pass: drift must still be
          // seen at once, through the kernel's own notifications.
          const idle = Date.now() + 30_000;
          while ((await metric(a0, "weft_reconcile_reads_skipped_total")) < 1) {
            if (Date.now() > idle) assert.fail("an idle agent never trusted its last read of the kernel");
            await new Promise((r) => setTimeout(r, 200));
          }
          const before = await metric(a0, "weft_drift_repaired_total");
          const mac1 =
            JSON.parse(await ctl(["get", keyOf(envs[1]!), "--print-value-only"])).BackendData.VtepMAC;
          using nl = Netlink.open({ netns: n0.netns });
          // Deleted in one synchronous go, then checked at once: three `ip` processes on a loaded machine
          // could take longer than a resync period, and the agent would repair in between.
          const dev = nl.linkIndex("flannel.1");
          nl.routeDelete({ dst: formatNet(envs[1]!.subnet!), protocol: 87 });
          nl.neighDelete({ dev, ip: formatIP(envs[2]!.subnet!.ip) });
          nl.fdbDelete({ dev, mac: mac1, dst: n1.ip });
          assert.ok(!peerEntries(nl, envs[1]!, n1.ip).route && !peerEntries(nl, envs[2]!, n2.ip).neigh);
          const ms = await kernelUntil(n0.netns, "repair", REPAIR_DEADLINE_MS, (nl) => {
            const p1 = peerEntries(nl, envs[1]!, n1.ip), p2 = peerEntries(nl, envs[2]!, n2.ip);
            return p1.route && p1.fdb && p2.neigh;
          });
          console.log(
            `  route + neighbour + FDB entry repaired ${ms} ms after deletion (resync ${RESYNC_S} s)`,
          );
          assert.deepEqual(await pingMatrix(topo, envs, 3000), []);
          const after = await metric(a0, "weft_drift_repaired_total");
          assert.ok(after >= before + 3, `weft_drift_repaired_total ${before} → ${after}`);
        },
      );

      await t.step("a deleted flannel.1 is recreated with the same MAC and every peer replayed", async () => {
        using nl = Netlink.open({ netns: n0.netns });
        const mac = nl.linkGet("flannel.1")!.mac;
        const before = await metric(a0, "weft_drift_repaired_total");
        await topo.exec(n0.netns, ["ip", "link", "del", "flannel.1"]);
        const ms = await kernelUntil(n0.netns, "device and entries", REPAIR_DEADLINE_MS, (nl) => {
          const p1 = peerEntries(nl, envs[1]!, n1.ip), p2 = peerEntries(nl, envs[2]!, n2.ip);
          return p1.route && p1.neigh && p1.fdb && p2.route && p2.neigh && p2.fdb;
        });
        console.log(`  flannel.1 recreated and 2 peers replayed ${ms} ms after deletion`);
        assert.equal(nl.linkGet("flannel.1")!.mac, mac);
        assert.deepEqual(await pingMatrix(topo, envs, 3000), []);
        assert.equal(await metric(a0, "weft_device_recreated_total"), 1);
        assert.ok((await metric(a0, "weft_drift_repaired_total")) >= before + 7, "device + 6 entries");
      });

      await t.step(
        "an operator deletes a node's lease: it is re-acquired, same subnet, traffic back",
        async () => {
          await ctl(["del", keyOf(envs[1]!)]);
          await waitFor(
            "lease re-acquired",
            10_000,
            async () => (await ctl(["get", keyOf(envs[1]!)])).trim() !== "",
          );
          assert.equal(await metric(a1, "weft_lease_reacquired_total"), 1);
          assert.deepEqual(await pingMatrix(topo, envs, 10_000), []);
        },
      );

      await t.step(
        "etcd stopped for 20 s: pings keep flowing, the agent notices, then recovers",
        async () => {
          let downSeen = false, readyDuring = true;
          const logBefore = Deno.readTextFileSync(a0.logFile).length;
          const ping = await pingWhile(topo, [[0, 2], [2, 0]], envs, async () => {
            await etcd.stop();
            const end = Date.now() + 20_000;
            while (Date.now() < end) {
              if ((await metric(a0, "weft_store_up")) === 0) downSeen = true;
              if ((await agentHttp(a0, "/readyz"))[0] !== 200) readyDuring = false;
              await sleep(1000);
            }
            await etcd.restart();
          });
          for (const p of ping) {
            console.log(
              `  ping ${p.from}→${p.to} during a 20 s etcd outage: ${p.received}/${p.sent}, ${p.lost} lost`,
            );
            assert.equal(p.lost, 0);
          }
          assert.ok(downSeen, "weft_store_up went to 0 during the outage");
          assert.ok(readyDuring, "/readyz stayed 200: the datapath is fine without etcd");
          await waitFor("etcd_up again", 20_000, async () => (await metric(a0, "weft_store_up")) === 1);
          // The outage in the log: in plain words, once (a retry every ≤ 5 s is not a line each), then over.
          const log = Deno.readTextFileSync(a0.logFile).slice(logBefore);
          assert.doesNotMatch(log, /circuit breaker/i, "etcd3's words are translated");
          const watchLines = log.split("\n").filter((l) => /WARNING weft\.subnet: lease watch/.test(l));
          assert.ok(watchLines.length >= 1 && watchLines.length <= 2, watchLines.join("\n"));
          assert.match(
            watchLines.join("\n"),
            /etcd is unreachable at http:\/\/[\d.:]+: .*; check that etcd runs/,
          );
          assert.match(log, /lease watch: works again after \d+ failed attempts/);
          // Recovered for real: a lease written after etcd came back reaches the kernel.
          const t0 = Date.now();
          await ctl([
            "put",
            `${PREFIX}/subnets/10.244.200.0-24`,
            JSON.stringify({
              PublicIP: "192.168.77.200",
              PublicIPv6: null,
              BackendType: "vxlan",
              BackendData: { VNI: 1, VtepMAC: "02:00:00:00:c8:00" },
            }),
          ]);
          const has = (nl: Netlink) =>
            nl.routeList({ protocol: 87 }).some((r) => r.dst === "10.244.200.0/24");
          for (const n of [n0, n1, n2]) await kernelUntil(n.netns, "new lease programmed", 30_000, has);
          console.log(`  after the outage, a new lease reached all 3 kernels in ${Date.now() - t0} ms`);
          const t1 = Date.now();
          await ctl(["del", `${PREFIX}/subnets/10.244.200.0-24`]);
          for (const n of [n0, n1, n2]) {
            await kernelUntil(n.netns, "deleted lease removed", 30_000, (nl) => !has(nl));
          }
          console.log(`  and its deletion reached all 3 in ${Date.now() - t1} ms`);
        },
      );

      await t.step(
        "a node whose lease is deleted disappears from running peers and from a restarting one",
        async () => {
          // node2 goes away for good; node0's agent is down meanwhile (flannel #2554: never pruned there).
          await a2.stop("SIGTERM");
          await a0.stop("SIGTERM");
          await ctl(["del", keyOf(envs[2]!)]);
          const gone = (nl: Netlink) => {
            const p = peerEntries(nl, envs[2]!, n2.ip);
            return !p.route && !p.neigh && !p.fdb;
          };
          const ms1 = await kernelUntil(n1.netns, "node2 removed on node1", 10_000, gone);
          console.log(`  running peer removed node2's route, neighbour and FDB entry in ${ms1} ms`);
          {
            using nl = Netlink.open({ netns: n0.netns });
            assert.ok(!gone(nl), "node0 (agent down) still has node2's entries");
          }
          a0.start();
          await waitReady(a0);
          const ms0 = await kernelUntil(n0.netns, "node2 pruned on node0", REPAIR_DEADLINE_MS, gone);
          console.log(`  restarted agent pruned the vanished node's entries (${ms0} ms after ready)`);
          assert.deepEqual(await pingMatrix({ ...topo, nodes: [n0, n1] }, envs.slice(0, 2), 5000), []);
        },
      );
    } finally {
      await Promise.all(agents.map((a) => a.stop("SIGKILL")));
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
