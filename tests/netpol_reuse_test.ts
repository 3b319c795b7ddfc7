/**
 * A reused pod address starts from its new pod's verdict, through the product path (two nodes running
 * `weft agent --network-policy` against the test API server): x/old (open) has a UDP flow from z/b; x/old
 * dies and its address goes to y/new, in a namespace whose policy denies all ingress, while x/old's
 * object still lingers in the API (the same address claimed twice, in two namespaces).
 *
 * Until the agent hears of it, the old flow's conntrack entry carries z/b's datagrams into y/new (the
 * hazard, shown). Once y/new is registered as CNI ADD registers it, the entry is flushed and the flow —
 * like every new connection — is judged as y/new's: denied. The duplicate is resolved for the newest pod,
 * warned about and counted, and the table keeps taking changes.
 */
import assert from "node:assert/strict";
import { agentSocketBeside } from "../src/cni/agent_protocol.ts";
import { askAgent } from "../src/cni/agent_client.ts";
import { metric, waitFor } from "./helpers/agent.ts";
import type { KubeApiServer } from "./helpers/kube_api_server.ts";
import { podObject, policy } from "./helpers/netpol_cases.ts";
import { kubeControlPlane, KubeDriver } from "./helpers/netpol_kube.ts";
import { NetpolMatrix } from "./helpers/netpol_matrix.ts";
import { requireRoot } from "./helpers/topology.ts";

const UDP80 = { proto: "udp", port: 80 } as const;
const TCP80 = { proto: "tcp", port: 80 } as const;
const FLOW = 40123; // z/b's source port: every probe of the flow is one conntrack entry

Deno.test({
  name: "a reused address starts from its new pod's verdict: old flows flushed, the newest claim wins",
  ignore: requireRoot(),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    let api!: KubeApiServer;
    await using m = await NetpolMatrix.create({
      backend: "vxlan",
      pods: [{ key: "z/b", node: 1 }, { key: "x/a", node: 0 }],
      controlPlane: kubeControlPlane((a) => api = a),
    });
    const driver = new KubeDriver(api);
    try {
      await m.ensurePod("x/old", 0);
      const cluster = m.newCluster();
      cluster.apply({ addPod: "x/old", labels: { pod: "old" }, node: 0 });
      cluster.apply({ put: policy("y", "deny-all", { podSelector: {}, policyTypes: ["Ingress"] }) });
      await driver.sync(cluster, m);
      const agent = m.agents[0]!;
      const zb = m.pods.get("z/b")!.prober;
      const ip = m.pods.get("x/old")!.ip;
      assert.equal(await zb.probe(ip, UDP80, 3000, FLOW), "x/old udp/80", "the flow to x/old");

      await m.replacePod("x/old", "y/new");
      assert.equal(
        await zb.probe(ip, UDP80, 3000, FLOW),
        "y/new udp/80",
        "the hazard: the old flow's entry carries it into the new pod",
      );

      // CNI ADD of y/new registers it (y/new's object is not in the API yet: held).
      const answer = await askAgent(agentSocketBeside(agent.subnetFile), "register-pod", {
        pod: { namespace: "y", name: "new", containerId: "reuse-1", ips: [ip] },
      });
      assert.equal(answer.status, "answered");
      assert.deepEqual((answer as { reply: Record<string, unknown> }).reply.state, "held");
      assert.equal(await zb.probe(ip, UDP80, 500, FLOW), undefined, "the flow is judged again: denied");
      assert.equal(await zb.probe(ip, UDP80, 500), undefined, "a new UDP flow: denied");
      assert.equal(await zb.probe(ip, TCP80, 500), undefined, "a TCP connection: denied");
      assert.ok(await metric(agent, "weft_policy_conntrack_flushed_total") >= 1);

      // y/new's object arrives; x/old's lingers: one address, two pods — y/new, the newest, keeps it.
      const Pod = api.store.kindByName("Pod");
      api.store.create(Pod, "y", podObject({ ns: "y", name: "new", labels: { pod: "new" }, node: 0 }, ip));
      await waitFor(
        "the duplicate counted",
        15_000,
        async () => await metric(agent, "weft_policy_duplicate_ips") === 1,
      );
      assert.match(
        Deno.readTextFileSync(agent.logFile),
        /address \S+ is claimed by y\/new, x\/old: y\/new, the newest, keeps it/,
      );
      assert.equal(await metric(agent, "weft_policy_pending_pods"), 0);
      assert.equal(await zb.probe(ip, UDP80, 500, FLOW), undefined, "still y/new's verdict");

      // The table keeps taking changes: x/old's object goes, then a policy lets z in.
      api.store.delete(Pod, "x", "old");
      await waitFor("resolved", 15_000, async () => await metric(agent, "weft_policy_duplicate_ips") === 0);
      api.store.create(
        api.store.kindByName("NetworkPolicy"),
        "y",
        policy("y", "allow-z", {
          podSelector: {},
          ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: "z" } } }] }],
        }),
      );
      await waitFor("allowed", 15_000, async () => await zb.probe(ip, TCP80, 500) === "y/new tcp/80");
      assert.equal(await metric(agent, "weft_policy_failed_entries"), 0);
    } finally {
      driver.close();
    }
  },
});
