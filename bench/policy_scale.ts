/**
 * Network policy at scale, on one node (a scratch network namespace, the real kernel):
 *
 * 1. **Install**: pods × policies (100, 1000, 5000 pods on this node × 50 and 500 policies, 20
 *    namespaces, 500 peers on another node): compile time, the first (whole-table) install, the rules and
 *    set elements in the table, the longest event-loop stall during the install (nft runs off the JS
 *    thread), then one new pod and one changed policy as differences. References in the same run: the
 *    whole-table install beside a one-pod difference (ratio), and the rules the layout before (per-pod
 *    copies of every policy rule, counted from the same rule set) would have had.
 * 2. **Rollout**: 1000 pods on the node, replaced in waves of 50 (CNI registers each, kubelet reports its
 *    address, the old pods go, a few addresses reused while the old object lingers), through the test API
 *    server's real watch, with real conntrack flushes: each new pod's time from its registration to its
 *    rules in the kernel. Reference in the same run: a plain API watcher's delay for the same writes.
 *    Plotted with gnuplot (bench/results/policy_rollout.png).
 *
 * Run: `deno run -A bench/policy_scale.ts [--only install|rollout]`. Needs root, nft, gnuplot for the
 * plot. Writes bench/results/policy_scale.csv, policy_rollout.csv and .png.
 *
 * @module
 */
import { withNetns } from "../ffi/mod.ts";
import { KubeClient } from "../src/kube/client.ts";
import { parseCIDR } from "../src/net/ip.ts";
import { compilePolicies } from "../src/policy/compile.ts";
import { PolicyEnforcer } from "../src/policy/enforcer.ts";
import { buildTableSpec, EMPTY_RULES } from "../src/policy/nft_render.ts";
import { listPolicyTableAsync, PolicyTable } from "../src/policy/nft_table.ts";
import type { RuleSet } from "../src/policy/rule_set.ts";
import type { Namespace, NetworkPolicy, Pod } from "../src/policy/types.ts";
import { startKubeApiServer } from "../tests/helpers/kube_api_server.ts";
import { namespaceObject, podObject, policy } from "../tests/helpers/netpol_cases.ts";
import { withScratchNetns } from "../tests/helpers/scratch_netns.ts";

const OUT = new URL("./results/", import.meta.url).pathname;
const NETS = [parseCIDR("10.244.0.0/18").net];
const only = Deno.args.includes("--only") ? Deno.args[Deno.args.indexOf("--only") + 1] : undefined;
const ipOf = (n: number) => `10.244.${(n >> 8) & 63}.${n & 255}`;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const pct = (xs: number[], p: number) =>
  [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))]!;

/** Longest gap between ticks of a 1 ms timer while `fn` runs: how long the event loop stalled. */
async function stall<T>(fn: () => Promise<T>): Promise<[T, number]> {
  let last = performance.now(), max = 0;
  const t = setInterval(() => {
    const now = performance.now();
    max = Math.max(max, now - last);
    last = now;
  }, 1);
  try {
    const r = await fn();
    return [r, Math.max(max, performance.now() - last)];
  } finally {
    clearInterval(t);
  }
}

/** A cluster: 20 namespaces, `pods` pods on node-0, 500 peers on node-1, `n` policies of mixed kinds. */
function cluster(
  pods: number,
  n: number,
): { policies: NetworkPolicy[]; pods: Pod[]; namespaces: Namespace[] } {
  const namespaces = Array.from({ length: 20 }, (_, i) => namespaceObject(`ns-${i}`, { team: `t${i % 4}` }));
  const podList: Pod[] = [];
  for (let i = 0; i < pods; i++) {
    podList.push(
      podObject({
        ns: `ns-${i % 20}`,
        name: `p${i}`,
        labels: { app: `a${i % 25}`, tier: i % 3 ? "web" : "db" },
        node: 0,
      }, ipOf(16 + i)),
    );
  }
  for (let i = 0; i < 500; i++) {
    podList.push(
      podObject(
        { ns: `ns-${i % 20}`, name: `r${i}`, labels: { app: `a${i % 25}` }, node: 1 },
        `10.245.${i >> 8}.${i & 255}`,
      ),
    );
  }
  const policies: NetworkPolicy[] = [];
  for (let i = 0; i < n; i++) {
    const ns = `ns-${i % 20}`, app = { matchLabels: { app: `a${i % 25}` } };
    switch (i % 5) {
      case 0:
        policies.push(policy(ns, `deny-${i}`, { podSelector: app, policyTypes: ["Ingress"] }));
        break;
      case 1:
        policies.push(policy(ns, `from-team-${i}`, {
          podSelector: app,
          ingress: [{
            from: [{ namespaceSelector: { matchLabels: { team: `t${i % 4}` } } }],
            ports: [{ port: 80 }, { port: 443 }],
          }],
        }));
        break;
      case 2:
        policies.push(policy(ns, `from-app-${i}`, {
          podSelector: { matchLabels: { tier: "db" } },
          ingress: [{
            from: [{ podSelector: { matchLabels: { app: `a${(i + 1) % 25}` } } }],
            ports: [{ port: 5432 }],
          }],
        }));
        break;
      case 3:
        policies.push(policy(ns, `block-${i}`, {
          podSelector: app,
          ingress: [{
            from: [{ ipBlock: { cidr: "10.0.0.0/8", except: [`10.${i % 200}.0.0/16`] } }],
            ports: [{ port: 8080, endPort: 8090 }],
          }],
        }));
        break;
      default:
        policies.push(policy(ns, `egress-${i}`, {
          podSelector: app,
          policyTypes: ["Egress"],
          egress: [{
            to: [{ namespaceSelector: {}, podSelector: { matchLabels: { app: `a${(i + 3) % 25}` } } }],
            ports: [{ protocol: "UDP", port: 53 }, { port: "serve-80-tcp" }],
          }],
        }));
    }
  }
  return { policies, pods: podList, namespaces };
}

/** The rules the layout before had: every policy rule copied into every selected pod's chain, plus its drop. */
function perPodRules(rs: RuleSet): number {
  let n = 0;
  for (const pod of rs.pods) {
    for (const dir of [pod.ingress, pod.egress]) {
      if (!dir) continue;
      n++;
      for (const r of dir.rules) {
        const fams = r.peers === "any" ? 1 : (r.peers.v4.length ? 1 : 0) + (r.peers.v6.length ? 1 : 0);
        n += fams * (r.ports === "any" ? 1 : r.ports.length) + (r.destPorts.length ? 1 : 0);
      }
    }
  }
  return n;
}

async function installRow(pods: number, n: number): Promise<Record<string, number>> {
  const c = cluster(pods, n);
  const compileMs: number[] = [];
  let rs!: RuleSet;
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    rs = compilePolicies({ ...c, nodeName: "node-0" });
    compileMs.push(performance.now() - t0);
  }
  const spec = buildTableSpec(rs, { podNets: NETS });
  const rules = [...spec.chains.values()].reduce((k, ch) => k + ch.rules.length, 0);
  const elements = [...spec.sets.values()].reduce((k, s) => k + s.elements.size, 0);
  return await withScratchNetns("pbs", async (ns) => {
    const enter = <T>(f: () => T) => withNetns(ns, f);
    const table = new PolicyTable({
      enter,
      fallback: () => buildTableSpec(EMPTY_RULES, { podNets: NETS, holdUnknown: true }),
    });
    const t0 = performance.now();
    const [, fullStall] = await stall(() => table.apply(spec));
    const fullMs = performance.now() - t0;
    const l0 = performance.now();
    const listing = await listPolicyTableAsync(enter);
    const listMs = performance.now() - l0;
    // One new pod in ns-0 (selected by its policies), as a difference.
    const added = podObject(
      { ns: "ns-0", name: "new", labels: { app: "a0", tier: "db" }, node: 0 },
      ipOf(16 + pods),
    );
    const p0 = performance.now();
    const rs2 = compilePolicies({ ...c, pods: [...c.pods, added], nodeName: "node-0" });
    const spec2 = buildTableSpec(rs2, { podNets: NETS });
    const podCompileMs = performance.now() - p0;
    const a0 = performance.now();
    const [r2, podStall] = await stall(() => table.apply(spec2));
    const podApplyMs = performance.now() - a0;
    const podMs = performance.now() - p0;
    // One policy changed (a port added).
    const changed = c.policies.map((p, i) =>
      i === 1
        ? {
          ...p,
          spec: {
            ...p.spec,
            ingress: [{ ...p.spec.ingress![0]!, ports: [{ port: 80 }, { port: 443 }, { port: 8443 }] }],
          },
        }
        : p
    );
    const q0 = performance.now();
    const rs3 = compilePolicies({ ...c, pods: [...c.pods, added], policies: changed, nodeName: "node-0" });
    await table.apply(buildTableSpec(rs3, { podNets: NETS }));
    const policyMs = performance.now() - q0;
    const row = {
      pods,
      policies: n,
      isolated: rs.pods.length,
      compile_ms: median(compileMs),
      full_install_ms: fullMs,
      full_install_stall_ms: fullStall,
      rules: rules,
      rules_per_pod_layout: perPodRules(rs),
      set_elements: elements,
      listing_kb: (listing?.length ?? 0) / 1024,
      list_ms: listMs,
      one_pod_ms: podMs,
      one_pod_compile_ms: podCompileMs,
      one_pod_apply_ms: podApplyMs,
      one_pod_stall_ms: podStall,
      one_pod_units: r2.failed.length,
      one_policy_ms: policyMs,
    };
    console.log(
      `${String(pods).padStart(5)} pods × ${String(n).padStart(3)} policies: compile ${
        row.compile_ms.toFixed(0)
      } ms, ` +
        `whole install ${fullMs.toFixed(0)} ms (loop stall ≤ ${fullStall.toFixed(0)} ms), ${rules} rules ` +
        `(per-pod layout: ${row.rules_per_pod_layout}, ×${(row.rules_per_pod_layout / rules).toFixed(1)}), ` +
        `${elements} set elements; +1 pod ${podMs.toFixed(0)} ms = compile+build ${
          podCompileMs.toFixed(0)
        } + ` +
        `diff+nft ${podApplyMs.toFixed(0)} (stall during the apply ≤ ${
          podStall.toFixed(0)
        } ms; whole install / ` +
        `this apply ×${(fullMs / podApplyMs).toFixed(1)}), 1 policy changed ${policyMs.toFixed(0)} ms; list ${
          listMs.toFixed(0)
        } ms`,
    );
    return row;
  });
}

async function installBench(): Promise<void> {
  const rows: Record<string, number>[] = [];
  for (const pods of [100, 1000, 5000]) for (const n of [50, 500]) rows.push(await installRow(pods, n));
  const cols = Object.keys(rows[0]!);
  Deno.writeTextFileSync(
    `${OUT}policy_scale.csv`,
    [cols.join(","), ...rows.map((r) => cols.map((c) => Number(r[c]!.toFixed(2))).join(","))].join("\n") +
      "\n",
  );
}

/** A watcher of Pods on the same API: when each pod's status update is seen (the reference). */
function watchStatus(
  url: string,
  rv: string,
  seen: Map<string, number>,
  signal: AbortSignal,
): Promise<void> {
  const client = new KubeClient({ server: url, source: "bench" });
  signal.addEventListener("abort", () => client.close(), { once: true });
  return client.watch<Pod>("/api/v1/pods", { signal, resourceVersion: rv }, (ev) => {
    const p = ev.object;
    if (p.status?.podIP && p.metadata.name?.startsWith("new-") && !seen.has(p.metadata.name)) {
      seen.set(p.metadata.name, performance.now());
    }
  }).catch((err) => console.error(`reference watcher: ${(err as Error).message}`));
}

async function rolloutBench(): Promise<void> {
  const PODS = 1000, WAVE = 50, REUSED = 5;
  await using api = await startKubeApiServer({ bookmarkMs: 1000 });
  const s = api.store, Pod = s.kindByName("Pod");
  const c = cluster(PODS, 50);
  for (const n of c.namespaces) s.create(s.kindByName("Namespace"), "", n);
  for (const p of c.policies) s.create(s.kindByName("NetworkPolicy"), p.metadata.namespace!, p);
  const live = new Map<string, { ns: string; ip: string }>();
  for (const p of c.pods) {
    s.create(Pod, p.metadata.namespace!, p);
    if (p.spec?.nodeName === "node-0") {
      live.set(p.metadata.name, { ns: p.metadata.namespace!, ip: p.status!.podIP! });
    }
  }
  const client = new KubeClient({ server: api.url, source: "bench" });
  const rows: { pod: number; wave: number; name: string; ms: number }[] = [];
  const writtenAt = new Map<string, number>();
  const enforced: number[] = [], watched: number[] = [];
  let maxStall = 0;
  const seenAll = new Map<string, number>();
  await withScratchNetns("pbr", async (ns) => {
    const e = new PolicyEnforcer(client, { nodeName: "node-0", inNetns: (f) => withNetns(ns, f) });
    const ctl = new AbortController();
    const running = e.run(ctl.signal, NETS);
    const seen = seenAll;
    const watching = watchStatus(api.url, String(s.resourceVersion), seen, ctl.signal);
    let last = performance.now();
    const ticker = setInterval(() => {
      const now = performance.now();
      maxStall = Math.max(maxStall, now - last);
      last = now;
    }, 1);
    try {
      while (e.stats.updates === 0) await new Promise((r) => setTimeout(r, 20));
      maxStall = 0;
      const olds = [...live.keys()].filter((k) => k.startsWith("p"));
      let next = 16 + PODS + 10;
      let lingering: { ns: string; name: string }[] = [];
      for (let w = 0; w * WAVE < olds.length; w++) {
        const dying = olds.slice(w * WAVE, (w + 1) * WAVE);
        const wave = dying.map((old, k) => {
          const { ns: pns } = live.get(old)!;
          return {
            name: `new-${w * WAVE + k}`,
            ns: pns,
            ip: k < REUSED ? live.get(old)!.ip : ipOf(next++),
            i: w * WAVE + k,
          };
        });
        for (const p of wave) {
          const o = podObject({
            ns: p.ns,
            name: p.name,
            labels: { app: `a${p.i % 25}`, tier: p.i % 3 ? "web" : "db" },
            node: 0,
          }, "");
          o.status = { phase: "Pending" };
          s.create(Pod, p.ns, o);
        }
        const t0 = new Map<string, number>();
        await Promise.all(wave.map((p) => {
          t0.set(p.name, performance.now());
          return e.register({ namespace: p.ns, name: p.name, containerId: `c-${p.name}`, ips: [p.ip] });
        }));
        for (const p of wave) {
          const cur = s.get(Pod, p.ns, p.name) as Record<string, unknown>;
          writtenAt.set(p.name, performance.now());
          s.update(Pod, p.ns, p.name, {
            ...cur,
            status: { phase: "Running", podIP: p.ip, podIPs: [{ ip: p.ip }] },
          }, "status");
        }
        for (const l of lingering) s.delete(Pod, l.ns, l.name);
        lingering = dying.slice(0, REUSED).map((name) => ({ ns: live.get(name)!.ns, name }));
        for (const name of dying) {
          const { ns: pns } = live.get(name)!;
          live.delete(name);
          if (!lingering.some((l) => l.name === name)) s.delete(Pod, pns, name);
        }
        const pending = new Map(wave.map((p) => [p.ip, p]));
        while (pending.size) {
          const inst = e.table.installed!;
          for (const [ip, p] of pending) {
            const inTable = inst.sets.get("known4")!.elements.has(ip) &&
              !inst.sets.get("pending4")!.elements.has(ip);
            if (!inTable) continue;
            const ms = performance.now() - t0.get(p.name)!;
            enforced.push(ms);
            pending.delete(ip);
            rows.push({ pod: p.i, wave: w, name: p.name, ms });
          }
          await new Promise((r) => setTimeout(r, 2));
        }
      }
      // Let the watcher catch the last writes.
      await new Promise((r) => setTimeout(r, 500));
      for (const [name, at] of writtenAt) if (seen.has(name)) watched.push(seen.get(name)! - at);
    } finally {
      clearInterval(ticker);
      ctl.abort();
      await running;
      await watching;
      client.close();
    }
    console.log(
      `rollout of ${PODS} pods in waves of ${WAVE}: registration → enforced p50 ${
        pct(enforced, 0.5).toFixed(0)
      } ms, ` +
        `p99 ${pct(enforced, 0.99).toFixed(0)} ms, max ${Math.max(...enforced).toFixed(0)} ms; ` +
        `API write → watch event (reference) p50 ${pct(watched, 0.5).toFixed(0)} ms, p99 ${
          pct(watched, 0.99).toFixed(0)
        } ms; ` +
        `${e.stats.updates} installs, ${e.stats.unchanged} unchanged, failures ${e.stats.failures}, ` +
        `duplicates seen ${e.stats.duplicatesTotal}, conntrack entries flushed ${e.stats.conntrackFlushed}; ` +
        `longest event-loop stall ${maxStall.toFixed(0)} ms`,
    );
  });
  const csv = rows.map((r) => {
    const api = seenAll.has(r.name) ? (seenAll.get(r.name)! - writtenAt.get(r.name)!).toFixed(1) : "";
    return `${r.pod},${r.wave},${r.ms.toFixed(1)},${api}`;
  });
  Deno.writeTextFileSync(
    `${OUT}policy_rollout.csv`,
    ["pod,wave,enforced_ms,api_watch_ms", ...csv].join("\n") + "\n",
  );
  const gp = new URL("./plot_policy_rollout.gp", import.meta.url).pathname;
  const r = await new Deno.Command("gnuplot", {
    args: ["-e", `csv='${OUT}policy_rollout.csv'; out='${OUT}policy_rollout.png'`, gp],
    stderr: "piped",
  }).output();
  if (r.code !== 0) console.error(`gnuplot: ${new TextDecoder().decode(r.stderr)}`);
}

if (import.meta.main) {
  if (only !== "rollout") await installBench();
  if (only !== "install") await rolloutBench();
}
