/**
 * Network policy end to end, the product path: `weft agent --kube-subnet-mgr --network-policy` on two
 * nodes (vxlan) against the test Kubernetes API server. Every catalog case is written into the API and
 * probed once both kernels hold the table the compiler derives from the API's state; then what only
 * the agent does: unenforceable policies reported and counted, the API server stopped (rules stay) and
 * restarted (changes made meanwhile applied), `weft policy`, metrics, restarts, and the flag turned off.
 */
import assert from "node:assert/strict";
import { withNetns } from "../ffi/mod.ts";
import { runIn } from "../src/lab/lab.ts";
import { listPolicyTable } from "../src/policy/nft_table.ts";
import { metric, waitFor, waitReady } from "./helpers/agent.ts";
import type { KubeApiServer } from "./helpers/kube_api_server.ts";
import { basePods, CASES, policy } from "./helpers/netpol_cases.ts";
import { kubeControlPlane, KubeDriver } from "./helpers/netpol_kube.ts";
import { NetpolMatrix } from "./helpers/netpol_matrix.ts";
import { requireRoot } from "./helpers/topology.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const TCP80 = { proto: "tcp", port: 80 } as const;
const UDP80 = { proto: "udp", port: 80 } as const;

Deno.test({
  name: "weft agent --network-policy: the catalog through the API, bad input, API outage, restarts, off",
  ignore: requireRoot(),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    let api!: KubeApiServer;
    await using m = await NetpolMatrix.create({
      backend: "vxlan",
      pods: basePods().map((p) => ({ key: `${p.ns}/${p.name}`, node: p.node })),
      agentArgs: ["--resync-interval=1"],
      controlPlane: kubeControlPlane((a) => api = a),
    });
    const driver = new KubeDriver(api);
    const agent0 = m.agents[0]!; // x/a's node
    try {
      const only = new RegExp(Deno.env.get("NETPOL_CASES") ?? "");
      for (const kase of CASES.filter((k) => only.test(k.name))) {
        await t.step(kase.name, async () => {
          const failures = await m.runCase(kase, driver);
          assert.deepEqual(failures, [], failures.join("\n\n"));
        });
      }

      await t.step("an unenforceable policy is logged and counted; the others still apply", async () => {
        const cluster = m.newCluster();
        cluster.apply({
          put: policy("x", "icmp", {
            podSelector: { matchLabels: { pod: "a" } },
            ingress: [{ ports: [{ protocol: "ICMP" }] }],
          }),
        });
        cluster.apply({
          put: policy("x", "web", {
            podSelector: { matchLabels: { pod: "a" } },
            ingress: [{ ports: [{ port: 80 }] }],
          }),
        });
        await driver.sync(cluster, m);
        assert.equal(await m.probeOnce("y/a", "x/a", TCP80, 10_000), true, "x/web applies");
        assert.equal(
          await m.probeOnce("y/a", "x/a", UDP80, 500),
          false,
          "x/icmp allows nothing (fail closed)",
        );
        await waitFor(
          "the problem counted",
          10_000,
          async () => await metric(agent0, "weft_policy_unenforceable_total") === 1,
        );
        assert.equal(await metric(agent0, "weft_policy_unenforceable"), 1);
        const log = Deno.readTextFileSync(agent0.logFile);
        assert.match(
          log,
          /NetworkPolicy x\/icmp: spec\.ingress\[0\]\.ports\[0\]\.protocol: unsupported protocol "ICMP"/,
        );
      });

      await t.step("`weft policy` on the node shows what the kernel enforces, with counters", async () => {
        const r = await runIn(agent0.node.netns, [
          Deno.execPath(),
          "run",
          "-A",
          "--no-check",
          MAIN,
          "policy",
          "--json",
        ]);
        assert.equal(r.code, 0, r.stderr);
        const s = JSON.parse(r.stdout) as {
          pods: { pod: string; ingress?: { policies: string[] } }[];
          policies: { policy: string; direction: string; rules: { rule: string; packets: number }[] }[];
        };
        const xa = s.pods.find((p) => p.pod === "x/a")!;
        assert.deepEqual(xa.ingress!.policies, ["x/icmp", "x/web"]);
        const web = s.policies.find((p) => p.policy === "x/web" && p.direction === "ingress")!
          .rules.find((x) => x.rule === "x/web ingress[0] tcp/80")!;
        assert.ok(web.packets >= 1, "the connection let in above is counted");
      });

      await t.step("metrics: rules, isolated pods, updates, update latency, API up", async () => {
        assert.ok(await metric(agent0, "weft_policy_updates_total") >= 3);
        assert.ok(await metric(agent0, "weft_policy_rules") >= 1);
        assert.ok(await metric(agent0, "weft_policy_isolated_pods") >= 1);
        assert.ok(await metric(agent0, "weft_policy_update_latency_seconds_count") >= 3);
        assert.equal(await metric(agent0, "weft_policy_api_up"), 1);
        assert.equal(await metric(agent0, "weft_policy_synced"), 1);
      });

      await t.step(
        "the API server stopped: rules stay; restarted: changes made meanwhile are applied",
        async () => {
          const before = m.newCluster();
          before.apply({ put: policy("x", "deny-a", { podSelector: { matchLabels: { pod: "a" } } }) });
          await driver.sync(before, m);
          await api.stop();
          await waitFor(
            "the agents notice",
            15_000,
            async () => await metric(agent0, "weft_policy_api_up") === 0,
          );
          // Changed while no agent can see it.
          const after = m.newCluster();
          after.apply({ put: policy("x", "deny-b", { podSelector: { matchLabels: { pod: "b" } } }) });
          driver.write(after);
          await new Promise((r) => setTimeout(r, 2000));
          assert.equal(
            await m.probeOnce("y/b", "x/a", TCP80, 500),
            false,
            "x/a stays isolated while the API is away",
          );
          assert.equal(await m.probeOnce("y/b", "x/b", TCP80, 10_000), true, "nothing new was applied");
          api.start();
          await driver.enforced(after, m);
          assert.equal(await m.probeOnce("y/b", "x/a", TCP80, 10_000), true);
          assert.equal(await m.probeOnce("y/b", "x/b", TCP80, 500), false);
          await waitFor("API up again", 15_000, async () => await metric(agent0, "weft_policy_api_up") === 1);
        },
      );

      await t.step("a restarted agent keeps the rules meanwhile and takes over", async () => {
        const before = withNetns(agent0.node.netns, () => listPolicyTable());
        await agent0.stop();
        assert.equal(
          withNetns(agent0.node.netns, () => listPolicyTable()),
          before,
          "SIGTERM leaves the table",
        );
        assert.equal(await m.probeOnce("y/a", "x/b", TCP80, 500), false, "still enforced with no agent");
        agent0.start();
        await waitReady(agent0, 60_000);
        const cluster = m.newCluster();
        await driver.sync(cluster, m);
        assert.equal(await m.probeOnce("y/a", "x/b", TCP80, 10_000), true);
      });

      await t.step("a deleted table is re-installed by the next resync", async () => {
        const cluster = m.newCluster();
        cluster.apply({ put: policy("x", "deny-a", { podSelector: { matchLabels: { pod: "a" } } }) });
        await driver.sync(cluster, m);
        await runIn(agent0.node.netns, ["nft", "delete", "table", "inet", "weft-policy"]);
        await driver.enforced(cluster, m, 10_000);
        assert.ok(await metric(agent0, "weft_policy_repaired_total") >= 1);
      });

      await t.step("the agent without --network-policy removes the table", async () => {
        await agent0.stop();
        // The control plane adds --network-policy; a later --network-policy=false wins.
        const plain = m.control.startAgent(0, ["--network-policy=false"]);
        try {
          await waitFor(
            "the table gone",
            30_000,
            () => withNetns(agent0.node.netns, () => listPolicyTable() === undefined),
          );
        } finally {
          await plain.stop();
        }
      });
    } finally {
      driver.close();
    }
  },
});
