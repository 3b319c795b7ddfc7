/**
 * New pods closed from their first packet, through the product path: two nodes running
 * `weft agent --kube-subnet-mgr --network-policy --ip-masq` against the test API server, whose watches
 * are slowed by 2 s (a loaded API server, a slow kubelet status update), pods added by weft's CNI plugin
 * as under the DaemonSet (the plugin runs ADD itself and registers the pod over the agent's socket).
 *
 * Namespace x has a default-deny ingress policy. From the instant each ADD returns, a pod on the other
 * node connects every 20 ms for 3 s:
 *
 * - x/new (registered by its ADD): not one connection succeeds;
 * - x/unregistered (a plugin that cannot tell the agent): not one either — the agent's table holds every
 *   address of its pod subnet it does not know while a policy exists;
 * - y/free (registered, in a namespace no policy selects, never shown to the agent by the API): open —
 *   only the registration can have opened it (an unknown pod would be held).
 *
 * Then an allowing policy is written, and connections to both x pods succeed (the probes can succeed:
 * the zeros above are the policy's doing). Last, a configuration that masquerades pod traffic is refused.
 */
import assert from "node:assert/strict";
import type { KubeApiServer } from "./helpers/kube_api_server.ts";
import { policy } from "./helpers/netpol_cases.ts";
import { type CniPod, MatrixCni } from "./helpers/netpol_cni.ts";
import { kubeControlPlane, KubeDriver } from "./helpers/netpol_kube.ts";
import { NetpolMatrix } from "./helpers/netpol_matrix.ts";
import { requireRoot } from "./helpers/topology.ts";

const WATCH_DELAY_MS = 2000;
const TCP80 = { proto: "tcp", port: 80 } as const;

/** Connects from `from` to `pod` every `everyMs` for `forMs` from now; the successes' times (ms after ADD). */
async function probeEvery(
  m: NetpolMatrix,
  from: string,
  pod: CniPod,
  everyMs: number,
  forMs: number,
): Promise<{ attempts: number; successes: number[] }> {
  const prober = m.pods.get(from)!.prober;
  const successes: number[] = [];
  const jobs: Promise<void>[] = [];
  const end = performance.now() + forMs;
  while (performance.now() < end) {
    const at = performance.now() - pod.addedAt;
    jobs.push(
      prober.probe(pod.ip, TCP80, 300).then((reply) => {
        if (reply === `${pod.key} tcp/80`) successes.push(Math.round(at));
        else if (reply !== undefined) throw new Error(`${pod.ip} answered as ${reply}`);
      }),
    );
    await new Promise((r) => setTimeout(r, everyMs));
  }
  await Promise.all(jobs);
  return { attempts: jobs.length, successes: successes.sort((a, b) => a - b) };
}

async function reachable(m: NetpolMatrix, from: string, pod: CniPod, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await m.pods.get(from)!.prober.probe(pod.ip, TCP80, 500) === `${pod.key} tcp/80`) return true;
  }
  return false;
}

Deno.test({
  name: "a pod a policy selects is closed from the instant CNI ADD returns, with the API watch 2 s late",
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
    await using pods = new MatrixCni(m);
    try {
      const cluster = m.newCluster();
      cluster.apply({ put: policy("x", "deny-all", { podSelector: {}, policyTypes: ["Ingress"] }) });
      await driver.sync(cluster, m);
      const Pod = api.store.kindByName("Pod");
      const keys = ["x/new", "x/unregistered", "y/free"];
      const ready = await Promise.all(keys.map((k) => pods.prepare(k)));
      api.watchDelayMs = WATCH_DELAY_MS;
      // The scheduler's Pod objects, before the sandbox exists (no address); y/free's never reaches the agent.
      for (const k of ["x/new", "x/unregistered"]) {
        const [ns, name] = k.split("/") as [string, string];
        api.store.create(Pod, ns, {
          metadata: { name, namespace: ns, labels: { pod: name } },
          spec: { nodeName: "node-0", containers: [{ name: "c", ports: [{ containerPort: 80 }] }] },
          status: { phase: "Pending" },
        });
      }
      const added = await Promise.all(
        keys.map((k, i) => pods.add(k, 0, ready[i]!, { register: k !== "x/unregistered" })),
      );
      // kubelet reports the addresses once the sandbox is up (the agent hears it 2 s later).
      for (const p of added.slice(0, 2)) {
        const [ns, name] = p.key.split("/") as [string, string];
        const cur = api.store.get(Pod, ns, name) as Record<string, unknown>;
        api.store.update(Pod, ns, name, {
          ...cur,
          status: { phase: "Running", podIP: p.ip, podIPs: [{ ip: p.ip }] },
        }, "status");
      }
      const [xNew, xUnreg, yFree] = await Promise.all(
        added.map((p) => probeEvery(m, "z/b", p, 20, WATCH_DELAY_MS + 1000)),
      );
      console.log(
        `    x/new: ${xNew!.successes.length}/${xNew!.attempts}, x/unregistered: ${
          xUnreg!.successes.length
        }/${xUnreg!.attempts}, y/free: ${yFree!.successes.length}/${yFree!.attempts} (first at ${
          yFree!.successes[0]
        } ms)`,
      );
      assert.ok(xNew!.attempts >= 50, `${xNew!.attempts} attempts`);
      assert.deepEqual(xNew!.successes, [], "registered pod: not one connection");
      assert.deepEqual(xUnreg!.successes, [], "unregistered pod: held as unknown, then isolated");
      assert.ok(
        yFree!.successes.length > 0,
        "a pod no policy can select is open, known only from its registration",
      );

      // The probes do succeed once a policy allows them.
      api.store.create(
        api.store.kindByName("NetworkPolicy"),
        "x",
        policy("x", "allow-z", {
          podSelector: {},
          ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: "z" } } }] }],
        }),
      );
      assert.ok(await reachable(m, "z/b", added[0]!, 20_000), "x/new reachable once allowed");
      assert.ok(await reachable(m, "z/b", added[1]!, 20_000), "x/unregistered reachable once allowed");

      // A configuration that masquerades pod traffic is refused while policy is enforced (other nodes'
      // ingress rules would judge the node's address): ADD fails, naming the fix, and frees its address.
      const masq = await pods.prepare("x/masq");
      const refused = await pods.call("x/masq", 0, masq, { delegate: { ipMasq: true } });
      assert.equal(refused.code, 1);
      const err = refused.out as { code: number; msg: string };
      assert.equal(err.code, 7, refused.stdout);
      assert.match(err.msg, /masquerades pod traffic leaving the node \(ipMasq: true\).*Remove ipMasq/);
    } finally {
      driver.close();
    }
  },
});
