/**
 * A strict reader of the Prometheus text exposition format (0.0.4), written from the format's
 * description (https://prometheus.io/docs/instrumenting/exposition_formats/) independently of weft's
 * writer (src/agent/prometheus.ts), so tests can hold the writer to the grammar: it throws on the first
 * line that breaks a rule, naming the line.
 *
 * Rules checked: metric and label names; `# HELP` / `# TYPE` syntax, at most one of each per family and
 * before the family's samples; a family's lines grouped together; label values with only the `\\`,
 * `\"` and `\n` escapes; label names unique within a sample; values and timestamps as Go parses them;
 * histograms: `_bucket` samples with an `le` label, bounds ascending, counts never decreasing, a
 * `le="+Inf"` bucket equal to `_count`, and a `_sum`.
 *
 * @module
 */

/** One family as read. */
export interface ParsedFamily {
  /** Family name. */
  name: string;
  /** Its HELP text, unescaped. */
  help?: string;
  /** Its TYPE (untyped when absent). */
  type: string;
  /** Its samples, in order. */
  samples: { name: string; labels: Record<string, string>; value: number; timestamp?: number }[];
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*/;
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"]);
const SUFFIXES: Record<string, string[]> = {
  histogram: ["_bucket", "_sum", "_count"],
  summary: ["_sum", "_count"],
};

/** A Go `strconv.ParseFloat` value (what Prometheus's parser accepts), or undefined. */
function goFloat(s: string): number | undefined {
  if (/^[+-]?inf$/i.test(s)) return s.startsWith("-") ? -Infinity : Infinity;
  if (/^nan$/i.test(s)) return NaN;
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(s)) return undefined;
  return Number(s);
}

/** Reads a quoted label value from `s` at `i` (after the quote); returns it and the index after it. */
function labelValue(s: string, i: number, where: string): [string, number] {
  let out = "";
  for (; i < s.length; i++) {
    const c = s[i]!;
    if (c === '"') return [out, i + 1];
    if (c !== "\\") {
      out += c;
      continue;
    }
    const e = s[++i];
    if (e === "\\") out += "\\";
    else if (e === '"') out += '"';
    else if (e === "n") out += "\n";
    else throw new Error(`${where}: invalid escape \\${e ?? ""} in a label value`);
  }
  throw new Error(`${where}: unterminated label value`);
}

/** Reads `{a="x",…}` from `s` at `i` (at the brace); returns the labels and the index after `}`. */
function labelSet(s: string, i: number, where: string): [Record<string, string>, number] {
  const labels: Record<string, string> = {};
  i++;
  while (true) {
    while (s[i] === " ") i++;
    if (s[i] === "}") return [labels, i + 1];
    const m = s.slice(i).match(LABEL);
    if (!m) throw new Error(`${where}: invalid label name at ${JSON.stringify(s.slice(i, i + 20))}`);
    const name = m[0];
    if (name in labels) throw new Error(`${where}: label ${name} twice`);
    i += name.length;
    while (s[i] === " ") i++;
    if (s[i] !== "=" || s[i + 1] !== '"') throw new Error(`${where}: expected ="… after label ${name}`);
    [labels[name], i] = labelValue(s, i + 2, where);
    while (s[i] === " ") i++;
    if (s[i] === ",") i++;
    else if (s[i] !== "}") throw new Error(`${where}: expected , or } after label ${name}`);
  }
}

/** A HELP docstring, unescaped (only `\\` and `\n` are escapes). */
function helpText(s: string, where: string): string {
  return s.replace(/\\(.?)/g, (_, c: string) => {
    if (c === "\\") return "\\";
    if (c === "n") return "\n";
    throw new Error(`${where}: invalid escape \\${c} in HELP`);
  });
}

/** The family a sample name belongs to, given the families typed so far. */
function familyOf(name: string, families: Map<string, ParsedFamily>): string {
  if (families.has(name)) return name;
  for (const [fam, f] of families) {
    if ((SUFFIXES[f.type] ?? []).some((suf) => name === fam + suf)) return fam;
  }
  return name;
}

/** Histogram rules for one family. */
function checkHistogram(f: ParsedFamily): void {
  const groups = new Map<string, { buckets: [number, number][]; sum?: number; count?: number }>();
  for (const s of f.samples) {
    const { le, ...rest } = s.labels;
    const key = JSON.stringify(Object.entries(rest).sort());
    const g = groups.get(key) ?? { buckets: [] };
    groups.set(key, g);
    if (s.name === `${f.name}_bucket`) {
      const bound = le === undefined ? undefined : goFloat(le);
      if (bound === undefined) throw new Error(`${f.name}: a _bucket sample without a valid le label`);
      g.buckets.push([bound, s.value]);
    } else if (s.name === `${f.name}_sum`) g.sum = s.value;
    else if (s.name === `${f.name}_count`) g.count = s.value;
    else throw new Error(`${f.name}: sample ${s.name} in a histogram`);
  }
  for (const [key, g] of groups) {
    g.buckets.forEach(([le, n], i) => {
      const prev = g.buckets[i - 1];
      if (prev && !(le > prev[0])) throw new Error(`${f.name}${key}: le ${le} after ${prev[0]}`);
      if (prev && n < prev[1]) throw new Error(`${f.name}${key}: bucket le=${le} count ${n} < ${prev[1]}`);
    });
    const inf = g.buckets.at(-1);
    if (!inf || inf[0] !== Infinity) throw new Error(`${f.name}${key}: no le="+Inf" bucket`);
    if (g.count === undefined || g.sum === undefined) {
      throw new Error(`${f.name}${key}: _sum or _count missing`);
    }
    if (inf[1] !== g.count) throw new Error(`${f.name}${key}: +Inf bucket ${inf[1]} != _count ${g.count}`);
  }
}

/** Reads a `# HELP` or `# TYPE` line into `families` (other comments are ignored). */
function metaLine(line: string, where: string, families: Map<string, ParsedFamily>, done: Set<string>): void {
  const m = line.match(/^#[ \t]+(HELP|TYPE)[ \t]+(\S+)(?:[ \t]+(.*))?$/);
  if (!m) return;
  const [, kw, name, rest = ""] = m;
  if (!NAME.test(name!) || name!.match(NAME)![0] !== name) throw new Error(`${where}: invalid metric name`);
  if (done.has(name!)) throw new Error(`${where}: ${kw} for ${name}, whose samples came earlier`);
  const f = families.get(name!) ?? { name: name!, type: "untyped", samples: [] };
  families.set(name!, f);
  if (kw === "HELP") {
    if (f.help !== undefined) throw new Error(`${where}: second HELP for ${name}`);
    f.help = helpText(rest, where);
    return;
  }
  if (!TYPES.has(rest)) throw new Error(`${where}: unknown type ${JSON.stringify(rest)}`);
  if ((f as { typed?: boolean }).typed) throw new Error(`${where}: second TYPE for ${name}`);
  if (f.samples.length) throw new Error(`${where}: TYPE for ${name} after its samples`);
  Object.assign(f, { type: rest, typed: true });
}

/** Reads one sample line into its family. */
function sampleLine(line: string, where: string, families: Map<string, ParsedFamily>): string {
  const m = line.match(NAME);
  if (!m) throw new Error(`${where}: invalid metric name`);
  const name = m[0];
  let i = name.length;
  let labels: Record<string, string> = {};
  if (line[i] === "{") [labels, i] = labelSet(line, i, where);
  const fields = line.slice(i).trim().split(/[ \t]+/);
  if (line[i] !== " " && line[i] !== "\t") throw new Error(`${where}: no blank before the value`);
  if (fields.length < 1 || fields.length > 2) throw new Error(`${where}: expected value [timestamp]`);
  const value = goFloat(fields[0]!);
  if (value === undefined) throw new Error(`${where}: invalid value ${JSON.stringify(fields[0])}`);
  if (fields[1] !== undefined && !/^-?\d+$/.test(fields[1])) throw new Error(`${where}: invalid timestamp`);
  const fam = familyOf(name, families);
  const f = families.get(fam) ?? { name: fam, type: "untyped", samples: [] };
  families.set(fam, f);
  f.samples.push({ name, labels, value, ...(fields[1] ? { timestamp: Number(fields[1]) } : {}) });
  return fam;
}

/** Reads `text` by the format's grammar; throws at the first broken rule. */
export function parseExposition(text: string): Map<string, ParsedFamily> {
  const families = new Map<string, ParsedFamily>();
  const done = new Set<string>(); // families whose group of lines has ended
  let current: string | undefined;
  if (text && !text.endsWith("\n")) throw new Error("the text does not end with a newline");
  text.split("\n").forEach((raw, n) => {
    const where = `line ${n + 1} ${JSON.stringify(raw.slice(0, 80))}`;
    const line = raw.replace(/^[ \t]+/, "");
    if (!line) return;
    let fam: string | undefined;
    if (line.startsWith("#")) {
      metaLine(line, where, families, done);
      fam = line.match(/^#[ \t]+(?:HELP|TYPE)[ \t]+(\S+)/)?.[1];
      if (fam === undefined) return;
    } else {
      fam = sampleLine(line, where, families);
      if (done.has(fam)) throw new Error(`${where}: ${fam}'s lines are not grouped together`);
    }
    if (current !== undefined && fam !== current) done.add(current);
    current = fam;
  });
  for (const f of families.values()) if (f.type === "histogram") checkHistogram(f);
  return families;
}
