import assert from "node:assert/strict";
import client from "prom-client";
import { MemoryListWatch } from "../../tests/helpers/memory_list_watch.ts";
import { PolicyEnforcer } from "../policy/enforcer.ts";
import { parsePrometheusText } from "../cli/status.ts";
import { policyMetrics } from "./network_policy.ts";

Deno.test("policyMetrics() publishes the enforcer's counters, gauges and the update latency histogram", async () => {
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
  const reg = new client.Registry();
  const latency = policyMetrics(reg, e);
  latency.observe(0.004);
  latency.observe(0.2);
  const samples = parsePrometheusText(await reg.metrics());
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
  assert.equal(v("weft_policy_update_latency_seconds_bucket", { le: "0.005" }), 1);
});
