/**
 * KubeLeaseSource against the test API server (in process, HTTPS, bearer tokens): acquiring the own
 * lease as flannel does, the watch (list + watch, changes, deletions, 410 re-list with a diff, outage),
 * the keeper, RBAC and podCIDR errors, the node name from the pod, token rotation.
 */
import assert from "node:assert/strict";
import type { Lease, LeaseEvent } from "../src/lease/lease.ts";
import { KubeLeaseSource } from "../src/lease/kube/lease_source.ts";
import { loadKubeconfig } from "../src/kube/config.ts";
import { type KubeApiServer, startKubeApiServer } from "./helpers/kube_api_server.ts";

const P = "flannel.alpha.coreos.com/";
const NET_CONF = JSON.stringify({ Network: "10.244.0.0/16", Backend: { Type: "vxlan" } });
const ATTRS = {
  PublicIP: "192.168.77.11",
  BackendType: "vxlan",
  BackendData: { VNI: 1, VtepMAC: "0a:00:00:00:00:01" },
};

function peer(name: string, cidr: string, ip: string, mac: string) {
  return {
    metadata: {
      name,
      annotations: {
        [`${P}kube-subnet-manager`]: "true",
        [`${P}backend-type`]: "vxlan",
        [`${P}public-ip`]: ip,
        [`${P}backend-data`]: JSON.stringify({ VNI: 1, VtepMAC: mac }),
      },
    },
    spec: { podCIDR: cidr, podCIDRs: [cidr] },
  };
}

async function setup(s: KubeApiServer, dir: string, env: Record<string, string> = { NODE_NAME: "self" }) {
  await Deno.writeTextFile(`${dir}/net-conf.json`, NET_CONF);
  await s.writeKubeconfig(`${dir}/kubeconfig`, { token: "t0" });
  return await KubeLeaseSource.open({
    conn: await loadKubeconfig(`${dir}/kubeconfig`),
    netConfPath: `${dir}/net-conf.json`,
    env: (k) => env[k],
    bookmarkIntervalMs: 1000,
    timeoutMs: 2000,
    backoffMs: [100, 1000],
  });
}

/** Runs `fn` with a source on `s` (a temp dir, node "self") and a stop controller; closes and cleans up after. */
async function withSource(
  s: KubeApiServer,
  prefix: string,
  fn: (src: KubeLeaseSource, stop: AbortController) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix });
  const src = await setup(s, dir);
  const stop = new AbortController();
  try {
    await fn(src, stop);
  } finally {
    stop.abort();
    await src.close();
    await Deno.remove(dir, { recursive: true });
  }
}

/** Collects batches until `pred` holds on the flattened list (or times out). */
function collector() {
  const events: LeaseEvent[] = [];
  let syncs = 0;
  const waiters: (() => void)[] = [];
  return {
    events,
    get syncs() {
      return syncs;
    },
    onBatch(b: LeaseEvent[]) {
      events.push(...b);
      for (const w of waiters.splice(0)) w();
    },
    onSync() {
      syncs++;
      for (const w of waiters.splice(0)) w();
    },
    async until(what: string, pred: () => boolean, ms = 30_000) {
      const end = Date.now() + ms;
      while (!pred()) {
        if (Date.now() > end) {
          throw new Error(
            `timed out waiting for ${what}: ${JSON.stringify(events.map((e) => [e.type, e.lease.key]))}`,
          );
        }
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 100);
        });
      }
    },
  };
}

Deno.test({
  name: "KubeLeaseSource: acquire, watch, re-list on 410, ride out an outage, keep annotations",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    let allowPatch = true;
    await using s = await startKubeApiServer({
      tls: true,
      tokens: { t0: "system:serviceaccount:kube-flannel:flannel" },
      authorize: (a) => allowPatch || a.verb !== "patch",
      bookmarkMs: 300,
      historySize: 50,
    });
    const Node = s.store.kindByName("Node");
    const dir = await Deno.makeTempDir({ prefix: "weft-kube-source-" });
    s.store.create(Node, "", {
      metadata: { name: "self" },
      spec: { podCIDR: "10.244.1.0/24", podCIDRs: ["10.244.1.0/24"] },
    });
    s.store.create(Node, "", peer("p2", "10.244.2.0/24", "192.168.77.12", "0a:00:00:00:00:02"));
    s.store.create(Node, "", { metadata: { name: "plain" }, spec: { podCIDR: "10.244.9.0/24" } }); // no flannel
    const src = await setup(s, dir);
    const cfg = await src.getNetworkConfig();
    const stop = new AbortController();
    let watching: Promise<void> | undefined;
    let lease: Lease | undefined;
    try {
      await t.step(
        "acquireLease takes the podCIDR and patches the annotations through nodes/status as flannel; nothing else",
        async () => {
          lease = await src.acquireLease(cfg, ATTRS);
          assert.equal(lease.key, "10.244.1.0-24");
          const patches = s.requests.filter((r) => r.method === "PATCH");
          assert.deepEqual(patches.map((r) => [r.path, r.contentType]), [
            ["/api/v1/nodes/self/status", "application/strategic-merge-patch+json"],
          ]);
          assert.deepEqual(JSON.parse(patches[0]!.body!), {
            metadata: {
              annotations: {
                [`${P}backend-type`]: "vxlan",
                [`${P}backend-data`]: '{"VNI":1,"VtepMAC":"0a:00:00:00:00:01"}',
                [`${P}public-ip`]: "192.168.77.11",
                [`${P}kube-subnet-manager`]: "true",
              },
            },
          });
          const node = s.store.get(Node, "", "self") as { status?: { conditions?: unknown[] } };
          assert.equal(node.status?.conditions, undefined, "no NetworkUnavailable before the datapath");
          // A second start with the same attributes writes nothing.
          await src.acquireLease(cfg, ATTRS);
          assert.equal(s.requests.filter((r) => r.method === "PATCH").length, 1);
        },
      );

      const c = collector();
      const ownEvents: LeaseEvent[] = [];
      let up: boolean | undefined;
      watching = src.watchLeases((b) => c.onBatch(b), {
        signal: stop.signal,
        ownKey: () => "10.244.1.0-24",
        onOwn: (e) => ownEvents.push(e),
        onSync: () => c.onSync(),
        onConnectivity: (u) => (up = u),
      });

      await t.step("the first list delivers flannel nodes only, the own node apart", async () => {
        await c.until("first sync", () => c.syncs >= 1);
        assert.deepEqual(c.events.map((e) => [e.type, e.lease.key]), [["added", "10.244.2.0-24"]]);
        assert.equal(ownEvents.length, 0, "the own node goes to the keepers, not to peers or onOwn");
        assert.equal(up, true);
      });

      await t.step(
        "a node added, changed and deleted arrives as added, added-with-previous, removed",
        async () => {
          c.events.length = 0;
          s.store.create(Node, "", peer("p3", "10.244.3.0/24", "192.168.77.13", "0a:00:00:00:00:03"));
          await c.until("p3 added", () => c.events.some((e) => e.lease.key === "10.244.3.0-24"));
          const p3 = s.store.get(Node, "", "p3") as { metadata: { annotations: Record<string, string> } };
          p3.metadata.annotations[`${P}backend-data`] = '{"VNI":1,"VtepMAC":"0a:00:00:00:00:33"}';
          s.store.update(Node, "", "p3", p3);
          s.store.update(Node, "", "plain", {
            ...s.store.get(Node, "", "plain"),
            metadata: { name: "plain", labels: { x: "y" } },
          });
          await c.until("p3 changed", () => c.events.some((e) => e.previous));
          s.store.delete(Node, "", "p3");
          await c.until("p3 removed", () => c.events.some((e) => e.type === "removed"));
          assert.deepEqual(c.events.map((e) => [e.type, e.lease.key, !!e.previous]), [
            ["added", "10.244.3.0-24", false],
            ["added", "10.244.3.0-24", true],
            ["removed", "10.244.3.0-24", false],
          ]);
        },
      );

      await t.step(
        "an outage with changes and a compacted history: 410, re-list, deletions seen, none lost",
        async () => {
          c.events.length = 0;
          const syncs = c.syncs;
          await s.stop();
          await c.until("connectivity lost", () => up === false);
          s.store.delete(Node, "", "p2");
          s.store.create(Node, "", peer("p4", "10.244.4.0/24", "192.168.77.14", "0a:00:00:00:00:04"));
          s.store.compact();
          s.start();
          await c.until("re-list after 410", () => c.syncs > syncs && up === true, 15_000);
          assert.deepEqual(c.events.map((e) => [e.type, e.lease.key]).sort(), [
            ["added", "10.244.4.0-24"],
            ["removed", "10.244.2.0-24"],
          ]);
          // After the re-list the watch goes on from the new resourceVersion.
          s.store.create(Node, "", peer("p5", "10.244.5.0/24", "192.168.77.15", "0a:00:00:00:00:05"));
          await c.until("p5 after the re-list", () => c.events.some((e) => e.lease.key === "10.244.5.0-24"));
        },
      );

      await t.step(
        "a watch the server ends (its timeout) resumes from the last resourceVersion, without a re-list",
        async () => {
          const syncs = c.syncs;
          const lists = s.requests.filter((r) =>
            r.method === "GET" && r.path === "/api/v1/nodes" && !r.query.includes("watch")
          ).length;
          s.closeWatches();
          s.store.create(Node, "", peer("p6", "10.244.6.0/24", "192.168.77.16", "0a:00:00:00:00:06"));
          await c.until("p6", () =>
            c.events.some((e) => e.lease.key === "10.244.6.0-24"));
          assert.equal(c.syncs, syncs);
          assert.equal(
            s.requests.filter((r) =>
              r.method === "GET" && r.path === "/api/v1/nodes" && !r.query.includes("watch")
            ).length,
            lists,
          );
        },
      );

      await t.step(
        "the keeper sets NetworkUnavailable=False once told the datapath is ready, and re-publishes annotations someone changed (woken by the watch, no GET)",
        async () => {
          const keeper = src.keepLease(cfg, ATTRS, lease!);
          void keeper.run(stop.signal);
          const mark = s.mark();
          keeper.datapathReady!();
          await c.until("condition", () => {
            const n = s.store.get(Node, "", "self") as { status?: { conditions?: Record<string, string>[] } };
            return n.status?.conditions?.some((x) => x.type === "NetworkUnavailable") ?? false;
          });
          const node = s.store.get(Node, "", "self") as { status: { conditions: Record<string, string>[] } };
          const cond = node.status.conditions.find((x) => x.type === "NetworkUnavailable")!;
          assert.deepEqual([cond.status, cond.reason, cond.message], [
            "False",
            "FlannelIsUp",
            "Flannel is running on this node",
          ]);
          const self = s.store.get(Node, "", "self") as { metadata: { annotations: Record<string, string> } };
          self.metadata.annotations[`${P}public-ip`] = "10.0.0.99";
          s.store.update(Node, "", "self", self); // the watch sees it and pokes the keeper: no poke() here
          const end = Date.now() + 30_000;
          while (keeper.renewals < 1 && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
          assert.equal(keeper.renewals, 1);
          const after = s.store.get(Node, "", "self") as {
            metadata: { annotations: Record<string, string> };
          };
          assert.equal(after.metadata.annotations[`${P}public-ip`], "192.168.77.11");
          assert.deepEqual(s.counts(mark), { "patch nodes/status": 2 }, "two patches, no GET");
        },
      );

      await t.step(
        "RBAC refusing the patch and an unassigned podCIDR give errors that say what to fix",
        async () => {
          allowPatch = false;
          s.store.create(Node, "", { metadata: { name: "fresh" }, spec: { podCIDR: "10.244.30.0/24" } });
          const fresh = await setup(s, dir, { NODE_NAME: "fresh" });
          await assert.rejects(
            fresh.acquireLease(cfg, ATTRS),
            /forbids the agent to patch nodes\/fresh\/status.*cannot patch resource "nodes\/status".*"patch" on "nodes\/status"/,
          );
          await fresh.close();
          allowPatch = true;
          s.store.create(Node, "", { metadata: { name: "bare" } });
          const bare = await setup(s, dir, { NODE_NAME: "bare" });
          await assert.rejects(
            bare.acquireLease(cfg, ATTRS),
            /node "bare" pod cidr not assigned.*--allocate-node-cidrs/,
          );
          await bare.close();
        },
      );

      await t.step("--set-node-network-unavailable=false leaves the node's conditions alone", async () => {
        s.store.create(Node, "", { metadata: { name: "quiet" }, spec: { podCIDR: "10.244.7.0/24" } });
        await Deno.writeTextFile(`${dir}/net-conf.json`, NET_CONF);
        const quiet = await KubeLeaseSource.open({
          conn: await loadKubeconfig(`${dir}/kubeconfig`),
          netConfPath: `${dir}/net-conf.json`,
          env: (k) => ({ NODE_NAME: "quiet" } as Record<string, string>)[k],
          setNodeNetworkUnavailable: false,
        });
        const ql = await quiet.acquireLease(cfg, ATTRS);
        const qk = quiet.keepLease(cfg, ATTRS, ql);
        const qstop = new AbortController();
        const qrun = qk.run(qstop.signal);
        qk.datapathReady!();
        await new Promise((r) => setTimeout(r, 300));
        qstop.abort();
        await qrun;
        await quiet.close();
        const n = s.store.get(Node, "", "quiet") as { metadata: { annotations?: object }; status?: object };
        assert.equal(n.status, undefined);
        assert.ok(n.metadata.annotations, "the annotations are still published");
      });

      await t.step("SubnetLen follows the podCIDRs (--node-cidr-mask-size), not net-conf.json", async () => {
        s.store.create(Node, "", { metadata: { name: "narrow" }, spec: { podCIDR: "10.244.20.128/25" } });
        const narrow = await setup(s, dir, { NODE_NAME: "narrow" });
        const c = await narrow.getNetworkConfig();
        assert.equal(c.subnetLen, 25, "the agent's lease rules accept /25 peers");
        assert.equal(cfg.subnetLen, 24);
        await narrow.close();
      });

      await t.step("the node name comes from the pod when NODE_NAME is not set", async () => {
        s.store.create(s.store.kindByName("Namespace"), "", { metadata: { name: "kube-flannel" } });
        s.store.create(s.store.kindByName("Pod"), "kube-flannel", {
          metadata: { name: "kube-flannel-ds-abcde" },
          spec: { nodeName: "p4", containers: [{ name: "kube-flannel", image: "weft" }] },
        });
        const viaPod = await setup(s, dir, {
          POD_NAME: "kube-flannel-ds-abcde",
          POD_NAMESPACE: "kube-flannel",
        });
        assert.equal(viaPod.nodeName, "p4");
        await viaPod.close();
        await assert.rejects(setup(s, dir, {}), /set NODE_NAME/);
      });
    } finally {
      stop.abort();
      await watching;
      await src.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "a watch started right after listLeases() starts from that list instead of listing again",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using s = await startKubeApiServer({ tls: true, tokens: { t0: "weft" } });
    const Node = s.store.kindByName("Node");
    s.store.create(Node, "", { metadata: { name: "self" }, spec: { podCIDR: "10.244.1.0/24" } });
    s.store.create(Node, "", peer("p2", "10.244.2.0/24", "192.168.77.12", "0a:00:00:00:00:02"));
    await withSource(s, "weft-kube-primed-", async (src, stop) => {
      const { leases } = await src.listLeases();
      assert.deepEqual(leases.map((l) => l.key), ["10.244.2.0-24"]);
      // Changed between the list and the watch: the watch replays it from the list's resourceVersion.
      s.store.create(Node, "", peer("p3", "10.244.3.0/24", "192.168.77.13", "0a:00:00:00:00:03"));
      const c = collector();
      const watching = src.watchLeases((b) => c.onBatch(b), {
        signal: stop.signal,
        onSync: () => c.onSync(),
      });
      await c.until("p2 and p3", () => c.events.length === 2);
      assert.deepEqual(c.events.map((e) => e.lease.key), ["10.244.2.0-24", "10.244.3.0-24"]);
      const lists = s.requests.filter((r) => r.path === "/api/v1/nodes" && !r.query.includes("watch=true"));
      assert.equal(lists.length, 1, "one list for start-up and the watch");
      stop.abort();
      await watching;
    });
  },
});

Deno.test({
  name:
    "start-up on a big cluster: the previous lease comes from the own Node while the list is still arriving, and the first watch waits for that list instead of listing again",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    // The list of a big cluster takes a while (5000 real Nodes: ~65 MB); nothing else waits for it.
    await using s = await startKubeApiServer({
      tls: true,
      tokens: { t0: "weft" },
      faults: { listDelayMs: 800 },
    });
    const Node = s.store.kindByName("Node");
    s.store.create(Node, "", peer("self", "10.244.1.0/24", "192.168.77.11", "0a:00:00:00:00:01"));
    s.store.create(Node, "", peer("p2", "10.244.2.0/24", "192.168.77.12", "0a:00:00:00:00:02"));
    await withSource(s, "weft-kube-own-first-", async (src, stop) => {
      const cfg = await src.getNetworkConfig();
      const t0 = Date.now();
      src.prefetch();
      const previous = await src.ownPreviousLease(cfg);
      assert.ok(Date.now() - t0 < 600, `own Node read in ${Date.now() - t0} ms, not behind the list`);
      assert.equal(previous?.key, "10.244.1.0-24");
      assert.deepEqual(previous?.attrs.BackendData, { VNI: 1, VtepMAC: "0a:00:00:00:00:01" });
      const lease = await src.acquireLease(cfg, ATTRS);
      assert.equal(lease.key, "10.244.1.0-24");
      assert.equal(s.count({ verb: "list", status: 200 }), 0, "the lease is made before the list has come");
      const c = collector();
      const watching = src.watchLeases((b) => c.onBatch(b), {
        signal: stop.signal,
        onSync: () => c.onSync(),
      });
      await c.until("p2", () => c.events.length === 1 && c.syncs === 1);
      assert.deepEqual(c.events.map((e) => e.lease.key), ["10.244.2.0-24"]);
      assert.equal(s.count({ verb: "list" }), 1, "one list: the start-up's, taken by the watch");
      assert.equal(s.count({ verb: "get" }), 1, "one GET of the own Node");
      stop.abort();
      await watching;
    });
  },
});
