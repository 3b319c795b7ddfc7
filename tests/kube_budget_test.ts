/**
 * Kubernetes mode against a test API server with teeth (tests/helpers/kube_api_server.ts faults, realistic
 * 13 KB Nodes and kubelet heartbeats from tests/helpers/kube_nodes.ts), every step with a request budget:
 *
 * 1. Silent in steady state: with kubelets writing heartbeats, 0 requests besides the one open watch, and
 *    a heartbeat costs a comparison — no batch, no reconciler call, no kernel operation, no log line.
 * 2. Resume, don't re-list: watches closed by the server and a restart with history intact cost 0 LISTs;
 *    a restart that lost the history costs exactly one (from the watch cache), and sees the deletion.
 * 3. Polite under stress: 429 + Retry-After is waited out (attempts at least Retry-After apart), a
 *    black-holed server (dead watch, requests never answered) is detected by the silence of bookmarks and
 *    the request time limit and ridden out, slow answers are fine.
 * 4. Credentials: revoked → the cause is reported (what /readyz says); restored → cleared; a kubelet's
 *    node-authorizer credentials → the error names the RBAC the agent needs.
 *
 * Intervals are shortened (bookmarks every 200 ms, dead after 400 ms, requests time out after 1 s).
 */
import assert from "node:assert/strict";
import { configure, type LogRecord, reset } from "@logtape/logtape";
import type { Entry } from "../src/datapath/entries.ts";
import { type DatapathBackend, type KernelOps, Reconciler } from "../src/datapath/reconciler.ts";
import { formatNet, parseNet } from "../src/net/ip.ts";
import type { Lease } from "../src/lease/lease.ts";
import { KubeLeaseSource } from "../src/lease/kube/lease_source.ts";
import { networkRules } from "../src/lease/validate.ts";
import { PeerSync } from "../src/agent/peer_sync.ts";
import { type KubeApiServer, startKubeApiServer } from "./helpers/kube_api_server.ts";
import { realisticNode, startHeartbeats } from "./helpers/kube_nodes.ts";

const NET_CONF = JSON.stringify({ Network: "10.244.0.0/16", Backend: { Type: "vxlan" } });
const ATTRS = {
  PublicIP: "192.168.77.11",
  PublicIPv6: null,
  BackendType: "vxlan",
  BackendData: { VNI: 1, VtepMAC: "0a:00:00:00:00:01" },
};
const PEERS = 40;

function peer(i: number) {
  return realisticNode({
    name: `peer-${i}`,
    podCIDR: `10.244.${100 + i}.0/24`,
    internalIP: `192.168.78.${10 + i}`,
    flannel: { publicIP: `192.168.78.${10 + i}`, vtepMac: `0a:00:00:00:01:${(16 + i).toString(16)}` },
  });
}

async function until(what: string, pred: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A backend wanting one route per lease, and a kernel that only counts what it is asked to do. */
function countingDatapath() {
  const ops: string[] = [];
  const backend = {
    ownedDevices: () => [],
    entriesFor: (l: Lease): Entry[] | undefined =>
      l.subnet
        ? [{ kind: "route", spec: { dst: formatNet(l.subnet), gateway: l.attrs.PublicIP, dev: 1 } }]
        : undefined,
  } as unknown as DatapathBackend;
  const kernel: KernelOps = {
    apply: (e: Entry) => void ops.push(`apply ${e.kind === "route" ? e.spec.dst : e.kind}`),
    remove: (e: Entry) => void ops.push(`remove ${e.kind === "route" ? e.spec.dst : e.kind}`),
    read: () => ({ routes: [], neighs: [], fdbs: [] }),
  };
  return { reconciler: new Reconciler(backend, kernel, [parseNet("10.244.0.0/16")]), ops };
}

async function agentSide(s: KubeApiServer, dir: string, token: string, name = "self") {
  await s.writeKubeconfig(`${dir}/kubeconfig-${token}`, { token });
  const { loadKubeconfig } = await import("../src/kube/config.ts");
  return await KubeLeaseSource.open({
    conn: await loadKubeconfig(`${dir}/kubeconfig-${token}`),
    nodeName: name,
    netConfPath: `${dir}/net-conf.json`,
    bookmarkIntervalMs: 200,
    timeoutMs: 1000,
    backoffMs: [100, 1000],
  });
}

Deno.test({
  name:
    "kube mode against a hostile API server: silent, resumes without listing, polite, every step on a budget",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const tokens: Record<string, string> = { agent: "system:serviceaccount:kube-weft:weft" };
    await using s = await startKubeApiServer({ tls: true, tokens, bookmarkMs: 200, historySize: 5000 });
    const Node = s.store.kindByName("Node");
    const dir = await Deno.makeTempDir({ prefix: "weft-kube-budget-" });
    await Deno.writeTextFile(`${dir}/net-conf.json`, NET_CONF);
    s.store.create(
      Node,
      "",
      realisticNode({ name: "self", podCIDR: "10.244.1.0/24", internalIP: "192.168.77.11" }),
    );
    for (let i = 0; i < PEERS; i++) s.store.create(Node, "", peer(i));
    const names = [...Array(PEERS).keys()].map((i) => `peer-${i}`).concat("self");
    const src = await agentSide(s, dir, "agent");
    const stop = new AbortController();
    const records: LogRecord[] = [];
    await configure({
      reset: true,
      sinks: { mem: (r) => void records.push(r) },
      loggers: [{ category: ["weft"], lowestLevel: "debug", sinks: ["mem"] }, {
        category: ["logtape", "meta"],
        lowestLevel: "error",
        sinks: [],
      }],
    });
    const { reconciler, ops } = countingDatapath();
    let batches = 0, synced = 0, up: boolean | undefined;
    let refused: string | undefined;
    try {
      const cfg = await src.getNetworkConfig();
      await src.listLeases();
      const lease = await src.acquireLease(cfg, ATTRS);
      const peers = new PeerSync(src, reconciler, () => true, {
        ownKey: () => lease.key,
        ownPublicIP: ATTRS.PublicIP,
        onOwn: () => {},
        onSynced: () => synced++,
        onConnectivity: (u) => up = u,
        onRefused: (why) => refused = why,
      }, { network: networkRules(cfg), node: { ownSubnets: [lease.subnet!], addresses: [], vtepMacs: [] } });
      const setPeer = reconciler.setPeer.bind(reconciler);
      reconciler.setPeer = (k, l) => {
        batches++;
        setPeer(k, l);
      };
      const watching = peers.run(stop.signal);
      const keeper = src.keepLease(cfg, ATTRS, lease);
      const keeping = keeper.run(stop.signal);
      await until("first sync", () => synced === 1 && ops.length === PEERS);
      keeper.datapathReady!();
      await until(
        "condition",
        () =>
          ((s.store.get(Node, "", "self").status as { conditions?: { type: string }[] } | undefined)
            ?.conditions ?? [])
            .some((c) => c.type === "NetworkUnavailable"),
      );
      assert.deepEqual(s.counts(), {
        "get nodes": 1,
        "list nodes": 1,
        "patch nodes/status": 2,
        "watch nodes": 1,
      }, "start-up: one GET, one LIST (primes the watch), the annotations, the condition, one watch");
      assert.match(
        s.requests.find((r) => r.verb === "list")!.query,
        /resourceVersion=0/,
        "listed from the watch cache",
      );

      await t.step(
        "silent: kubelet heartbeats for 2 s (10 bookmark intervals) cost 0 requests and a comparison each",
        async () => {
          await sleep(300);
          const mark = s.mark(), before = { ops: ops.length, batches, logs: records.length };
          const events = src.watchStats!.events;
          const beats = startHeartbeats(s.store, names, 200);
          await sleep(2000);
          beats.stop();
          await sleep(300);
          assert.ok(beats.writes >= 100, `${beats.writes} heartbeats`);
          assert.ok(
            src.watchStats!.events - events >= beats.writes,
            "every heartbeat reached the agent as an event",
          );
          assert.deepEqual(s.counts(mark), {}, "not one request: the watch opened before is all");
          assert.equal(s.openWatches, 1);
          assert.deepEqual(
            { ops: ops.length, batches, logs: records.length },
            before,
            "no reconcile, no kernel operation, no log line for a heartbeat",
          );
          // A change weft routes on is not lost among them.
          const p = s.store.get(Node, "", "peer-3") as { metadata: { annotations: Record<string, string> } };
          p.metadata.annotations["flannel.alpha.coreos.com/public-ip"] = "192.168.78.200";
          s.store.update(Node, "", "peer-3", p);
          await until("the change reaches the kernel", () => ops.length > before.ops);
          assert.deepEqual(s.counts(mark), {});
        },
      );

      await t.step(
        "resume: watches closed by the server 3 times and a restart with history intact: 0 LISTs",
        async () => {
          const mark = s.mark();
          for (let i = 0; i < 3; i++) {
            const w = s.count({ verb: "watch" }, mark);
            s.closeWatches();
            await until("watch resumed", () => s.count({ verb: "watch", status: 200 }, mark) > w);
          }
          await s.restart({ downMs: 500 });
          s.store.create(Node, "", peer(50)); // made while the agent was away from the new server process
          await until(
            "the node made after the restart",
            () => ops.some((o) => o.includes("10.244.150.0/24")),
            15_000,
          );
          assert.equal(s.count({ verb: "list" }, mark), 0, "never listed");
          assert.equal(up, true);
        },
      );

      await t.step(
        "a restart that lost the history: exactly 1 LIST (rv=0), and the deletion made meanwhile is seen",
        async () => {
          const mark = s.mark();
          await s.stop();
          s.store.delete(Node, "", "peer-7");
          await s.restart({ loseHistory: true, downMs: 300 });
          await until("peer-7 removed", () => ops.includes("remove 10.244.107.0/24"), 15_000);
          assert.equal(s.count({ verb: "list" }, mark), 1);
          assert.match(s.requests.findLast((r) => r.verb === "list")!.query, /resourceVersion=0/);
        },
      );

      await t.step(
        "429 with Retry-After: 1 s is waited out between attempts; then it resumes without a LIST",
        async () => {
          await until("watching", () => s.openWatches === 1);
          const mark = s.mark();
          s.faults = { throttle: { share: 1, retryAfterSeconds: 1 } };
          s.closeWatches();
          await until("three throttled attempts", () => s.count({ status: 429 }, mark) >= 3, 15_000);
          s.faults = {};
          await until("resumed", () => s.count({ verb: "watch", status: 200 }, mark) >= 1, 15_000);
          const attempts = s.requests.filter((r) => r.seq > mark && r.verb === "watch").map((r) => r.at);
          const gaps = attempts.slice(1).map((a, i) => a - attempts[i]!);
          assert.ok(gaps.every((g) => g >= 950), `attempts closer than Retry-After: ${gaps}`);
          assert.equal(s.count({ verb: "list" }, mark), 0);
          // Everything in the store still arrives.
          s.store.create(Node, "", peer(51));
          await until("peer-51", () => ops.some((o) => o.includes("10.244.151.0/24")));
        },
      );

      await t.step(
        "black hole: the silent watch is declared dead, unanswered requests time out, no LIST after",
        async () => {
          await until("watching", () => s.openWatches === 1);
          const mark = s.mark();
          s.faults = { blackhole: true };
          await until("the watch is declared down", () => up === false, 5000);
          s.store.create(Node, "", peer(52)); // unseen while the server is a black hole
          await sleep(1500); // attempts time out (1 s) meanwhile
          assert.ok(s.count({ verb: "watch" }, mark) >= 1, "it tried again");
          assert.ok(!ops.some((o) => o.includes("10.244.152.0/24")));
          s.faults = {};
          await until(
            "back, and peer-52 arrives",
            () => up === true && ops.some((o) => o.includes("10.244.152.0/24")),
            15_000,
          );
          assert.equal(s.count({ verb: "list" }, mark), 0);
        },
      );

      await t.step("slow answers (300 ms each) are no failure", async () => {
        const mark = s.mark();
        const failures = records.filter((r) => r.level === "warning").length;
        s.faults = { delayMs: 300 };
        s.closeWatches();
        s.store.create(Node, "", peer(53));
        await until("peer-53", () => ops.some((o) => o.includes("10.244.153.0/24")));
        s.faults = {};
        assert.equal(s.count({ verb: "list" }, mark), 0);
        assert.equal(records.filter((r) => r.level === "warning").length, failures, "nothing to warn about");
      });

      await t.step("revoked credentials are reported with the cause; restored ones clear it", async () => {
        delete tokens.agent;
        s.closeWatches();
        await until("refused", () => refused !== undefined);
        assert.match(refused!, /refuses the agent's credentials .*Unauthorized.*renew it/);
        tokens.agent = "system:serviceaccount:kube-weft:weft";
        await until("accepted again", () => refused === undefined && up === true, 15_000);
      });

      stop.abort();
      await Promise.all([watching, keeping]);
    } finally {
      stop.abort();
      await src.close();
      await reset();
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "a kubelet's credentials (node authorizer: its own Node only) fail with the RBAC the agent needs",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using s = await startKubeApiServer({
      tls: true,
      tokens: { kubelet: "system:node:n1" },
      // Kubernetes 1.32's node authorizer, in small: a node may read and patch only its own Node.
      authorize: (a) => a.resource === "nodes" && a.name === "n1" && ["get", "patch"].includes(a.verb),
    });
    s.store.create(s.store.kindByName("Node"), "", {
      metadata: { name: "n1" },
      spec: { podCIDR: "10.244.1.0/24" },
    });
    const dir = await Deno.makeTempDir({ prefix: "weft-kube-nodeauthz-" });
    await Deno.writeTextFile(`${dir}/net-conf.json`, NET_CONF);
    const src = await agentSide(s, dir, "kubelet", "n1");
    try {
      await src.getNetworkConfig(); // its own Node: allowed
      await assert.rejects(
        src.listLeases(),
        (err: Error) => {
          assert.match(err.message, /forbids the agent to list nodes/);
          assert.match(err.message, /"list" and "watch" on "nodes"/);
          assert.match(
            err.message,
            /kubelet's credentials \(system:node:n1\).*node authorizer.*own ServiceAccount/,
          );
          return true;
        },
      );
    } finally {
      await src.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
