import assert from "node:assert/strict";
import { degradedReason, formatStatus, parsePrometheusText } from "./status.ts";

Deno.test("parsePrometheusText() reads names, labels (with escapes) and special values", () => {
  const samples = parsePrometheusText(
    [
      "# HELP weft_leases_known Leases known",
      "# TYPE weft_leases_known gauge",
      "weft_leases_known 3",
      'weft_lease_info{subnet="10.244.3.0/24",public_ip="192.168.1.5",note="a \\"q\\""} 1',
      'weft_reconcile_duration_seconds_bucket{le="+Inf"} 7 1700000000000',
      "weft_x +Inf",
    ].join("\n"),
  );
  assert.equal(samples.length, 4);
  assert.deepEqual(samples[0], { name: "weft_leases_known", labels: {}, value: 3 });
  assert.equal(samples[1]!.labels.subnet, "10.244.3.0/24");
  assert.equal(samples[1]!.labels.note, 'a "q"');
  assert.equal(samples[2]!.labels.le, "+Inf");
  assert.equal(samples[3]!.value, Infinity);
});

Deno.test("parsePrometheusText() rejects text that is not the exposition format", () => {
  assert.throws(() => parsePrometheusText("<html>not metrics</html>"), /not Prometheus text/);
});

Deno.test("formatStatus() shows readiness, peers vs leases and drift", () => {
  const text = formatStatus({
    endpoint: "http://127.0.0.1:8471",
    ready: false,
    readyDetail: "datapath not applied yet",
    metrics: { weft_leases_known: 4, weft_peers_programmed: 3, weft_drift_repaired_total: 2 },
  });
  assert.match(text, /ready\s+no \(datapath not applied yet\)/);
  assert.match(text, /peers\s+3 programmed \/ 4 leases known/);
  assert.match(text, /drift\s+2 entries repaired/);
});

Deno.test("formatStatus() lists the leases the agent refuses, with their rules", () => {
  const text = formatStatus({
    endpoint: "http://127.0.0.1:8471",
    ready: true,
    readyDetail: "",
    metrics: {
      "weft_leases_rejected_total{reason=subnet_wrong_length}": 2,
      "weft_leases_rejected_total{reason=connected_network}": 1,
    },
    rejected: [{ key: "10.244.0.0-16", reason: "subnet_wrong_length" }, {
      key: "x\ny",
      reason: "key_unparseable",
    }],
  });
  assert.match(text, /rejected\s+2 leases now, 3 rejections since start/);
  assert.match(text, /\n {2}"10\.244\.0\.0-16" subnet_wrong_length\n/);
  assert.match(text, /\n {2}"x\\ny" key_unparseable\n/, "a hostile key cannot break the line");
});

Deno.test("formatStatus() says degraded, not plain yes, while the lease store is unreachable", () => {
  const now = Date.parse("2026-01-02T03:04:05Z");
  const metrics = {
    "weft_store_up{store=etcd}": 0,
    weft_store_unreachable_since_timestamp_seconds: now / 1000 - 192,
    weft_ready: 1,
  };
  const degraded = degradedReason(metrics, now);
  assert.equal(
    degraded,
    "etcd unreachable since 2026-01-02T03:00:53.000Z (3m 12s): the datapath keeps forwarding as programmed; " +
      "leases are neither renewed nor watched until it answers",
  );
  const text = formatStatus({
    endpoint: "http://127.0.0.1:8471",
    ready: true,
    readyDetail: "",
    metrics,
    degraded,
  });
  assert.match(text, /^ready\s+degraded: etcd unreachable since 2026-01-02T03:00:53\.000Z \(3m 12s\)/m);
  assert.match(degradedReason({ "weft_store_up{store=kube}": 0 })!, /^the Kubernetes API unreachable:/);
  assert.equal(degradedReason({ "weft_store_up{store=etcd}": 1 }), undefined);
  assert.match(formatStatus({ endpoint: "x", ready: true, readyDetail: "", metrics: {} }), /^ready\s+yes$/m);
});
