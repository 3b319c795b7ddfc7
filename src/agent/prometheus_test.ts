import assert from "node:assert/strict";
import { parseExposition } from "../../tests/helpers/exposition.ts";
import { MemoryListWatch } from "../../tests/helpers/memory_list_watch.ts";
import { hasBinary } from "../../tests/helpers/topology.ts";
import { PolicyEnforcer } from "../policy/enforcer.ts";
import { agentMetrics } from "./metrics.ts";
import { LatencyHistogram, policyMetricsText } from "./network_policy.ts";
import {
  escapeHelp,
  escapeLabelValue,
  type Family,
  Histogram,
  MetricFamilies,
  parsePrometheusText,
  writeFamilies,
} from "./prometheus.ts";
import { AgentStatus } from "./status.ts";
import { parseNet } from "../net/ip.ts";

/** Label values a lease key or a node name could carry: every character the format must escape. */
const HOSTILE = ['a"b', "back\\slash", "new\nline", '\\"\n', "\\n (not a newline)", "ünïcødé ✓", "", " "];

Deno.test("label values round-trip through the writer and the grammar, whatever they hold", () => {
  const m = new MetricFamilies();
  m.series("gauge", "weft_test_labels", "Labels", () => HOSTILE.map((v, i) => [{ v, i: String(i) }, i]));
  const fam = parseExposition(m.text()).get("weft_test_labels")!;
  assert.deepEqual(fam.samples.map((s) => s.labels.v), HOSTILE);
  // The lenient reader `weft status` uses agrees.
  assert.deepEqual(parsePrometheusText(m.text()).map((s) => s.labels.v), HOSTILE);
  assert.equal(escapeLabelValue('\\"\n'), '\\\\\\"\\n');
});

Deno.test("HELP escapes backslash and newline (quotes stay), and reads back the same", () => {
  const help = 'a "quoted" \\ path\nsecond line';
  assert.equal(escapeHelp(help), 'a "quoted" \\\\ path\\nsecond line');
  const m = new MetricFamilies();
  m.counter("weft_test_total", help, () => 1);
  assert.equal(parseExposition(m.text()).get("weft_test_total")!.help, help);
});

Deno.test("values are Go floats: integers, fractions, +Inf, -Inf, NaN", () => {
  const m = new MetricFamilies();
  const values = [0, 5001, 0.125, 1700000000.5, Infinity, -Infinity, NaN, 1e21, -3];
  m.series("gauge", "weft_test_values", "Values", () => values.map((v, i) => [{ i: String(i) }, v]));
  const read = parseExposition(m.text()).get("weft_test_values")!.samples.map((s) => s.value);
  assert.deepEqual(read, values);
});

Deno.test("a histogram: cumulative buckets ascending, +Inf equal to _count, _sum, one TYPE", () => {
  const h = new Histogram([0.001, 0.01, 0.1, 1]);
  const obs = [0.0005, 0.001, 0.002, 0.05, 0.05, 0.7, 3, 12];
  for (const v of obs) h.observe(v);
  const m = new MetricFamilies();
  m.histogram("weft_test_seconds", "A histogram", h);
  const text = m.text();
  const fam = parseExposition(text).get("weft_test_seconds")!;
  assert.equal(fam.type, "histogram");
  const buckets = fam.samples.filter((s) => s.name.endsWith("_bucket"));
  assert.deepEqual(buckets.map((s) => s.labels.le), ["0.001", "0.01", "0.1", "1", "+Inf"]);
  assert.deepEqual(buckets.map((s) => s.value), [2, 3, 5, 6, 8]);
  assert.equal(fam.samples.find((s) => s.name === "weft_test_seconds_count")!.value, obs.length);
  const sum = fam.samples.find((s) => s.name === "weft_test_seconds_sum")!.value;
  assert.ok(Math.abs(sum - obs.reduce((a, b) => a + b)) < 1e-9);
  assert.equal(text.match(/^# TYPE /gm)!.length, 1);
});

Deno.test("an empty histogram still has every bucket, +Inf, _sum and _count at 0", () => {
  const m = new MetricFamilies();
  m.histogram("weft_test_seconds", "Empty", new Histogram([1, 2]));
  const fam = parseExposition(m.text()).get("weft_test_seconds")!;
  assert.deepEqual(fam.samples.map((s) => [s.name, s.value]), [
    ["weft_test_seconds_bucket", 0],
    ["weft_test_seconds_bucket", 0],
    ["weft_test_seconds_bucket", 0],
    ["weft_test_seconds_sum", 0],
    ["weft_test_seconds_count", 0],
  ]);
});

Deno.test("the writer refuses what the format forbids: bad names, a family twice, `le` on a histogram", () => {
  const g = (name: string, labels: Record<string, string> = {}): Family => ({
    name,
    help: "h",
    type: "gauge",
    samples: () => [[labels, 1]],
  });
  assert.throws(() => writeFamilies([g("1weft")]), /invalid metric name/);
  assert.throws(() => writeFamilies([g("weft-x")]), /invalid metric name/);
  assert.throws(() => writeFamilies([g("weft_x", { "bad-label": "v" })]), /invalid label name/);
  assert.throws(() => writeFamilies([g("weft_x", { __reserved: "v" })]), /invalid label name/);
  assert.throws(() => writeFamilies([g("weft_x"), g("weft_x")]), /defined twice/);
  const h: Family = {
    name: "weft_h",
    help: "h",
    type: "histogram",
    series: () => [[{ le: "1" }, new Histogram([1]).snapshot()]],
  };
  assert.throws(() => writeFamilies([h]), /invalid label name "le"/);
  assert.throws(() => new Histogram([1, 1]), /strictly ascending/);
  assert.throws(() => new Histogram([1, Infinity]), /finite/);
});

Deno.test("the grammar reader catches what a careless writer would do", () => {
  const bad = [
    ['# TYPE x gauge\nx{a="b\\q"} 1\n', /invalid escape/],
    ["# TYPE x gauge\n# TYPE x gauge\nx 1\n", /second TYPE/],
    ["x 1\n# TYPE x gauge\n", /after its samples|came earlier/],
    ["# TYPE x gauge\nx 1\n# TYPE y gauge\ny 1\nx 2\n", /not grouped/],
    ['# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n', /count 1 < 2/],
    ['# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 1\nh_count 3\n', /!= _count/],
    ['# TYPE h histogram\nh_bucket{le="1"} 1\nh_sum 1\nh_count 1\n', /no le="\+Inf"/],
    ["# TYPE x gauge\nx one\n", /invalid value/],
    ['# TYPE x gauge\nx{a="1",a="2"} 1\n', /twice/],
    ["# TYPE x gauge\nx 1", /newline/],
  ] as const;
  for (const [text, err] of bad) assert.throws(() => parseExposition(text), err, text);
});

const PUBLIC_IP = '192.168.1."2\\\n';

/** The agent's metrics with every optional part set and hostile label values, then the policy part's. */
function fullText(): string {
  const status = new AgentStatus();
  status.lease = {
    key: "10.244.3.0-24",
    subnet: parseNet("10.244.3.0/24"),
    attrs: { PublicIP: PUBLIC_IP, PublicIPv6: null, BackendType: "vxlan", BackendData: null },
  };
  status.backendType = "vxlan";
  status.rejected = () => ({
    total: new Map([["public_ip_loopback", 2]]),
    current: HOSTILE.map((key) => ({ key, rule: "public_ip_loopback", detail: "", since: new Date() })),
  });
  const e = new PolicyEnforcer(new MemoryListWatch(), { nodeName: "node-0" });
  const latency = new LatencyHistogram();
  for (const v of [0.0001, 0.003, 0.2, 9]) latency.observe(v);
  return `${agentMetrics(status.view()).metrics()}\n${policyMetricsText(e, latency)}`;
}

Deno.test("the agent's and the policy part's /metrics keep the grammar: one TYPE per family, histograms whole", () => {
  const text = fullText();
  const families = parseExposition(text);
  const types = text.match(/^# TYPE (\S+)/gm)!.map((l) => l.slice(7));
  assert.equal(new Set(types).size, types.length, "one TYPE per family");
  for (const f of families.values()) {
    assert.notEqual(f.type, "untyped", `${f.name} has a TYPE`);
    assert.ok(f.help, `${f.name} has a HELP`);
  }
  const lat = families.get("weft_policy_update_latency_seconds")!;
  assert.equal(lat.samples.find((s) => s.labels.le === "+Inf")!.value, 4);
  assert.equal(families.get("weft_lease_info")!.samples[0]!.labels.public_ip, PUBLIC_IP);
  const keys = families.get("weft_lease_rejected")!.samples.map((s) => s.labels.key);
  assert.deepEqual(new Set(keys), new Set(HOSTILE));
});

Deno.test({
  name: "promtool check metrics accepts the agent's and the policy part's /metrics",
  ignore: !hasBinary("promtool"),
  async fn() {
    const p = new Deno.Command("promtool", {
      args: ["check", "metrics"],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const w = p.stdin.getWriter();
    await w.write(new TextEncoder().encode(fullText()));
    await w.close();
    const out = await p.output();
    const said = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, said);
  },
});
