import assert from "node:assert/strict";
import { MemoryListWatch } from "../../tests/helpers/memory_list_watch.ts";
import { parsePrometheusText } from "../cli/status.ts";
import { PolicyEnforcer } from "../policy/enforcer.ts";
import { agentMetrics } from "./metrics.ts";
import { LatencyHistogram, NetworkPolicyPart, policyMetricsText } from "./network_policy.ts";
import { AgentStatus } from "./status.ts";

Deno.test("policyMetricsText() publishes the enforcer's counters, gauges and the update latency histogram", () => {
  const e = new PolicyEnforcer(new MemoryListWatch(), { nodeName: "node-0" });
  Object.assign(e.stats, {
    updates: 7,
    failures: 1,
    repairs: 2,
    problemsSeen: 3,
    rules: 40,
    isolatedPods: 5,
  });
  e.problems = [{ policy: "x/p", path: "spec.ingress[0].ports[0].protocol", message: "…" }];
  const latency = new LatencyHistogram();
  latency.observe(0.004);
  latency.observe(0.2);
  const text = policyMetricsText(e, latency);
  const samples = parsePrometheusText(text);
  const v = (name: string, labels: Record<string, string> = {}) =>
    samples.find((s) => s.name === name && Object.entries(labels).every(([k, x]) => s.labels[k] === x))
      ?.value;
  assert.equal(v("weft_policy_updates_total"), 7);
  assert.equal(v("weft_policy_install_failures_total"), 1);
  assert.equal(v("weft_policy_repaired_total"), 2);
  assert.equal(v("weft_policy_unenforceable_total"), 3);
  assert.equal(v("weft_policy_unenforceable"), 1);
  assert.equal(v("weft_policy_rules"), 40);
  assert.equal(v("weft_policy_isolated_pods"), 5);
  assert.equal(v("weft_policy_api_up"), 0, "not started: no answer yet");
  assert.equal(v("weft_policy_synced"), 0);
  assert.equal(v("weft_policy_update_latency_seconds_count"), 2);
  assert.ok(Math.abs(v("weft_policy_update_latency_seconds_sum")! - 0.204) < 1e-9);
  assert.equal(v("weft_policy_update_latency_seconds_bucket", { le: "0.001" }), 0);
  assert.equal(v("weft_policy_update_latency_seconds_bucket", { le: "0.005" }), 1);
  assert.equal(v("weft_policy_update_latency_seconds_bucket", { le: "0.25" }), 2);
  assert.equal(v("weft_policy_update_latency_seconds_bucket", { le: "+Inf" }), 2);
  assert.match(text, /# TYPE weft_policy_update_latency_seconds histogram\n/);
  assert.match(text, /# TYPE weft_policy_updates_total counter\n/);
});

Deno.test("the policy part's metrics follow the agent's on one /metrics", () => {
  const part = new NetworkPolicyPart({ client: new MemoryListWatch(), nodeName: "node-0", logDrops: false });
  const base = agentMetrics(new AgentStatus().view());
  const joined = part.metrics(base);
  assert.equal(joined.contentType, base.contentType);
  const names = new Set(parsePrometheusText(joined.metrics()).map((s) => s.name));
  assert.ok(names.has("weft_ready") && names.has("weft_policy_rules"));
});
