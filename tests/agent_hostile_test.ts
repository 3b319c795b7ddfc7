/**
 * End to end, hostile and broken input (issue 12): two nodes in namespaces whose underlay network lies
 * inside the cluster Network (a misconfiguration flannel tolerates, and the hardest case for lease
 * validation), a real etcd, real `weft agent` processes.
 *
 * - Every hostile key of the issue is put while the nodes ping each other: the ping never stops, the
 *   underlay's connected route stays, nothing of a rejected lease reaches either kernel, and each key is
 *   logged once on each node with the rule it breaks; `weft leases` and `weft status` show them.
 * - A lease for a destination that holds a foreign (static) route: refused on that node, not forced.
 * - The own key overwritten by someone else: written back by the next resync, counted.
 * - 1000 idle connections to the metrics port of an agent limited to 512 descriptors: the agent keeps
 *   running and still programs new leases.
 */
import assert from "node:assert/strict";
import { Netlink } from "../ffi/mod.ts";
import { parsePrometheusText } from "../src/cli/status.ts";
import type { SubnetEnv } from "../src/config/subnet_env.ts";
import { runIn } from "../src/lab/lab.ts";
import { formatIP, formatNet } from "../src/net/ip.ts";
import {
  addPodBridge,
  agentHttp,
  type AgentProcess,
  alive,
  holdConnections,
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
const MAIN = new URL("../main.ts", import.meta.url).pathname;
const RESYNC_S = 2;
/**
 * How long the test waits for a repair the next resync makes: a deadline for a failure, not a budget (a
 * loaded machine stretches every pass); the figures printed say how long it took.
 */
const REPAIR_DEADLINE_MS = 30_000;
/** The nodes' underlay lies inside the Network; SubnetMax keeps the agents' own leases below it. */
const UNDERLAY = "10.244.250.0/24";
const CONFIG = JSON.stringify({
  Network: "10.244.0.0/16",
  SubnetMax: "10.244.150.0",
  Backend: { Type: "vxlan" },
});
/** A network both nodes are connected to besides the underlay (a second NIC). */
const SECOND_NIC = "10.244.240.1/24";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Waits until `a` completed a full reconcile pass that began after this call (two passes counted: the
 * one under way may have begun before) — where a fixed sleep of one resync period would not do on a
 * loaded machine, whose passes take longer.
 */
async function fullPassAfter(a: AgentProcess): Promise<void> {
  const passes = await metric(a, "weft_reconcile_passes_total");
  await waitFor(
    `${a.node.netns}: a full pass`,
    30_000,
    async () => (await metric(a, "weft_reconcile_passes_total")) >= passes + 2,
  );
}

function value(publicIP: string, mac: string): string {
  return JSON.stringify({
    PublicIP: publicIP,
    PublicIPv6: null,
    BackendType: "vxlan",
    BackendData: { VNI: 1, VtepMAC: mac },
  });
}

function keyOf(env: SubnetEnv): string {
  return formatNet(env.subnet!).replace("/", "-");
}

/** The hostile keys of the issue (and a few more), each with the value put and the rule it breaks. */
function hostileKeys(envs: SubnetEnv[], ips: string[], mac1: string): [string, string, string][] {
  const s0 = formatIP(envs[0]!.subnet!.ip), s1 = formatIP(envs[1]!.subnet!.ip);
  // Each value its own VTEP MAC, so that no key breaks the MAC rule by accident.
  let n = 0;
  const v = (ip = "10.244.250.99", mac = `02:99:00:00:00:${(++n).toString(16).padStart(2, "0")}`) =>
    value(ip, mac);
  return [
    // The underlay network itself, with a peer's PublicIP: it holds both nodes' PublicIPs.
    ["10.244.250.0-24", v(ips[1]), "subnet_conflict"],
    ["10.244.240.0-24", v(), "connected_network"], // a network both nodes are connected to
    ["192.168.91.0-24", v(), "subnet_outside_network"],
    ["10.244.0.0-16", v(), "subnet_wrong_length"], // the whole Network
    [`${s0}-26`, v(), "subnet_wrong_length"], // a /26 inside node0's subnet
    ["10.244.200.0-25", v(), "subnet_wrong_length"], // a wrong SubnetLen
    [`${ips[1]}-32`, v(), "subnet_wrong_length"], // node1's underlay /32
    [`${s1}-25`, v(), "subnet_wrong_length"], // a /25 at node1's subnet address (its neighbour entry)
    ["10.244.201.0-24", v("0.0.0.0"), "public_ip_unspecified"],
    ["10.244.202.0-24", v("127.0.0.1"), "public_ip_loopback"],
    ["10.244.203.0-24", v("224.0.0.1"), "public_ip_multicast"],
    ["10.244.204.0-24", v("255.255.255.255"), "public_ip_broadcast"],
    ["10.244.209.0-24", v("10.244.250.255"), "public_ip_broadcast"], // the underlay's broadcast address
    ["garbage", v(), "key_unparseable"],
    ["10.244.205.0-024", v(), "key_unparseable"], // a second spelling of a subnet key
    ["10.244.206.0-24", "not json", "value_unparseable"],
    [`${s1}-24&fd00:10:244:99::-64`, v(), "subnet_conflict"], // a second key claiming node1's subnet
    ["10.244.207.0-24", v("10.244.250.98", mac1), "vtep_mac_conflict"], // node1's VTEP MAC, another IP
    ["10.244.208.0-24", v("10.244.250.97", "ff:ff:ff:ff:ff:ff"), "vtep_mac_invalid"],
  ];
}

/** The node's kernel state that leases drive: weft's routes, and flannel.1's permanent entries. */
function overlayState(netns: string) {
  using nl = Netlink.open({ netns });
  const vx = nl.linkGet("flannel.1")!;
  return {
    routes: nl.routeList({ protocol: 87 }).map((r) => r.dst).sort(),
    neighs: nl.neighList({ dev: vx.index }).filter((n) => n.state & 0x80).map((n) => `${n.ip} ${n.mac}`)
      .sort(),
    fdbs: nl.fdbList({ dev: vx.index }).filter((f) => f.dst && f.state & 0x80).map((f) => `${f.mac} ${f.dst}`)
      .sort(),
    underlay: nl.routeList().filter((r) => r.dst === UNDERLAY).map((r) => `${r.protocol} ${r.index}`),
  };
}

function logLines(a: AgentProcess, pattern: string): string[] {
  return Deno.readTextFileSync(a.logFile).split("\n").filter((l) => l.includes(pattern));
}

Deno.test({
  name: "weft agent refuses hostile leases without a lost ping, defends its own key and its metrics port",
  ignore: !ROOT,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    await using topo = await createTopology({ nodes: 2, underlay: UNDERLAY });
    const dir = await Deno.makeTempDir({ prefix: "weft-hostile-" });
    await using etcd = await startEtcd({ netns: topo.underlay, host: topo.underlayIP });
    const ctl = (args: string[]) => etcdctl(etcd.endpoint, args, { netns: topo.underlay });
    const put = (key: string, v: string) => ctl(["put", `${PREFIX}/subnets/${key}`, v]);
    const [n0, n1] = topo.nodes as [typeof topo.nodes[0], typeof topo.nodes[0]];
    const agents: AgentProcess[] = [];
    const args = [`--resync-interval=${RESYNC_S}`];
    try {
      for (const n of [n0, n1]) {
        await topo.exec(n, ["ip", "link", "add", "nic2", "type", "veth", "peer", "name", "nic2p"]);
        await topo.exec(n, ["ip", "link", "set", "nic2p", "up"]);
        await topo.exec(n, ["ip", "link", "set", "nic2", "up"]);
        await topo.exec(n, ["ip", "addr", "add", SECOND_NIC, "dev", "nic2"]);
      }
      await ctl(["put", `${PREFIX}/config`, CONFIG]);
      agents.push(
        startAgent(n0, { etcd: etcd.endpoint, dir, args }),
        startAgent(n1, { etcd: etcd.endpoint, dir, args }),
      );
      const [a0, a1] = agents as [AgentProcess, AgentProcess];
      const envs = [await waitSubnetEnv(a0), await waitSubnetEnv(a1)];
      topo.nodes.forEach((n, i) => addPodBridge(n.netns, envs[i]!));
      await Promise.all([waitReady(a0), waitReady(a1)]);
      assert.deepEqual(await pingMatrix(topo, envs, 15_000), []);
      const ips = [n0.ip, n1.ip];
      const mac1 = JSON.parse(
        await ctl(["get", `${PREFIX}/subnets/${keyOf(envs[1]!)}`, "--print-value-only"]),
      )
        .BackendData.VtepMAC as string;
      const clean = [overlayState(n0.netns), overlayState(n1.netns)];
      assert.deepEqual(clean[0]!.routes, [formatNet(envs[1]!.subnet!)]);
      assert.equal(clean[0]!.underlay.length, 1, "node0 has its connected underlay route");

      await t.step(
        "each hostile key, put while the nodes ping each other, is refused and logged with its rule",
        async () => {
          const hostile = hostileKeys(envs, ips, mac1);
          const ping = await pingWhile(topo, [[0, 1], [1, 0]], envs, async () => {
            for (const [key, v] of hostile) {
              await put(key, v);
              await sleep(100);
            }
            // Every hostile key judged by both agents (node1 skips the one carrying its own PublicIP, see
            // below), then a full pass that started after: nothing of them may be in a kernel then.
            for (const [i, a] of [a0, a1].entries()) {
              const want = hostile.filter(([key]) => i === 0 || key !== "10.244.250.0-24").length;
              await waitFor(`${a.node.netns} judged every hostile key`, 30_000, async () => {
                const [, body] = await agentHttp(a, "/metrics");
                return parsePrometheusText(body).filter((s) => s.name === "weft_lease_rejected").length ===
                  want;
              });
              await fullPassAfter(a);
            }
            // Nothing of them in either kernel: only the peer's own entries, the underlay route untouched.
            for (const [i, n] of [n0, n1].entries()) {
              assert.deepEqual(overlayState(n.netns), clean[i], `node${i}'s kernel`);
            }
          });
          for (const p of ping) {
            console.log(
              `  ping ${p.from}→${p.to} while ${hostile.length} hostile keys were put: ${p.received}/${p.sent}, ${p.lost} lost`,
            );
            assert.equal(p.lost, 0, `${p.lost} lost (${p.from}→${p.to})`);
          }
          for (const [i, a] of [a0, a1].entries()) {
            // The underlay key names node1's PublicIP: node1's watch skips leases carrying its own
            // PublicIP as old leases of its own (never programmed, not reported); node0 refuses it.
            const seen = hostile.filter(([key]) => i === 0 || key !== "10.244.250.0-24");
            for (const [key, , rule] of seen) {
              const lines = logLines(
                a,
                `lease ${JSON.stringify(key)} rejected, nothing programmed for it: ${rule}:`,
              );
              assert.equal(
                lines.length,
                1,
                `${a.node.netns}: ${key} logged ${lines.length} times with ${rule}`,
              );
            }
            // /metrics: counted per rule, listed per key.
            const [, body] = await agentHttp(a, "/metrics");
            const samples = parsePrometheusText(body);
            const listed = samples.filter((s) => s.name === "weft_lease_rejected").map((s) =>
              `${s.labels.key} ${s.labels.reason}`
            );
            assert.deepEqual(listed.sort(), seen.map(([k, , r]) => `${k} ${r}`).sort());
            const total = samples.filter((s) => s.name === "weft_leases_rejected_total").reduce(
              (n, s) => n + s.value,
              0,
            );
            assert.equal(total, seen.length);
            assert.equal(await metric(a, "weft_peers_programmed"), 1);
          }
          // weft status (on the node) lists what its agent refuses.
          const st = await runIn(n0.netns, [
            Deno.execPath(),
            "run",
            "-A",
            "--no-check",
            MAIN,
            "status",
            `--healthz-port=${a0.healthPort}`,
          ]);
          assert.match(st.stdout, new RegExp(`rejected\\s+${hostile.length} leases now`));
          assert.match(st.stdout, /"10\.244\.0\.0-16" subnet_wrong_length/);
          assert.match(st.stdout, /"10\.244\.240\.0-24" connected_network/);
          // weft leases (anywhere) shows what every agent refuses; the connected network is a node's own matter.
          const ls = await runIn(topo.underlay, [
            Deno.execPath(),
            "run",
            "-A",
            "--no-check",
            MAIN,
            "leases",
            `--etcd-endpoints=${etcd.endpoint}`,
          ]);
          assert.equal(ls.code, 0, ls.stderr);
          const row = (start: string) => ls.stdout.split("\n").find((l) => l.startsWith(start)) ?? "";
          assert.match(row("10.244.0.0/16"), /rejected: subnet_wrong_length$/);
          assert.match(row('"garbage"'), /rejected: key_unparseable$/);
          assert.match(row("10.244.240.0/24"), /\sok$/);
          assert.match(row(formatNet(envs[1]!.subnet!) + " "), /\sok$/);

          // Deleted again: nothing to undo, the underlay route never moved, no rejection is listed.
          for (const [key] of hostile) await ctl(["del", `${PREFIX}/subnets/${key}`]);
          await waitFor("rejections cleared", 10_000, async () => {
            const [, body] = await agentHttp(a0, "/metrics");
            return !parsePrometheusText(body).some((s) => s.name === "weft_lease_rejected");
          });
          for (const [i, n] of [n0, n1].entries()) assert.deepEqual(overlayState(n.netns), clean[i]);
          assert.deepEqual(await pingMatrix(topo, envs, 5000), []);
        },
      );

      await t.step(
        "a lease whose destination holds a static route on node0 is refused there, programmed on node1",
        async () => {
          await topo.exec(n0, [
            "ip",
            "route",
            "add",
            "10.244.210.0/24",
            "via",
            topo.underlayIP,
            "proto",
            "static",
          ]);
          await put("10.244.210.0-24", value("10.244.250.96", "02:96:00:00:00:01"));
          using nl1 = Netlink.open({ netns: n1.netns });
          await waitFor(
            "programmed on node1",
            10_000,
            () => nl1.routeList({ protocol: 87 }).some((r) => r.dst === "10.244.210.0/24"),
          );
          await waitFor(
            "refusal counted",
            10_000,
            async () => (await metric(a0, "weft_routes_refused_total")) === 1,
          );
          await fullPassAfter(a0); // retries and a full pass: still refused, still counted once
          using nl0 = Netlink.open({ netns: n0.netns });
          const at = nl0.routeList().filter((r) => r.dst === "10.244.210.0/24");
          assert.deepEqual(
            at.map((r) => [r.protocol, r.gateway]),
            [[4, topo.underlayIP]],
            "the static route stays",
          );
          assert.equal(await metric(a0, "weft_routes_refused_total"), 1);
          assert.equal(
            logLines(a0, "route 10.244.210.0/24 refused").filter((l) => l.includes("ERROR")).length,
            1,
          );
          await ctl(["del", `${PREFIX}/subnets/10.244.210.0-24`]);
          await waitFor(
            "gone on node1",
            10_000,
            () => !nl1.routeList({ protocol: 87 }).some((r) => r.dst === "10.244.210.0/24"),
          );
          await fullPassAfter(a0);
          assert.deepEqual(
            nl0.routeList().filter((r) => r.dst === "10.244.210.0/24").map((r) => r.protocol),
            [4],
          );
        },
      );

      await t.step(
        "node1's key overwritten by someone else is written back by the next resync, and counted",
        async () => {
          const key = `${PREFIX}/subnets/${keyOf(envs[1]!)}`;
          const ours = (await ctl(["get", key, "--print-value-only"])).trim();
          for (const [i, hijack] of [value("10.244.250.66", "02:66:00:00:00:01"), "garbage"].entries()) {
            const t0 = Date.now();
            await ctl(["put", key, hijack]);
            await waitFor(
              "written back",
              REPAIR_DEADLINE_MS,
              async () => (await ctl(["get", key, "--print-value-only"])).trim() === ours,
              20,
            );
            console.log(
              `  own key overwritten with ${i ? "garbage" : "another PublicIP"}: written back in ${
                Date.now() - t0
              } ms`,
            );
            assert.equal(await metric(a1, "weft_lease_reasserted_total"), i + 1);
          }
          assert.equal(await metric(a1, "weft_lease_reacquired_total"), 0, "the same lease, not a new one");
          assert.match(
            await ctl(["get", key, "-w", "fields"]),
            /"Lease" : [1-9]/,
            "attached to an etcd lease again",
          );
          assert.ok(logLines(a1, "was overwritten").length >= 2);
          assert.deepEqual(await pingMatrix(topo, envs, 10_000), []);
        },
      );

      await t.step(
        "1000 idle connections to the metrics port of an agent limited to 512 fds: it runs on and programs",
        async () => {
          await a0.stop("SIGTERM");
          const limited = startAgent(n0, { etcd: etcd.endpoint, dir, args, fdLimit: 512 });
          agents[0] = limited;
          await waitReady(limited);
          await using held = await holdConnections(n0.netns, limited.healthPort, 1000);
          console.log(`  1000 connections: ${held.opened} opened, ${held.refused} refused by the kernel`);
          // The agent has taken the flood in: all but its 32 slots' worth closed (evicted) by it.
          await waitFor(
            "the idle connections evicted",
            30_000,
            async () => (await held.closedByServer()) >= held.opened - 32,
          );
          assert.ok(alive(limited.pid), "the agent is running");
          const t0 = Date.now();
          await put("10.244.211.0-24", value("10.244.250.95", "02:95:00:00:00:01"));
          using nl0 = Netlink.open({ netns: n0.netns });
          await waitFor(
            "new lease programmed",
            10_000,
            () => nl0.routeList({ protocol: 87 }).some((r) => r.dst === "10.244.211.0/24"),
            25,
          );
          console.log(`  while they were held, a new lease reached node0's kernel in ${Date.now() - t0} ms`);
          // Its health endpoint answers too (evicting an idle connection), and says what it did.
          assert.equal((await agentHttp(limited, "/healthz"))[0], 200);
          const [, body] = await agentHttp(limited, "/metrics");
          const samples = parsePrometheusText(body);
          const get = (name: string, labels: Record<string, string> = {}) =>
            samples.find((s) =>
              s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v)
            )?.value ?? NaN;
          const open = get("weft_http_connections_open");
          const evicted = get("weft_http_connections_dropped_total", { reason: "evicted" });
          const closed = await held.closedByServer();
          console.log(
            `  server: ${open} open, ${evicted} evicted; the client saw ${closed} of its connections closed`,
          );
          assert.ok(open <= 32, `${open} open`);
          assert.ok(evicted >= held.opened - 32, `${evicted} evicted`);
          assert.ok(closed >= held.opened - 32, `${closed} closed`);
          assert.ok(alive(limited.pid));
          await held.release();
          await ctl(["del", `${PREFIX}/subnets/10.244.211.0-24`]);
          assert.deepEqual(await pingMatrix(topo, envs, 10_000), []);
        },
      );
    } finally {
      await Promise.all(agents.map((a) => a.stop("SIGKILL")));
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
