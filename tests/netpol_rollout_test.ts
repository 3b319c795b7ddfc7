/**
 * A 1000-pod rollout on one node, as the agent's policy loop lives it: the enforcer against the test API
 * server (a real HTTP watch), programming a scratch namespace's kernel, without 1000 real pods. Waves of
 * 50: the new pods' objects are created, CNI ADD registers them (50 at once), kubelet reports their
 * addresses, the old pods are deleted — and a few new pods get an address whose old pod's object still
 * lingers (deleted a wave later), the duplicates a real rollout makes.
 *
 * What must hold: the table never stops updating (after every wave it holds exactly the live pods, every
 * new pod isolated by its policies, none left pending); reused addresses go to the new pods; nothing is
 * refused; installs start at least 100 ms apart and are far fewer than the events; the API is listed
 * once per kind and watched, never re-listed. The time from registration to enforcement is printed (the
 * bench plots it: bench/policy_scale.ts).
 */
import assert from "node:assert/strict";
import { nftRun, withNetns } from "../ffi/mod.ts";
import { KubeClient } from "../src/kube/client.ts";
import { parseCIDR } from "../src/net/ip.ts";
import { compilePolicies } from "../src/policy/compile.ts";
import { POLICY_WATCH_PATHS, PolicyEnforcer } from "../src/policy/enforcer.ts";
import { renderPolicyTable } from "../src/policy/nft_render.ts";
import { canonicalListing, listPolicyTable } from "../src/policy/nft_table.ts";
import type { Pod } from "../src/policy/types.ts";
import { startKubeApiServer } from "./helpers/kube_api_server.ts";
import { namespaceObject, podObject, policy } from "./helpers/netpol_cases.ts";
import { withScratchNetns } from "./helpers/scratch_netns.ts";
import { requireRoot } from "./helpers/topology.ts";

const PODS = 1000, WAVE = 50, REUSED_PER_WAVE = 5;
const NETS = [parseCIDR("10.244.0.0/20").net];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, ok: () => boolean, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

const ipOf = (n: number) => `10.244.${(n >> 8) & 15}.${n & 255}`;
const pct = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))]!;

Deno.test({
  name: "a 1000-pod rollout: the table never stops updating, reused addresses go to the new pods",
  ignore: requireRoot(),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using api = await startKubeApiServer({ bookmarkMs: 1000 });
    const s = api.store, Pod = s.kindByName("Pod"), NetPol = s.kindByName("NetworkPolicy");
    for (const ns of ["app", "clients", "other"]) {
      s.create(s.kindByName("Namespace"), "", namespaceObject(ns, { ns }));
    }
    s.create(NetPol, "app", policy("app", "default-deny", { podSelector: {}, policyTypes: ["Ingress"] }));
    s.create(
      NetPol,
      "app",
      policy("app", "web", {
        podSelector: { matchLabels: { tier: "web" } },
        ingress: [{
          from: [{ namespaceSelector: { matchLabels: { ns: "clients" } } }],
          ports: [{ port: 80 }],
        }],
      }),
    );
    s.create(
      NetPol,
      "app",
      policy("app", "db", {
        podSelector: { matchLabels: { tier: "db" } },
        ingress: [{ from: [{ podSelector: { matchLabels: { tier: "web" } } }], ports: [{ port: 5432 }] }],
      }),
    );
    for (let i = 0; i < 20; i++) {
      s.create(
        NetPol,
        "other",
        policy("other", `p${i}`, { podSelector: { matchLabels: { n: `${i}` } }, ingress: [] }),
      );
    }
    for (let i = 0; i < 100; i++) {
      s.create(
        Pod,
        "clients",
        podObject({ ns: "clients", name: `c${i}`, labels: { app: "c" }, node: 1 }, `10.244.32.${i + 10}`),
      );
    }
    const live = new Map<string, string>(); // app pod → address
    const make = (name: string, version: string, i: number, ip?: string): Pod => {
      const p = podObject(
        { ns: "app", name, labels: { tier: i % 5 === 0 ? "db" : "web", version }, node: 0 },
        ip ?? "",
      );
      if (!ip) p.status = { phase: "Pending" };
      return p;
    };
    for (let i = 0; i < PODS; i++) {
      s.create(Pod, "app", make(`old-${i}`, "v1", i, ipOf(16 + i)));
      live.set(`old-${i}`, ipOf(16 + i));
    }
    const client = new KubeClient({ server: api.url, source: "test" });
    await withScratchNetns("rol", async (ns) => {
      let flushed = 0;
      const starts: number[] = [];
      const e = new PolicyEnforcer(client, {
        nodeName: "node-0",
        inNetns: (f) => withNetns(ns, f),
        flushConntrack: (ips) => (flushed += ips.length, Promise.resolve(0)),
        onRun: () => starts.push(performance.now()),
      });
      const ctl = new AbortController();
      const running = e.run(ctl.signal, NETS);
      const mark = api.requests.length;
      try {
        await until("the 1000 pods in", () => e.stats.isolatedPods === PODS, 60_000);
        const installed = () => e.table.installed!;
        const inTable = (ip: string) =>
          installed().sets.get("ingress4")!.elements.has(ip) &&
          !installed().sets.get("pending4")!.elements.has(ip);
        const toEnforce: number[] = [];
        let next = 16 + PODS, lingering: string[] = [];
        for (let w = 0; w < PODS / WAVE; w++) {
          // The old pods whose addresses are handed out again in this wave: gone for kubelet, not yet for the API.
          const dying = Array.from({ length: WAVE }, (_, k) => `old-${w * WAVE + k}`);
          const reused = dying.slice(0, REUSED_PER_WAVE).map((p) => live.get(p)!);
          const wave = Array.from({ length: WAVE }, (_, k) => {
            const i = w * WAVE + k;
            return { name: `new-${i}`, i, ip: k < REUSED_PER_WAVE ? reused[k]! : ipOf(next++) };
          });
          for (const p of wave) s.create(Pod, "app", make(p.name, "v2", p.i));
          const t0 = performance.now();
          const answers = await Promise.all(
            wave.map((p) =>
              e.register({ namespace: "app", name: p.name, containerId: `c-${p.name}`, ips: [p.ip] }).then(
                (r) => {
                  return r.state;
                },
              )
            ),
          );
          assert.ok(answers.every((a) => a === "enforced" || a === "held"), answers.join(","));
          for (const p of wave) {
            const cur = s.get(Pod, "app", p.name) as Record<string, unknown>;
            s.update(Pod, "app", p.name, {
              ...cur,
              status: { phase: "Running", podIP: p.ip, podIPs: [{ ip: p.ip }] },
            }, "status");
            live.set(p.name, p.ip);
          }
          // The previous wave's lingering objects go now; this wave's reused ones linger until the next.
          for (const name of lingering) s.delete(Pod, "app", name);
          lingering = dying.slice(0, REUSED_PER_WAVE);
          for (const name of dying) {
            live.delete(name);
            if (!lingering.includes(name)) s.delete(Pod, "app", name);
          }
          const pending = new Set(wave.map((p) => p.ip));
          while (pending.size) {
            for (const ip of [...pending]) {
              if (inTable(ip)) {
                toEnforce.push(performance.now() - t0);
                pending.delete(ip);
              }
            }
            if (performance.now() - t0 > 30_000) {
              throw new Error(`wave ${w}: ${[...pending].join(",")} never enforced`);
            }
            await sleep(5);
          }
        }
        for (const name of lingering) s.delete(Pod, "app", name);
        const want = new Set(live.values());
        await until("exactly the live pods", () => {
          const known = [...installed().sets.get("known4")!.elements.keys()].filter((ip) =>
            ip.startsWith("10.244.") && !ip.startsWith("10.244.32.")
          );
          return known.length === want.size && known.every((ip) => want.has(ip)) && e.stats.duplicates === 0;
        });
        // The kernel holds what a fresh install of the final state would.
        const rs = compilePolicies({
          policies: e.policies.store.values(),
          pods: e.pods.store.values(),
          namespaces: e.namespaces.store.values(),
          nodeName: "node-0",
        });
        const kernel = canonicalListing(withNetns(ns, () => listPolicyTable())!);
        const expected = await withScratchNetns("rof", (f) =>
          withNetns(f, () => {
            nftRun(renderPolicyTable(rs, { podNets: NETS }));
            return canonicalListing(listPolicyTable()!);
          }));
        assert.deepEqual(kernel, expected);

        console.log(
          `    ${starts.length} runs (${e.stats.updates} installs) for ${
            2 * PODS + PODS
          } pod events; registration → enforced p50 ${Math.round(pct(toEnforce, 0.5))} ms, p99 ${
            Math.round(pct(toEnforce, 0.99))
          } ms; duplicates seen ${e.stats.duplicatesTotal}; ` +
            `flushed addresses ${flushed}`,
        );
        assert.equal(e.stats.failedUnits, 0);
        assert.equal(e.stats.failures, 0);
        assert.ok(
          e.stats.duplicatesTotal >= (PODS / WAVE) * REUSED_PER_WAVE,
          `${e.stats.duplicatesTotal} duplicates`,
        );
        for (let i = 1; i < starts.length; i++) {
          assert.ok(
            starts[i]! - starts[i - 1]! >= 99,
            `runs ${Math.round(starts[i]! - starts[i - 1]!)} ms apart`,
          );
        }
        assert.ok(starts.length < PODS, `${starts.length} runs`);
        // A list's further pages (continue=) belong to the same list.
        const lists = api.requests.slice(mark).filter((r) =>
          r.method === "GET" && !r.query.includes("watch") && !r.query.includes("continue=")
        );
        assert.deepEqual(
          lists.map((r) => r.path).sort(),
          Object.values(POLICY_WATCH_PATHS).sort(),
          "one list per kind, no re-list",
        );
      } finally {
        ctl.abort();
        await running;
        client.close();
      }
    });
  },
});
