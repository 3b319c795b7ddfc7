/**
 * deploy/monitoring/ with the real thing: Debian's `prometheus` package (prometheus and promtool).
 *
 * - `promtool check rules` and `promtool test rules` on the alert rules; the PrometheusRule holds the
 *   same groups; the PodMonitor scrapes the DaemonSets' `metrics` port; every query of the Grafana
 *   dashboard is PromQL over metrics the agent exports.
 * - A namespace cluster: agents bound as the DaemonSet binds them (FLANNELD_HEALTHZ_IP = the pod IP,
 *   which with hostNetwork is the node IP), a real Prometheus in the underlay namespace scraping them on
 *   the node IPs with the rules (a test copy whose `for:` is 3 s), etcd stopped: WeftStoreUnreachable
 *   fires for every node and `weft status` says degraded; etcd back: it resolves.
 */
import assert from "node:assert/strict";
import { parse, parseAllDocuments } from "yaml";
import { withNetns } from "../ffi/mod.ts";
import { PolicyEnforcer } from "../src/policy/enforcer.ts";
import { agentMetrics } from "../src/agent/metrics.ts";
import { LatencyHistogram, policyMetricsText } from "../src/agent/network_policy.ts";
import { AgentStatus } from "../src/agent/status.ts";
import { runIn, terminateChild } from "../src/lab/lab.ts";
import { type AgentProcess, startAgent, waitFor, waitReady } from "./helpers/agent.ts";
import { haveEtcd, putNetworkConfig, startEtcd } from "./helpers/etcd.ts";
import { parseExposition } from "./helpers/exposition.ts";
import { MemoryListWatch } from "./helpers/memory_list_watch.ts";
import { createTopology, hasBinary, requireRoot, skipUnless } from "./helpers/topology.ts";

const MON = new URL("../deploy/monitoring/", import.meta.url).pathname;
const DEPLOY = new URL("../deploy/", import.meta.url).pathname;
const MAIN = new URL("../main.ts", import.meta.url).pathname;
const NO_PROMTOOL = skipUnless(hasBinary("promtool"), "promtool is not installed (apt install prometheus)");

type Doc = Record<string, unknown>;

async function promtool(args: string[], netns?: string): Promise<{ code: number; out: string }> {
  const r = await runIn(netns, ["promtool", ...args]);
  return { code: r.code, out: r.stdout + r.stderr };
}

function yamlDocs(path: string): Doc[] {
  return parseAllDocuments(Deno.readTextFileSync(path)).map((d) => d.toJS() as Doc).filter(Boolean);
}

/** Every metric family the agent and its policy part export (names as written, histograms' suffixes too). */
function exportedNames(): Set<string> {
  const e = new PolicyEnforcer(new MemoryListWatch(), { nodeName: "n" });
  const text = `${agentMetrics(new AgentStatus().view()).metrics()}\n${
    policyMetricsText(e, new LatencyHistogram())
  }`;
  const names = new Set<string>(["up"]);
  for (const f of parseExposition(text).values()) {
    names.add(f.name);
    if (f.type === "histogram") { for (const s of ["_bucket", "_sum", "_count"]) names.add(f.name + s); }
  }
  return names;
}

/** The metric names a PromQL expression reads (weft's, the process's, `up`). */
function metricsIn(expr: string): string[] {
  return [...expr.matchAll(/\b((?:weft|process)_[a-z_]+|up)\b(?=\s*[{[)]|\s*$|\s*[=<>!-])/g)].map((m) =>
    m[1]!
  );
}

/** The dashboard's queries, with Grafana's variables as a query would see them. */
function dashboardQueries(): string[] {
  const dash = JSON.parse(Deno.readTextFileSync(`${MON}grafana-dashboard.json`)) as {
    panels: { targets?: { expr: string }[] }[];
  };
  return dash.panels.flatMap((p) => p.targets ?? []).map((t) =>
    t.expr.replaceAll("$__rate_interval", "1m").replaceAll("$instance", ".*").replaceAll("$job", ".*")
  );
}

Deno.test({
  name: "promtool check rules and promtool test rules accept deploy/monitoring's alerts",
  ignore: NO_PROMTOOL,
  async fn() {
    const check = await promtool(["check", "rules", `${MON}weft-rules.yml`]);
    assert.equal(check.code, 0, check.out);
    assert.match(check.out, /SUCCESS: 7 rules found/);
    const test = await promtool(["test", "rules", `${MON}weft-rules.test.yml`]);
    assert.equal(test.code, 0, test.out);
  },
});

Deno.test("the PrometheusRule holds weft-rules.yml's groups; the PodMonitor scrapes both DaemonSets' metrics port", () => {
  const rules = parse(Deno.readTextFileSync(`${MON}weft-rules.yml`)) as { groups: unknown };
  const [pr] = yamlDocs(`${MON}prometheus-rule.yml`) as [{ kind: string; spec: { groups: unknown } }];
  assert.equal(pr.kind, "PrometheusRule");
  assert.deepEqual(pr.spec.groups, rules.groups);
  const alerts = (rules.groups as { rules: { alert: string; expr: string }[] }[])[0]!.rules;
  const names = exportedNames();
  for (const a of alerts) {
    for (const m of metricsIn(a.expr)) {
      assert.ok(names.has(m), `${a.alert} reads ${m}, which no agent exports`);
    }
  }
  const [pm] = yamlDocs(`${MON}podmonitor.yml`) as [{
    kind: string;
    metadata: { namespace: string };
    spec: { selector: { matchLabels: Record<string, string> }; podMetricsEndpoints: { port: string }[] };
  }];
  assert.equal(pm.kind, "PodMonitor");
  for (const file of ["kube-weft.yml", "kube-weft-etcd.yml"]) {
    const ds = yamlDocs(`${DEPLOY}${file}`).find((d) => d.kind === "DaemonSet") as {
      metadata: { namespace: string };
      spec: { template: { metadata: { labels: Record<string, string> }; spec: PodSpec } };
    };
    assert.equal(ds.metadata.namespace, pm.metadata.namespace, file);
    const labels = ds.spec.template.metadata.labels;
    for (const [k, v] of Object.entries(pm.spec.selector.matchLabels)) assert.equal(labels[k], v, file);
    const c = ds.spec.template.spec.containers[0]!;
    const port = c.ports?.find((p) => p.name === pm.spec.podMetricsEndpoints[0]!.port);
    assert.ok(port, `${file}: the container has no port ${pm.spec.podMetricsEndpoints[0]!.port}`);
    assert.ok(c.args.includes(`--healthz-port=${port.containerPort}`), `${file}: the agent listens there`);
    // Bound to the pod IP (the node IP with hostNetwork): not 127.0.0.1, where no Prometheus reaches it,
    // nor 0.0.0.0; the probes use the same port without a host (kubelet probes the pod IP).
    assert.ok(!c.args.some((a) => a.startsWith("--healthz-ip")), file);
    const env = c.env?.find((e) => e.name === "FLANNELD_HEALTHZ_IP");
    assert.equal(env?.valueFrom?.fieldRef?.fieldPath, "status.podIP", file);
    assert.equal(ds.spec.template.spec.hostNetwork, true, file);
    for (const probe of [c.livenessProbe, c.readinessProbe]) {
      assert.equal(probe?.httpGet.host, undefined, file);
      assert.equal(probe?.httpGet.port, port.name, file);
    }
  }
});

interface PodSpec {
  hostNetwork: boolean;
  containers: {
    args: string[];
    ports?: { name: string; containerPort: number }[];
    env?: { name: string; value?: string; valueFrom?: { fieldRef?: { fieldPath: string } } }[];
    livenessProbe?: { httpGet: { host?: string; path: string; port: string | number } };
    readinessProbe?: { httpGet: { host?: string; path: string; port: string | number } };
  }[];
}

Deno.test({
  name: "the Grafana dashboard's queries are PromQL over metrics the agent exports",
  ignore: NO_PROMTOOL,
  async fn() {
    const queries = dashboardQueries();
    assert.ok(queries.length >= 10);
    const names = exportedNames();
    for (const q of queries) for (const m of metricsIn(q)) assert.ok(names.has(m), `${q} reads ${m}`);
    // promtool parses every query as a recording rule's expression.
    const dir = await Deno.makeTempDir({ prefix: "weft-dash-" });
    try {
      const groups = [{
        name: "dashboard",
        rules: queries.map((expr, i) => ({ record: `weft:dash:${i}`, expr })),
      }];
      await Deno.writeTextFile(`${dir}/dash.yml`, JSON.stringify({ groups }));
      const r = await promtool(["check", "rules", `${dir}/dash.yml`]);
      assert.equal(r.code, 0, r.out);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

/** The DaemonSet's agent environment as kubelet resolves it on `nodeIP` (downward API fields only). */
function daemonSetEnv(nodeIP: string): { env: Record<string, string>; args: string[] } {
  const ds = yamlDocs(`${DEPLOY}kube-weft-etcd.yml`).find((d) => d.kind === "DaemonSet") as {
    spec: { template: { spec: PodSpec } };
  };
  const c = ds.spec.template.spec.containers[0]!;
  const env: Record<string, string> = {};
  for (const e of c.env ?? []) {
    const path = e.valueFrom?.fieldRef?.fieldPath;
    if (path === "status.podIP" || path === "status.hostIP") env[e.name] = nodeIP;
  }
  return { env, args: c.args };
}

/** An instant query against the Prometheus at `url`, run inside `netns`. */
async function query(
  netns: string,
  url: string,
  expr: string,
): Promise<{ metric: Record<string, string> }[]> {
  const r = await promtool(["query", "instant", "-o", "json", url, expr], netns);
  if (r.code !== 0) throw new Error(`${expr}: ${r.out}`);
  return JSON.parse(r.out);
}

Deno.test({
  name:
    "a real Prometheus scrapes the agents on their node IPs and WeftStoreUnreachable fires while etcd is stopped",
  ignore: requireRoot() || NO_PROMTOOL ||
    skipUnless(hasBinary("prometheus"), "prometheus is not installed (apt install prometheus)") ||
    skipUnless(haveEtcd(), "etcd is not installed"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    await using topo = await createTopology({ nodes: 2 });
    const dir = await Deno.makeTempDir({ prefix: "weft-prom-" });
    await using etcd = await startEtcd({ netns: topo.underlay, host: topo.underlayIP });
    await putNetworkConfig(etcd.endpoint, { Network: "10.244.0.0/16", Backend: { Type: "vxlan" } }, {
      netns: topo.underlay,
    });
    const agents: AgentProcess[] = topo.nodes.map((n) => {
      const ds = daemonSetEnv(n.ip);
      return startAgent(n, {
        etcd: etcd.endpoint,
        dir,
        healthzIp: null, // FLANNELD_HEALTHZ_IP decides, as in the DaemonSet
        env: ds.env,
        args: [...ds.args, "--resync-interval=1"],
      });
    });
    // Prometheus in the underlay namespace, which reaches every node as the cluster's Prometheus would.
    const rules = Deno.readTextFileSync(`${MON}weft-rules.yml`).replace(/^(\s+for: )\d+[smh]$/gm, "$13s");
    Deno.writeTextFileSync(`${dir}/rules.yml`, rules);
    Deno.writeTextFileSync(
      `${dir}/prometheus.yml`,
      JSON.stringify({
        global: { scrape_interval: "1s", scrape_timeout: "900ms", evaluation_interval: "1s" },
        rule_files: [`${dir}/rules.yml`],
        scrape_configs: [{
          job_name: "weft",
          static_configs: [{ targets: topo.nodes.map((n) => `${n.ip}:8471`) }],
        }],
      }),
    );
    const url = "http://127.0.0.1:9090";
    const prom = withNetns(topo.underlay, () =>
      new Deno.Command("prometheus", {
        args: [
          `--config.file=${dir}/prometheus.yml`,
          `--storage.tsdb.path=${dir}/tsdb`,
          "--web.listen-address=127.0.0.1:9090",
        ],
        stdout: "null",
        stderr: "null",
      }).spawn());
    const firing = async (alert: string) =>
      (await query(topo.underlay, url, `ALERTS{alertname="${alert}",alertstate="firing"}`))
        .map((s) => s.metric.instance).sort();
    try {
      await t.step(
        "the agents answer on their node IPs only, probes included; Prometheus scrapes them",
        async () => {
          for (const a of agents) await waitReady(a);
          const [a0] = agents as [AgentProcess];
          assert.equal(a0.healthIp, topo.nodes[0]!.ip);
          const loopback = await runIn(a0.node.netns, [
            "curl",
            "-sS",
            "-m",
            "2",
            "http://127.0.0.1:8471/healthz",
          ]);
          assert.notEqual(loopback.code, 0, "not bound to 0.0.0.0 or 127.0.0.1");
          const up = await waitFor("both targets up", 20_000, async () => {
            const r = await query(topo.underlay, url, 'up{job="weft"} == 1');
            return r.length === 2 ? r : undefined;
          });
          assert.deepEqual(
            up.map((s) => s.metric.instance).sort(),
            topo.nodes.map((n) => `${n.ip}:8471`).sort(),
          );
          const info = await query(topo.underlay, url, "weft_build_info");
          assert.deepEqual(info.map((s) => [s.metric.backend, s.metric.store]), [["vxlan", "etcd"], [
            "vxlan",
            "etcd",
          ]]);
          assert.deepEqual(await firing("WeftStoreUnreachable"), []);
        },
      );

      await t.step(
        "etcd stopped: WeftStoreUnreachable fires for both nodes, weft status says degraded",
        async () => {
          await etcd.stop();
          const t0 = Date.now();
          await waitFor(
            "the alert firing for both nodes",
            30_000,
            async () => (await firing("WeftStoreUnreachable")).length === 2 || undefined,
          );
          console.log(`  etcd stopped → WeftStoreUnreachable firing (for: 3s) in ${Date.now() - t0} ms`);
          for (const other of ["WeftAgentDown", "WeftAgentNotReady", "WeftSubnetEnvMissing"]) {
            assert.deepEqual(await firing(other), [], `${other} must not fire: the agents stay up and ready`);
          }
          const n0 = topo.nodes[0]!;
          const st = await runIn(n0.netns, [
            Deno.execPath(),
            "run",
            "-A",
            MAIN,
            "status",
            `--healthz-ip=${n0.ip}`,
          ]);
          assert.equal(st.code, 4, st.stdout + st.stderr);
          assert.match(
            st.stdout,
            /^ready\s+degraded: etcd unreachable since \d{4}-\d\d-\d\dT[\d:.]+Z \(\d+s\)/m,
          );
        },
      );

      await t.step("etcd back: the alert resolves", async () => {
        await etcd.restart();
        await waitFor(
          "the alert resolved",
          30_000,
          async () => (await firing("WeftStoreUnreachable")).length === 0 || undefined,
        );
      });

      await t.step(
        "every dashboard query answers, with data but for series nothing here creates",
        async () => {
          for (const q of dashboardQueries()) {
            const r = await query(topo.underlay, url, q);
            // No --network-policy, and no lease refused: those families have no series yet.
            if (!/policy|rejected/.test(q)) assert.ok(r.length > 0, `no data for ${q}`);
          }
        },
      );
    } finally {
      await terminateChild(prom, "SIGTERM");
      await Promise.all(agents.map((a) => a.stop()));
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
