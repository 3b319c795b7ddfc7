import assert from "node:assert/strict";
import { nftRun, withNetns } from "../../ffi/mod.ts";
import { MemoryListWatch } from "../../tests/helpers/memory_list_watch.ts";
import { namespaceObject, podObject, policy } from "../../tests/helpers/netpol_cases.ts";
import { withScratchNetns } from "../../tests/helpers/scratch_netns.ts";
import { requireRoot } from "../../tests/helpers/topology.ts";
import { parseCIDR } from "../net/ip.ts";
import { POLICY_WATCH_PATHS as P, PolicyEnforcer, trimPod } from "./enforcer.ts";
import { listPolicyTable } from "./nft_table.ts";
import type { Pod } from "./types.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const NETS = [parseCIDR("10.244.1.0/24").net];

async function until(what: string, ok: () => boolean, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

const pod = (
  ns: string,
  name: string,
  ip: string,
  node = 0,
  labels: Record<string, string> = { pod: name },
) => podObject({ ns, name, labels, node }, ip);

function seed(api: MemoryListWatch): void {
  for (const ns of ["x", "y"]) api.put(P.namespaces, namespaceObject(ns, { ns }));
  api.put(P.pods, pod("x", "a", "10.244.1.10"));
  api.put(P.pods, pod("y", "b", "10.244.2.10", 1));
}

interface Ctx {
  e: PolicyEnforcer;
  ns: string;
  applied: number[];
  flushed: string[];
}

/** Runs `fn` with an enforcer for node-0 programming a scratch namespace; stops it afterwards. */
async function withEnforcer(
  api: MemoryListWatch,
  fn: (c: Ctx) => Promise<void>,
  before?: (ns: string) => void,
): Promise<void> {
  await withScratchNetns("enf", async (ns) => {
    before?.(ns);
    const applied: number[] = [], flushed: string[] = [];
    const e = new PolicyEnforcer(api, {
      nodeName: "node-0",
      inNetns: (f) => withNetns(ns, f),
      onApplied: (s) => applied.push(s),
      backoffMs: [20, 50],
      retryMs: [50, 200],
      flushConntrack: (ips) => (flushed.push(...ips), Promise.resolve(0)),
    });
    const ctl = new AbortController();
    const running = e.run(ctl.signal, NETS);
    try {
      await fn({ e, ns, applied, flushed });
    } finally {
      ctl.abort();
      await running;
    }
  });
}

const table = (ns: string) => withNetns(ns, () => listPolicyTable()) ?? "";
const inMap = (ns: string, ip: string) =>
  new RegExp(`${ip.replaceAll(".", "\\.")} : goto in/`).test(table(ns));
const pendingOf = (ns: string) =>
  table(ns).match(/set pending4 \{\n\t\ttype ipv4_addr\n(?:\t\telements = \{ ([^}]*) \})?/)?.[1] ?? "";

Deno.test("trimPod() keeps what policy reads and drops the rest", () => {
  const p = pod("x", "a", "10.244.1.10");
  p.metadata.creationTimestamp = "2026-01-01T00:00:00Z";
  const fat = {
    ...p,
    metadata: { ...p.metadata, annotations: { big: "x".repeat(1000) }, managedFields: [{}] },
    spec: { ...p.spec, volumes: [{ name: "v" }] },
  };
  const slim = trimPod(fat) as Pod;
  assert.deepEqual(slim.metadata.labels, { pod: "a" });
  assert.equal(slim.metadata.creationTimestamp, "2026-01-01T00:00:00Z", "newest-wins needs it");
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
  name: "at start, before every kind is listed: no table → every pod held; a previous run's table stays",
  ignore: requireRoot(),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const api = new MemoryListWatch();
    seed(api);
    api.put(P.policies, policy("x", "deny", { podSelector: {} }));
    api.setDown(true);
    await withEnforcer(api, async ({ e, ns }) => {
      await until("the start-up table", () => table(ns).includes("@podnet4 ip daddr != @known4"));
      assert.equal(e.synced, false);
      assert.doesNotMatch(table(ns), /goto/, "nothing known: every pod of 10.244.1.0/24 is held");
      api.setDown(false);
      await until("the first install", () => e.stats.updates === 1);
      assert.ok(inMap(ns, "10.244.1.10"), "x/a isolated");
    });
    // A second run finds that table and keeps it until its own first install.
    api.setDown(true);
    await withScratchNetns("enf2", async (ns) => {
      const e1 = new PolicyEnforcer(api, { nodeName: "node-0", inNetns: (f) => withNetns(ns, f) });
      api.setDown(false);
      const c1 = new AbortController();
      const r1 = e1.run(c1.signal, NETS);
      await until("installed", () => e1.stats.updates === 1);
      c1.abort();
      await r1;
      const left = table(ns);
      api.setDown(true);
      const e2 = new PolicyEnforcer(api, {
        nodeName: "node-0",
        inNetns: (f) => withNetns(ns, f),
        backoffMs: [20, 50],
      });
      const c2 = new AbortController();
      const lists = api.calls.list;
      const r2 = e2.run(c2.signal, NETS);
      // Not a fixed wait: each of the three informers tried, and failed, to list twice.
      await until("each informer failed to list twice", () => api.calls.list >= lists + 6);
      assert.equal(e2.synced, false);
      assert.equal(table(ns), left, "unreachable API at start: the last rules stay");
      c2.abort();
      await r2;
      assert.ok(inMap(ns, "10.244.1.10"), "stopping the agent leaves the rules in force");
    });
  },
});

Deno.test({
  name:
    "a burst is installed in few runs at least 100 ms apart; a result already installed costs no nft call",
  ignore: requireRoot(),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const api = new MemoryListWatch();
    seed(api);
    await withEnforcer(api, async ({ e, ns, applied }) => {
      await until("synced", () => e.stats.updates === 1);
      const starts: number[] = [];
      const orig = e.table.apply.bind(e.table);
      e.table.apply = (spec) => (starts.push(performance.now()), orig(spec));
      for (let i = 0; i < 200; i++) {
        api.put(P.pods, pod("x", `p${i}`, `10.244.1.${40 + i}`, 0, { pod: "p" }));
        if (i % 20 === 0) await sleep(5); // events arrive over time, as from a watch
      }
      api.put(P.policies, policy("x", "deny", { podSelector: { matchLabels: { pod: "p" } } }));
      await until("every pod in", () => e.stats.isolatedPods === 200 && inMap(ns, "10.244.1.239"));
      for (let i = 1; i < starts.length; i++) {
        assert.ok(starts[i]! - starts[i - 1]! >= 99, `runs ${starts[i]! - starts[i - 1]!} ms apart`);
      }
      assert.ok(starts.length < 201, `${starts.length} runs for 201 events`);
      const updates = e.stats.updates, unchanged = e.stats.unchanged;
      // A label nobody selects on: recompiled, nothing to install.
      api.put(P.pods, pod("y", "b", "10.244.2.10", 1, { pod: "b", unrelated: "1" }));
      await until("recompiled", () => e.stats.unchanged === unchanged + 1);
      assert.equal(e.stats.updates, updates, "no install");
      assert.ok(applied.length >= 2);
    });
  },
});

Deno.test({
  name:
    "a registered pod is held from the registration until its rules are in; unselectable ones open at once",
  ignore: requireRoot(),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const api = new MemoryListWatch();
    seed(api);
    api.put(
      P.policies,
      policy("x", "web", {
        podSelector: { matchLabels: { pod: "new" } },
        ingress: [{ ports: [{ port: 80 }] }],
      }),
    );
    await withEnforcer(api, async ({ e, ns, flushed }) => {
      await until("synced", () => e.stats.updates === 1);
      // The API has not heard of x/new yet (kubelet is slow): held.
      const r = await e.register({ namespace: "x", name: "new", containerId: "c1", ips: ["10.244.1.20"] });
      assert.deepEqual(r, { state: "held", ips: ["10.244.1.20"] });
      assert.equal(pendingOf(ns), "10.244.1.20");
      assert.deepEqual(flushed, [], "an address nobody held has no connections to flush");
      // The Pod object arrives, without an address yet: its rules come from the registration.
      const p = pod("x", "new", "", 0, { pod: "new" });
      p.status = { phase: "Pending" };
      api.put(P.pods, p);
      await until("released with its rules", () => pendingOf(ns) === "" && inMap(ns, "10.244.1.20"));
      // A pod in a namespace without policies is open as soon as it is registered, known or not.
      const y = await e.register({ namespace: "y", name: "fresh", containerId: "c2", ips: ["10.244.1.21"] });
      assert.equal(y.state, "open");
      assert.match(table(ns), /10\.244\.1\.21 comment "y\/fresh"/);
      // Not from this node's subnet: refused.
      await assert.rejects(
        () => e.register({ containerId: "c3", ips: ["10.9.9.9"] }),
        /not in this node's pod subnets/,
      );
      assert.equal(e.stats.registrations, 2);
    });
  },
});

Deno.test({
  name: "a reused address starts from its new pod's verdict: old connections flushed, newest claim wins",
  ignore: requireRoot(),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const api = new MemoryListWatch();
    seed(api);
    api.put(P.policies, policy("x", "deny-old", { podSelector: { matchLabels: { pod: "old" } } }));
    const old = pod("x", "old", "10.244.1.30", 0, { pod: "old" });
    old.metadata.creationTimestamp = "2026-01-01T00:00:00Z";
    api.put(P.pods, old);
    await withEnforcer(api, async ({ e, ns, flushed }) => {
      await until("synced", () => e.stats.updates === 1 && inMap(ns, "10.244.1.30"));
      // x/old is gone for kubelet but its object lingers; IPAM gives its address to y/next (no policy).
      const r = await e.register({ namespace: "y", name: "next", containerId: "c9", ips: ["10.244.1.30"] });
      assert.deepEqual(flushed, ["10.244.1.30"], "the address's old connections were flushed");
      // The registration waited for the install that took it in (unless a loaded machine made it wait longer).
      // Duplicates are counted when the rules are compiled, before nft has them: wait for the table.
      await until(
        "installed",
        () => e.stats.duplicates === 1 && table(ns).includes('10.244.1.30 comment "y/next"'),
      );
      assert.equal(r.state === "open" || r.state === "held", true);
      assert.ok(!inMap(ns, "10.244.1.30"), "x/old's isolation no longer applies to the address");
      assert.match(table(ns), /10\.244\.1\.30 comment "y\/next"/, "the newest claim wins: y/next, open");
      assert.equal(e.stats.duplicatesTotal, 1);
      // Two API pods on one address (a deleted pod's status lingering): the newer keeps it, no failure.
      const a = pod("x", "twin-a", "10.244.1.31", 0, { pod: "old" });
      a.metadata.creationTimestamp = "2026-01-01T00:00:00Z";
      const b = pod("y", "twin-b", "10.244.1.31", 0, { pod: "b" });
      b.metadata.creationTimestamp = "2026-02-01T00:00:00Z";
      api.put(P.pods, a);
      api.put(P.pods, b);
      await until(
        "resolved",
        () => e.stats.duplicates === 2 && table(ns).includes('10.244.1.31 comment "y/twin-b"'),
      );
      assert.equal(e.stats.failedUnits, 0);
      assert.match(table(ns), /10\.244\.1\.31 comment "y\/twin-b"/);
      assert.ok(!inMap(ns, "10.244.1.31"), "y/twin-b, the newer, is not isolated");
      // The old pod's object goes: nothing left to flush twice.
      const before = flushed.length;
      api.delete(P.pods, "x/old");
      await until("installed", () => !table(ns).includes('"x/old"'));
      assert.ok(!flushed.slice(before).includes("10.244.1.30"), "y/next keeps .30: nothing to flush");
      api.delete(P.pods, "y/twin-b");
      await until("x/twin-a takes the address", () => inMap(ns, "10.244.1.31"));
      await until("changed hands: flushed", () => flushed.slice(before).includes("10.244.1.31"));
    });
  },
});

Deno.test({
  name: "an entry nft refuses is retried alone, once per back-off, while other changes go in",
  ignore: requireRoot(),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const api = new MemoryListWatch();
    seed(api);
    api.put(P.policies, policy("x", "deny", { podSelector: {} }));
    await withEnforcer(api, async ({ e, ns }) => {
      await until("synced", () => e.stats.updates === 1);
      // A stray element where x/c's will go: nft refuses x/c's ("File exists").
      withNetns(ns, () => nftRun("add element inet weft-policy ingress4 { 10.244.1.11 : drop }\n"));
      api.put(P.pods, pod("x", "c", "10.244.1.11"));
      api.put(P.pods, pod("x", "d", "10.244.1.12"));
      await until("refused", () => e.stats.failedUnits === 1);
      assert.ok(inMap(ns, "10.244.1.12"), "x/d is in nevertheless");
      const failures = e.stats.failures;
      // More changes while the retry waits: they go in; the retries do not multiply.
      for (let i = 0; i < 5; i++) api.put(P.pods, pod("x", `e${i}`, `10.244.1.${50 + i}`));
      await until("the others in", () => inMap(ns, "10.244.1.54"));
      await sleep(300);
      assert.ok(e.stats.failures - failures <= 6, `${e.stats.failures - failures} failed runs`);
      withNetns(ns, () => nftRun("delete element inet weft-policy ingress4 { 10.244.1.11 }\n"));
      await until("the retry puts x/c in", () => inMap(ns, "10.244.1.11") && e.stats.failedUnits === 0);
    });
  },
});

Deno.test({
  name: "an unreachable API keeps the rules in force; changes made meanwhile are installed on return",
  ignore: requireRoot(),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const api = new MemoryListWatch();
    seed(api);
    api.put(P.policies, policy("x", "deny", { podSelector: {} }));
    await withEnforcer(api, async ({ e, ns }) => {
      await until("synced", () => e.stats.updates === 1);
      const enforced = table(ns);
      api.setDown(true);
      await until("the informers notice", () => !e.apiUp);
      api.delete(P.policies, "x/deny"); // made while the agent cannot see it
      api.put(P.policies, policy("y", "deny", { podSelector: {} }));
      const tries = api.calls.list + api.calls.watch;
      await until("the informers tried the API again", () => api.calls.list + api.calls.watch >= tries + 3);
      assert.equal(table(ns), enforced, "fail closed: x/a stays isolated while the API is away");
      api.setDown(false);
      await until("re-listed and installed", () => e.stats.updates === 2);
      await until("every informer back", () => e.apiUp);
      assert.ok(!inMap(ns, "10.244.1.10"), "the deletion made meanwhile is seen");
      assert.equal(e.stats.isolatedPods, 0, "y/b runs on node-1: nothing isolated here");
    });
  },
});

Deno.test({
  name: "an unenforceable policy is reported once and counted; the other policies are enforced",
  ignore: requireRoot(),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const api = new MemoryListWatch();
    seed(api);
    api.put(
      P.policies,
      policy("x", "icmp", { podSelector: {}, ingress: [{ ports: [{ protocol: "ICMP" }] }] }),
    );
    api.put(P.policies, policy("x", "web", { podSelector: {}, ingress: [{ ports: [{ port: 80 }] }] }));
    await withEnforcer(api, async ({ e, ns }) => {
      await until("synced", () => e.stats.updates === 1);
      assert.equal(e.stats.problemsSeen, 1);
      assert.deepEqual(e.problems.map((p) => `${p.policy} ${p.path}`), [
        "x/icmp spec.ingress[0].ports[0].protocol",
      ]);
      assert.match(
        table(ns),
        /tcp dport 80 counter packets 0 bytes 0 accept comment "x\/web ingress\[0\] tcp\/80"/,
      );
      api.put(P.pods, pod("x", "c", "10.244.1.11"));
      await until("the next install", () => e.stats.updates === 2);
      assert.equal(e.stats.problemsSeen, 1, "the same problem is not reported again");
    });
  },
});

Deno.test({
  name: "resync re-installs a deleted policy table and turns br_netfilter back on",
  ignore: requireRoot(),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const api = new MemoryListWatch();
    seed(api);
    api.put(P.policies, policy("x", "deny", { podSelector: {} }));
    await withEnforcer(api, async ({ e, ns }) => {
      await until("synced", () => e.stats.updates === 1);
      assert.equal(await e.resync(), "unchanged");
      assert.equal(e.stats.bridgeNetfilter, 1);
      withNetns(ns, () => {
        nftRun("delete table inet weft-policy\n");
        Deno.writeTextFileSync("/proc/sys/net/bridge/bridge-nf-call-iptables", "0");
      });
      assert.equal(await e.resync(), "repaired");
      assert.equal(e.stats.repairs, 2);
      assert.ok(inMap(ns, "10.244.1.10"));
      const v = withNetns(
        ns,
        () => Deno.readTextFileSync("/proc/sys/net/bridge/bridge-nf-call-iptables").trim(),
      );
      assert.equal(v, "1");
    });
  },
});
