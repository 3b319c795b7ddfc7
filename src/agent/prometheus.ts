/**
 * The one Prometheus text exposition writer (format 0.0.4) — and its reader — that every weft metric goes
 * through: the agent's (metrics.ts), the policy part's (network_policy.ts), `weft status` and the tests.
 *
 * The format's rules it keeps (https://prometheus.io/docs/instrumenting/exposition_formats/):
 * - one `# HELP` and one `# TYPE` line per family, before its samples; HELP text escapes `\` and newline;
 * - metric names match `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names `[a-zA-Z_][a-zA-Z0-9_]*` (not `__…`);
 * - label values escape `\`, `"` and newline;
 * - values are Go floats (`+Inf`, `-Inf`, `NaN`);
 * - a histogram is cumulative `<name>_bucket{le="…"}` samples ending in `le="+Inf"` (equal to
 *   `<name>_count`), then `<name>_sum` and `<name>_count`.
 *
 * The layout (a blank line between families) is what prom-client wrote, so the text stays byte for byte
 * what it was before prom-client was dropped (metrics_test.ts).
 *
 * @module
 */

/** The Content-Type of the text this module writes. */
export const CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** A scrape target: Prometheus text of the metrics as they are now. */
export interface MetricsText {
  /** The Content-Type of {@linkcode MetricsText.metrics}'s text. */
  readonly contentType: string;
  /** The metrics, read now. */
  metrics(): string;
}

/** Label name → value, written in insertion order. */
export type Labels = Record<string, string>;

/** One sample of a gauge or counter: its labels and its value. */
export type Sample = [Labels, number];

/** A histogram's state: cumulative counts per upper bound (without +Inf), sum and count. */
export interface HistogramSnapshot {
  /** Upper bounds, ascending, each with the number of observations ≤ it. */
  buckets: { le: number; count: number }[];
  /** Sum of the observations. */
  sum: number;
  /** Number of observations (the `+Inf` bucket). */
  count: number;
}

/** A gauge or counter family whose samples are read at scrape time. */
export interface ScalarFamily {
  /** Family name. */
  name: string;
  /** HELP text. */
  help: string;
  /** TYPE. */
  type: "gauge" | "counter";
  /** Samples now (none: the family is written with its header only). */
  samples(): Sample[];
}

/** A histogram family: one histogram per label set, read at scrape time. */
export interface HistogramFamily {
  /** Family name (the samples are `_bucket`, `_sum`, `_count`). */
  name: string;
  /** HELP text. */
  help: string;
  /** TYPE. */
  type: "histogram";
  /** Histograms now, by label set. */
  series(): [Labels, HistogramSnapshot][];
}

/** A metric family. */
export type Family = ScalarFamily | HistogramFamily;

const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** A cumulative histogram with fixed upper bounds (as Prometheus client libraries keep them). */
export class Histogram {
  readonly #bounds: readonly number[];
  readonly #counts: number[];
  #sum = 0;
  #count = 0;

  /** @param bounds upper bounds, strictly ascending and finite (`+Inf` is implied) */
  constructor(bounds: readonly number[]) {
    bounds.forEach((b, i) => {
      if (!Number.isFinite(b) || (i > 0 && b <= bounds[i - 1]!)) {
        throw new Error(`histogram bounds must be finite and strictly ascending: ${bounds.join(", ")}`);
      }
    });
    this.#bounds = [...bounds];
    this.#counts = bounds.map(() => 0);
  }

  /** Records one observation. */
  observe(v: number): void {
    this.#sum += v;
    this.#count++;
    this.#bounds.forEach((le, i) => {
      if (v <= le) this.#counts[i]!++;
    });
  }

  /** Sum of the observations. */
  get sum(): number {
    return this.#sum;
  }

  /** Number of observations. */
  get count(): number {
    return this.#count;
  }

  /** Its state now. */
  snapshot(): HistogramSnapshot {
    return {
      buckets: this.#bounds.map((le, i) => ({ le, count: this.#counts[i]! })),
      sum: this.#sum,
      count: this.#count,
    };
  }
}

/** A label value as the text format writes it: `\`, `"` and newline escaped. */
export function escapeLabelValue(v: string): string {
  return v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');
}

/** HELP text as the text format writes it: `\` and newline escaped (quotes stay). */
export function escapeHelp(help: string): string {
  return help.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
}

/** A sample value as the text format writes it (a Go float). */
export function formatValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (!Number.isFinite(v)) return v < 0 ? "-Inf" : "+Inf";
  return String(v);
}

/** `{a="x",b="y"}`, or `""` without labels. */
function labelText(labels: Labels): string {
  const pairs = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabelValue(v)}"`);
  return pairs.length ? `{${pairs.join(",")}}` : "";
}

/** The sample lines of one histogram. */
function histogramLines(name: string, labels: Labels, h: HistogramSnapshot): string[] {
  const bucket = (le: string, n: number) => `${name}_bucket${labelText({ ...labels, le })} ${formatValue(n)}`;
  return [
    ...h.buckets.map((b) => bucket(formatValue(b.le), b.count)),
    bucket("+Inf", h.count),
    `${name}_sum${labelText(labels)} ${formatValue(h.sum)}`,
    `${name}_count${labelText(labels)} ${formatValue(h.count)}`,
  ];
}

/** One family's block: HELP, TYPE, its samples. */
function familyText(f: Family): string {
  const lines = [`# HELP ${f.name} ${escapeHelp(f.help)}`, `# TYPE ${f.name} ${f.type}`];
  if (f.type === "histogram") {
    for (const [labels, h] of f.series()) lines.push(...histogramLines(f.name, labels, h));
  } else {
    for (const [labels, v] of f.samples()) lines.push(`${f.name}${labelText(labels)} ${formatValue(v)}`);
  }
  return lines.join("\n") + "\n";
}

/** Throws unless `f`'s name, and `labels`' names, are valid (a programming error, found by the tests). */
function checkNames(f: Family, labels: Labels = {}): void {
  if (!METRIC_NAME.test(f.name)) throw new Error(`invalid metric name ${JSON.stringify(f.name)}`);
  for (const k of Object.keys(labels)) {
    if (!LABEL_NAME.test(k) || k.startsWith("__") || (f.type === "histogram" && k === "le")) {
      throw new Error(`${f.name}: invalid label name ${JSON.stringify(k)}`);
    }
  }
}

/**
 * Prometheus text of `families`, read now (one block per family, a blank line between). Throws on an
 * invalid metric or label name, or a family named twice.
 */
export function writeFamilies(families: readonly Family[]): string {
  const seen = new Set<string>();
  for (const f of families) {
    checkNames(f);
    if (seen.has(f.name)) throw new Error(`metric family ${f.name} defined twice`);
    seen.add(f.name);
  }
  return families.map((f) => {
    const series = f.type === "histogram" ? f.series() : f.samples();
    for (const [labels] of series) checkNames(f, labels);
    return familyText(f);
  }).join("\n");
}

/** Families defined one by one and written together (what `agentMetrics` and the policy part build). */
export class MetricFamilies {
  /** The families, in the order they are written. */
  readonly families: Family[] = [];

  /** A gauge with one unlabelled sample. */
  gauge(name: string, help: string, read: () => number): void {
    this.families.push({ name, help, type: "gauge", samples: () => [[{}, read()]] });
  }

  /** A counter with one unlabelled sample. */
  counter(name: string, help: string, read: () => number): void {
    this.families.push({ name, help, type: "counter", samples: () => [[{}, read()]] });
  }

  /** A gauge or counter with labelled samples. */
  series(type: "gauge" | "counter", name: string, help: string, samples: () => Sample[]): void {
    this.families.push({ name, help, type, samples });
  }

  /** A histogram without labels. */
  histogram(name: string, help: string, h: Histogram): void {
    this.families.push({ name, help, type: "histogram", series: () => [[{}, h.snapshot()]] });
  }

  /** The text of every family, read now. */
  text(): string {
    return writeFamilies(this.families);
  }

  /** As a scrape target. */
  target(): MetricsText {
    return { contentType: CONTENT_TYPE, metrics: () => this.text() };
  }
}

/** One sample of a Prometheus text exposition. */
export interface ParsedSample {
  /** Metric name. */
  name: string;
  /** Labels. */
  labels: Record<string, string>;
  /** Value. */
  value: number;
}

/** Parses Prometheus text format (0.0.4) into samples; comments and blank lines are skipped. */
export function parsePrometheusText(text: string): ParsedSample[] {
  const out: ParsedSample[] = [];
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const m = line.match(/^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+-?\d+)?$/);
    if (!m) throw new Error(`not Prometheus text: ${JSON.stringify(line)}`);
    const labels: Record<string, string> = {};
    for (const lm of (m[3] ?? "").matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) {
      labels[lm[1]!] = lm[2]!.replace(/\\(.)/g, (_, c: string) => (c === "n" ? "\n" : c));
    }
    const v = m[4]!;
    out.push({ name: m[1]!, labels, value: v === "+Inf" ? Infinity : v === "-Inf" ? -Infinity : Number(v) });
  }
  return out;
}
