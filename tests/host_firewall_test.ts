/**
 * Hostile host firewalls, end to end: four nodes in namespaces, each with `FORWARD` policy DROP and a
 * catch-all REJECT appended before weft starts — nodes 0 and 1 with `EnableNFTables: false` (flannel's
 * default; node 0's rules in iptables-nft, where a previous flanneld also left its exact rules, node 1's in
 * iptables-legacy), nodes 2 and 3 with `EnableNFTables: true` (same two backends). Pods on two nodes ping
 * each other in every pair; flanneld's rules are adopted, not duplicated; at rest no rule is rewritten
 * (`nft monitor` hears nothing over ten passes); a jump deleted by hand is back within a pass. Then a
 * firewalld-like `inet` table dropping in `forward` on nodes 1 and 3: the pings stop (nothing of weft's
 * can overrule it) and the table is named by `weft_host_firewall_blocking` and `weft doctor`; once it is
 * gone, the pings come back.
 *
 * iptables runs only inside the namespaces this test made (`ip netns exec`): never in the root namespace.
 */
import assert from "node:assert/strict";
import { Netlink, withNetns } from "../ffi/mod.ts";
import { formatIP, formatNet } from "../src/net/ip.ts";
import type { SubnetEnv } from "../src/config/subnet_env.ts";
import { parsePrometheusText } from "../src/cli/status.ts";
import {
  addPodBridge,
  agentHttp,
  type AgentProcess,
  gatewayOf,
  startAgent,
  waitFor,
  waitReady,
  waitSubnetEnv,
} from "./helpers/agent.ts";
import { etcdctl, startEtcd } from "./helpers/etcd.ts";
import { createTopology, hasBinary, ROOT, type Topology, type TopologyPod } from "./helpers/topology.ts";
import { needBinaries } from "./helpers/skip.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const READY = ROOT && hasBinary("etcd") && hasBinary("ping") && hasBinary("iptables-nft") &&
  hasBinary("iptables-legacy") && hasBinary("nft");

/** flanneld v0.28.9's rules for `pods` in 10.244.0.0/16 with --ip-masq, appended behind the host's REJECT. */
function flanneldRules(pods: string): string {
  const m = `-m comment --comment "flanneld masq"`;
  const f = `-m comment --comment "flanneld forward"`;
  const c = "10.244.0.0/16";
  return `*nat
:FLANNEL-POSTRTG - [0:0]
-A POSTROUTING ${m} -j FLANNEL-POSTRTG
-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 ${m} -j RETURN
-A FLANNEL-POSTRTG -s ${pods} -d ${c} ${m} -j RETURN
-A FLANNEL-POSTRTG -s ${c} -d ${pods} ${m} -j RETURN
-A FLANNEL-POSTRTG ! -s ${c} -d ${pods} ${m} -j RETURN
-A FLANNEL-POSTRTG -s ${c} ! -d 224.0.0.0/4 ${m} -j MASQUERADE --random-fully
-A FLANNEL-POSTRTG ! -s ${c} -d ${c} ${m} -j MASQUERADE --random-fully
COMMIT
*filter
:FLANNEL-FWD - [0:0]
-A FORWARD ${f} -j FLANNEL-FWD
-A FLANNEL-FWD -s ${c} ${f} -j ACCEPT
-A FLANNEL-FWD -d ${c} ${f} -j ACCEPT
COMMIT
`;
}

const FIREWALLD = `table inet firewalld {
  chain filter_FORWARD {
    type filter hook forward priority filter + 10; policy drop;
    ct state established,related accept
    iifname "lo" accept
  }
}
`;

async function metricSamples(a: AgentProcess, name: string) {
  const [, body] = await agentHttp(a, "/metrics");
  return parsePrometheusText(body).filter((s) => s.name === name);
}
async function metricSum(a: AgentProcess, name: string): Promise<number> {
  return (await metricSamples(a, name)).reduce((s, x) => s + x.value, 0);
}

async function sh(topo: Topology, ns: string, cmd: string[], stdin?: string): Promise<string> {
  const r = await topo.exec(ns, cmd, stdin === undefined ? {} : { stdin });
  if (r.code !== 0) throw new Error(`${cmd.join(" ")} in ${ns}: ${r.stderr}`);
  return r.stdout;
}

Deno.test({
  name:
    "hostile host firewalls: FORWARD DROP + REJECT (iptables-nft and -legacy, EnableNFTables false and true) pass, flanneld's rules adopted, zero rewrites at rest, firewalld's forward drop named",
  ignore: !ROOT || needBinaries("etcd", "ping", "iptables-nft", "iptables-legacy", "nft") || !READY,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    await using topo = await createTopology({ nodes: 4 });
    const dir = await Deno.makeTempDir({ prefix: "weft-hostfw-" });
    await using etcd = await startEtcd({ netns: topo.underlay, host: topo.underlayIP });
    const ctl = (args: string[]) => etcdctl(etcd.endpoint, args, { netns: topo.underlay });
    await ctl([
      "put",
      "/fw/ipt/config",
      JSON.stringify({ Network: "10.244.0.0/16", Backend: { Type: "vxlan" } }),
    ]);
    await ctl([
      "put",
      "/fw/nft/config",
      JSON.stringify({ Network: "10.245.0.0/16", EnableNFTables: true, Backend: { Type: "vxlan" } }),
    ]);
    const backend = ["nft", "legacy", "nft", "legacy"] as const;
    // The host's firewall before weft starts: policy DROP, then a catch-all REJECT.
    for (const [i, n] of topo.nodes.entries()) {
      await sh(topo, n.netns, [`iptables-${backend[i]}`, "-P", "FORWARD", "DROP"]);
      await sh(topo, n.netns, [`iptables-${backend[i]}`, "-A", "FORWARD", "-j", "REJECT"]);
    }
    // A previous flanneld on node 0 (subnet 10.244.5.0/24, which subnet.env hands back to weft).
    await sh(
      topo,
      topo.nodes[0]!.netns,
      ["iptables-nft-restore", "--noflush"],
      flanneldRules("10.244.5.0/24"),
    );
    Deno.writeTextFileSync(
      `${dir}/${topo.nodes[0]!.netns}.subnet.env`,
      "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.5.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
    );
    const agents = topo.nodes.map((n, i) =>
      startAgent(n, {
        etcd: etcd.endpoint,
        dir,
        args: [
          "--ip-masq",
          "--iptables-resync=1",
          "--resync-interval=2",
          `--etcd-prefix=/fw/${i < 2 ? "ipt" : "nft"}`,
        ],
      })
    );
    const pods: TopologyPod[] = [];
    try {
      const envs: SubnetEnv[] = await Promise.all(agents.map((a) => waitSubnetEnv(a)));
      await Promise.all(agents.map((a) => waitReady(a)));
      assert.equal(formatNet(envs[0]!.subnet!), "10.244.5.0/24");
      for (const [i, n] of topo.nodes.entries()) {
        addPodBridge(n.netns, envs[i]!);
        const cidr = `${formatIP({ ...envs[i]!.subnet!.ip, value: envs[i]!.subnet!.ip.value + 2n })}/24`;
        pods.push(await topo.addPod(n, { cidr, gateway: gatewayOf(envs[i]!), bridge: "cni0" }));
      }
      const pingPods = (a: number, b: number, ms = 15_000) =>
        waitFor(`pod ${a} → pod ${b}`, ms, () => topo.ping(pods[a]!, pods[b]!.ip));

      await t.step("pods ping across FORWARD DROP + REJECT, in both backends and both modes", async () => {
        await pingPods(0, 1);
        await pingPods(1, 0);
        await pingPods(2, 3);
        await pingPods(3, 2);
        for (const [i, n] of topo.nodes.entries()) {
          const save = await sh(topo, n.netns, [`iptables-${backend[i]}-save`, "-t", "filter"]);
          const fwd = save.split("\n").filter((l) => l.startsWith("-A FORWARD "));
          assert.equal(
            fwd[0],
            `-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD`,
            `node ${i}: ${save}`,
          );
          assert.equal(fwd.length, 2, `node ${i}: one jump, then the host's REJECT`);
          // The pings did cross FORWARD, and FLANNEL-FWD let them through (its packet counters moved).
          const counted = await sh(topo, n.netns, [`iptables-${backend[i]}-save`, "-c", "-t", "filter"]);
          const hits = [...counted.matchAll(/^\[(\d+):\d+\] -A FLANNEL-FWD /gm)].map((m) => Number(m[1]));
          assert.ok(hits.reduce((a, b) => a + b, 0) > 0, `node ${i}: ${counted}`);
        }
        const mode = await Promise.all(
          agents.map(async (a) => (await metricSamples(a, "weft_host_rules_writes_total"))[0]?.labels.mode),
        );
        assert.deepEqual(mode, ["iptables-nft", "iptables-legacy", "nftables", "nftables"]);
      });

      await t.step(
        "flanneld's rules on node 0 are adopted as they are: one write (the jump moved first)",
        async () => {
          const nat = await sh(topo, topo.nodes[0]!.netns, ["iptables-nft-save", "-t", "nat"]);
          assert.equal(nat.split("\n").filter((l) => l.startsWith("-A FLANNEL-POSTRTG ")).length, 6);
          assert.equal(nat.split("\n").filter((l) => l.startsWith("-A POSTROUTING ")).length, 1);
          assert.match(nat, /-s 10\.244\.5\.0\/24 -d 10\.244\.0\.0\/16 /);
          assert.equal(await metricSum(agents[0]!, "weft_host_rules_writes_total"), 1);
          // EnableNFTables: true keeps masquerading in weft's table and removes no forward accept it needs.
          const nft = withNetns(
            topo.nodes[2]!.netns,
            () =>
              new Deno.Command("nft", { args: ["list", "table", "ip", "weft"], stdout: "piped" })
                .outputSync(),
          );
          assert.match(new TextDecoder().decode(nft.stdout), /masquerade fully-random/);
        },
      );

      await t.step("at rest nothing is rewritten: nft monitor hears no event over ten passes", async () => {
        const monitors = [0, 2].map((i) =>
          withNetns(
            topo.nodes[i]!.netns,
            () => new Deno.Command("nft", { args: ["monitor"], stdout: "piped", stderr: "null" }).spawn(),
          )
        );
        const texts = monitors.map(() => "");
        const heard = monitors.map(async (m, i) => {
          for await (const c of m.stdout) texts[i] += new TextDecoder().decode(c);
          return texts[i]!;
        });
        const onEvery = (name: string) => Promise.all(agents.map((a) => metricSum(a, name)));
        /** Waits until every agent has run `more` rule passes past `since` (its counts then). */
        const passesPast = (since: number[], more: number, ms: number, pollMs: number) =>
          waitFor(`${more} more rule passes on every node`, ms, async () => {
            const p = await onEvery("weft_host_rules_passes_total");
            return p.every((x, i) => x >= since[i]! + more);
          }, pollMs);
        // Two passes first: a pass after the agent's own write (the step above) reads once more and settles.
        await passesPast(await onEvery("weft_host_rules_passes_total"), 2, 30_000, 200);
        const writes0 = await onEvery("weft_host_rules_writes_total");
        const passes0 = await onEvery("weft_host_rules_passes_total");
        const reads0 = await onEvery("weft_host_rules_reads_total");
        await passesPast(passes0, 10, 60_000, 500);
        // Before the control below moves nodes 0 and 2's generation.
        const reads1 = await onEvery("weft_host_rules_reads_total");
        assert.deepEqual(
          reads1.map((r, i) => backend[i] === "nft" ? r - reads0[i]! : r - reads0[i]! >= 10),
          backend.map((b) => b === "nft" ? 0 : true),
          "at rest an iptables-nft node reads nothing (nftables' generation stands); a legacy one reads every pass",
        );
        // The control: the monitors do hear a change.
        for (const i of [0, 2]) await sh(topo, topo.nodes[i]!.netns, ["nft", "add", "table", "ip", "probe"]);
        // Until both monitors printed it (a loaded machine schedules them late), not a fixed 300 ms.
        await waitFor(
          "the monitors hear the control",
          30_000,
          () => texts.every((t) => t.includes("add table ip probe")),
          20,
        );
        for (const m of monitors) m.kill("SIGTERM");
        // Every transaction is one generation: the only one heard is the control's.
        const events = (await Promise.all(heard)).map((s) => s.split("\n").filter((l) => l.trim()));
        assert.deepEqual(
          events.map((e) => e.filter((l) => !l.startsWith("# new generation"))),
          [["add table ip probe"], ["add table ip probe"]],
          "nft monitor heard rule changes at rest",
        );
        assert.deepEqual(events.map((e) => e.filter((l) => l.startsWith("# new generation")).length), [1, 1]);
        const writes1 = await onEvery("weft_host_rules_writes_total");
        assert.deepEqual(
          writes1,
          writes0,
          "no iptables-restore and no nft transaction at rest (legacy nodes too)",
        );
      });

      await t.step("FLANNEL-FWD's jump deleted by hand is back within a pass", async () => {
        const jump = ["-m", "comment", "--comment", "flanneld forward", "-j", "FLANNEL-FWD"];
        await sh(topo, topo.nodes[1]!.netns, ["iptables-legacy", "-D", "FORWARD", ...jump]);
        await waitFor("jump restored", 10_000, async () => {
          const s = await sh(topo, topo.nodes[1]!.netns, ["iptables-legacy-save", "-t", "filter"]);
          return s.split("\n").find((l) => l.startsWith("-A FORWARD "))?.endsWith("-j FLANNEL-FWD");
        });
        await pingPods(0, 1);
        assert.equal(await metricSum(agents[1]!, "weft_rules_repaired_total"), 1);
      });

      await t.step(
        "a firewalld-like inet table dropping in forward is named by the metric and weft doctor",
        async () => {
          for (const i of [1, 3]) await sh(topo, topo.nodes[i]!.netns, ["nft", "-f", "-"], FIREWALLD);
          for (const i of [1, 3]) {
            const b = await waitFor(
              `node ${i} reports firewalld`,
              10_000,
              async () =>
                (await metricSamples(agents[i]!, "weft_host_firewall_blocking")).find((s) =>
                  s.labels.table === "firewalld"
                ),
            );
            assert.deepEqual(b.labels, {
              family: "inet",
              table: "firewalld",
              chain: "filter_FORWARD",
              verdict: "drops",
            });
          }
          assert.equal(
            await topo.ping(pods[0]!, pods[1]!.ip, { count: 2, timeoutS: 1 }),
            false,
            "the drop is final",
          );
          assert.equal(
            (await metricSamples(agents[0]!, "weft_host_firewall_blocking")).length,
            0,
            "node 0 has none",
          );
          const doc = await topo.exec(topo.nodes[1]!, [
            Deno.execPath(),
            "run",
            "-A",
            MAIN,
            "doctor",
            "--json",
            "--subnet-file",
            agents[1]!.subnetFile,
          ]);
          const findings = (JSON.parse(doc.stdout) as {
            findings: { id: string; status: string; message: string; fix?: string }[];
          }).findings;
          const fw = findings.filter((f) => f.id === "host_firewall");
          assert.equal(fw.length, 1, doc.stdout);
          assert.equal(fw[0]!.status, "fail");
          assert.match(fw[0]!.message, /inet firewalld filter_FORWARD .* drops pod traffic \(policy drop/);
          assert.match(fw[0]!.fix!, /firewall-cmd --permanent --zone=trusted --add-source=10\.244\.0\.0\/16/);
          assert.equal(
            findings.find((f) => f.id === "iptables")?.status,
            "ok",
            doc.stdout,
          );
          assert.equal(doc.code, 1, "doctor fails");
        },
      );

      await t.step("once the table is gone the pings come back and the metric clears", async () => {
        for (const i of [1, 3]) {
          await sh(topo, topo.nodes[i]!.netns, ["nft", "delete", "table", "inet", "firewalld"]);
        }
        await pingPods(0, 1);
        await pingPods(2, 3);
        await waitFor(
          "metric cleared",
          10_000,
          async () => (await metricSamples(agents[1]!, "weft_host_firewall_blocking")).length === 0,
        );
      });
    } finally {
      await Promise.all(agents.map((a) => a.stop("SIGKILL")));
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
    void Netlink;
  },
});
