import assert from "node:assert/strict";
import { withNetns } from "../../ffi/mod.ts";
import { MemoryListWatch } from "../../tests/helpers/memory_list_watch.ts";
import { namespaceObject, podObject, policy } from "../../tests/helpers/netpol_cases.ts";
import { withScratchNetns } from "../../tests/helpers/scratch_netns.ts";
import { requireRoot } from "../../tests/helpers/topology.ts";
import { POLICY_WATCH_PATHS as P, PolicyEnforcer, trimPod } from "./enforcer.ts";
import { listPolicyTable, PolicyTable } from "./nft_table.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, ok: () => boolean, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

function seed(api: MemoryListWatch): void {
  for (const ns of ["x", "y"]) api.put(P.namespaces, namespaceObject(ns, { ns }));
  api.put(P.pods, podObject({ ns: "x", name: "a", labels: { pod: "a" }, node: 0 }, "10.244.1.10"));
  api.put(P.pods, podObject({ ns: "y", name: "b", labels: { pod: "b" }, node: 1 }, "10.244.2.10"));
}

/** Runs `fn` with an enforcer for node-0 programming a scratch namespace; stops it afterwards. */
async function withEnforcer(
  api: MemoryListWatch,
  fn: (e: PolicyEnforcer, ns: string, applied: number[]) => Promise<void>,
): Promise<void> {
  await withScratchNetns("enf", async (ns) => {
    const applied: number[] = [];
    const e = new PolicyEnforcer(api, {
      nodeName: "node-0",
      inNetns: (f) => withNetns(ns, f),
      onApplied: (s) => applied.push(s),
      backoffMs: [20, 50],
    });
    const ctl = new AbortController();
    const running = e.run(ctl.signal);
    try {
      await fn(e, ns, applied);
    } finally {
      ctl.abort();
      await running;
    }
  });
}

const table = (ns: string) => withNetns(ns, () => listPolicyTable());

Deno.test("trimPod() keeps what policy reads and drops the rest", () => {
  const pod = podObject({ ns: "x", name: "a", labels: { pod: "a" }, node: 0 }, "10.244.1.10");
  const fat = {
    ...pod,
    metadata: { ...pod.metadata, annotations: { big: "x".repeat(1000) }, managedFields: [{}] },
    spec: { ...pod.spec, volumes: [{ name: "v" }] },
  };
  const slim = trimPod(fat) as typeof pod;
  assert.deepEqual(slim.metadata.labels, { pod: "a" });
  assert.equal(slim.spec?.nodeName, "node-0");
  assert.deepEqual(slim.spec?.containers?.[0]?.ports?.[0], {
    name: "serve-80-tcp",
    containerPort: 80,
    protocol: "TCP",
  });
  assert.deepEqual(slim.status?.podIPs, [{ ip: "10.244.1.10" }]);
  assert.ok(!JSON.stringify(slim).includes("big") && !JSON.stringify(slim).includes("volumes"));
});

Deno.test({
  name: "the enforcer installs nothing before every kind is listed; a previous run's table stays meanwhile",
  ignore: requireRoot(),
  async fn() {
    const api = new MemoryListWatch();
    seed(api);
    api.put(P.policies, policy("x", "deny", { podSelector: {} }));
    api.setDown(true);
    await withScratchNetns("enf", async (ns) => {
      // The table an earlier agent left: x/a isolated with nothing allowed.
      withNetns(ns, () =>
        new PolicyTable().apply({
          pods: [{
            namespace: "x",
            name: "old",
            ips: ["10.244.1.99"],
            ingress: { policies: ["x/old"], rules: [] },
          }],
          unrestricted: [],
          problems: [],
        }));
      const before = table(ns);
      const e = new PolicyEnforcer(api, {
        nodeName: "node-0",
        inNetns: (f) => withNetns(ns, f),
        backoffMs: [20, 50],
      });
      const ctl = new AbortController();
      const running = e.run(ctl.signal);
      await until("each informer failed to list twice", () => api.calls.list >= 6);
      assert.equal(e.synced, false);
      assert.equal(table(ns), before, "unreachable API at start: the last rules stay");
      api.setDown(false);
      await until("the first install", () => e.stats.updates === 1);
      assert.match(table(ns)!, /10\.244\.1\.10 : goto in\/x\/a/);
      assert.doesNotMatch(table(ns)!, /x\/old/);
      ctl.abort();
      await running;
      assert.match(table(ns)!, /goto in\/x\/a/, "stopping the agent leaves the rules in force");
    });
  },
});

Deno.test({
  name: "a burst of changes is compiled and installed once, after the last of them",
  ignore: requireRoot(),
  async fn() {
    const api = new MemoryListWatch();
    seed(api);
    await withEnforcer(api, async (e, ns, applied) => {
      await until("synced", () => e.stats.updates === 1);
      for (let i = 0; i < 50; i++) {
        api.put(
          P.pods,
          podObject({ ns: "x", name: `p${i}`, labels: { pod: "p" }, node: 0 }, `10.244.1.${100 + i}`),
        );
      }
      api.put(P.policies, policy("x", "deny", { podSelector: { matchLabels: { pod: "p" } } }));
      await until("the second install", () => e.stats.updates === 2);
      assert.equal(e.stats.isolatedPods, 50);
      assert.match(table(ns)!, /10\.244\.1\.149 : goto in\/x\/p49/);
      assert.equal(applied.length, 2);
      assert.ok(applied[1]! > 0 && applied[1]! < 60, `latency ${applied[1]} (seconds, not ms)`);
      // One more change, installed by itself: had the burst left an install behind, it would show now.
      api.put(P.pods, podObject({ ns: "x", name: "p50", labels: { pod: "p" }, node: 0 }, "10.244.1.150"));
      await until("the third install", () => /10\.244\.1\.150 : goto in\/x\/p50/.test(table(ns) ?? ""));
      assert.equal(e.stats.updates, 3, "51 events, one install; then one event, one install");
    });
  },
});

Deno.test({
  name: "an unreachable API keeps the rules in force; changes made meanwhile are installed on return",
  ignore: requireRoot(),
  async fn() {
    const api = new MemoryListWatch();
    seed(api);
    api.put(P.policies, policy("x", "deny", { podSelector: {} }));
    await withEnforcer(api, async (e, ns) => {
      await until("synced", () => e.stats.updates === 1);
      const enforced = table(ns);
      api.setDown(true);
      await until("the informers notice", () => !e.apiUp);
      api.delete(P.policies, "x/deny"); // made while the agent cannot see it
      api.put(P.policies, policy("y", "deny", { podSelector: {} }));
      const calls = () => api.calls.list + api.calls.watch;
      const before = calls();
      await until("the informers tried the API again", () => calls() >= before + 3);
      assert.equal(table(ns), enforced, "fail closed: x/a stays isolated while the API is away");
      api.setDown(false);
      await until("re-listed and installed", () => e.stats.updates === 2);
      // The policies' re-list alone may install (the deletion made meanwhile): the other informers
      // reconnect on their own back-off, in any order.
      await until("every informer connected again", () => e.apiUp);
      assert.doesNotMatch(table(ns)!, /goto in\/x\/a/, "the deletion made meanwhile is seen");
      assert.equal(e.stats.isolatedPods, 0, "y/b runs on node-1: nothing isolated here");
    });
  },
});

Deno.test({
  name: "an unenforceable policy is reported once and counted; the other policies are enforced",
  ignore: requireRoot(),
  async fn() {
    const api = new MemoryListWatch();
    seed(api);
    api.put(
      P.policies,
      policy("x", "icmp", { podSelector: {}, ingress: [{ ports: [{ protocol: "ICMP" }] }] }),
    );
    api.put(P.policies, policy("x", "web", { podSelector: {}, ingress: [{ ports: [{ port: 80 }] }] }));
    await withEnforcer(api, async (e, ns) => {
      await until("synced", () => e.stats.updates === 1);
      assert.equal(e.stats.problemsSeen, 1);
      assert.deepEqual(e.problems.map((p) => `${p.policy} ${p.path}`), [
        "x/icmp spec.ingress[0].ports[0].protocol",
      ]);
      assert.match(
        table(ns)!,
        /tcp dport 80 counter packets 0 bytes 0 accept comment "x\/web ingress\[0\] tcp\/80"/,
      );
      api.put(P.pods, podObject({ ns: "x", name: "c", labels: {}, node: 0 }, "10.244.1.11"));
      await until("the next install", () => e.stats.updates === 2);
      assert.equal(e.stats.problemsSeen, 1, "the same problem is not reported again");
    });
  },
});

Deno.test({
  name: "resync re-installs a deleted policy table and turns br_netfilter back on",
  ignore: requireRoot(),
  async fn() {
    const api = new MemoryListWatch();
    seed(api);
    api.put(P.policies, policy("x", "deny", { podSelector: {} }));
    await withEnforcer(api, async (e, ns) => {
      await until("synced", () => e.stats.updates === 1);
      assert.equal(e.resync(), "unchanged");
      withNetns(ns, () => {
        new PolicyTable().remove();
        Deno.writeTextFileSync("/proc/sys/net/bridge/bridge-nf-call-iptables", "0");
      });
      assert.equal(e.resync(), "repaired");
      assert.equal(e.stats.repairs, 2);
      assert.match(table(ns)!, /goto in\/x\/a/);
      const v = withNetns(
        ns,
        () => Deno.readTextFileSync("/proc/sys/net/bridge/bridge-nf-call-iptables").trim(),
      );
      assert.equal(v, "1");
    });
  },
});
