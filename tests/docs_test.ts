/**
 * The docs check: what README.md, ARCHITECTURE.md, BENCHMARKS.md, CHANGELOG.md, docs/ and bench/README.md
 * say is checked against the tree, whatever they say at the time (other changes edit them freely):
 *
 * - every repository path they name exists, every relative link resolves (anchors included), every
 *   BENCHMARKS.md section they cite by name exists;
 * - every checked block (`<!-- docs-check: KIND NAME -->`, tests/helpers/docs.ts) has a known kind; the
 *   `run` blocks run here, each with a check of its output (`demo`, `kubectl` and `node` blocks run in
 *   tests/demo_test.ts and tests/migration_kube_test.ts);
 * - each BENCHMARKS.md plot names the CSV it is drawn from, and the tables beside the latest runs' plots
 *   hold that CSV's figures.
 */
import assert from "node:assert/strict";
import { allDocBlocks, type DocBlock, docFiles, docMarkers, REPO } from "./helpers/docs.ts";
import { hasBinary, ROOT } from "./helpers/topology.ts";
import { runIn } from "../src/lab/lab.ts";
import { withScratchNetns } from "./helpers/scratch_netns.ts";

const MAIN = `${REPO}main.ts`;
const read = (f: string) => Deno.readTextFileSync(`${REPO}${f}`);

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** GitHub's anchor of a heading. */
function anchor(heading: string): string {
  return heading.trim().toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, "").replace(/\s/g, "-");
}

function headings(text: string): string[] {
  return [...text.replace(/```[\s\S]*?```/g, "").matchAll(/^#{1,6} (.+)$/gm)].map((m) => m[1]!.trim());
}

/** Repository paths named in a text: `src/…`, `tests/…`, `bench/…`, `deploy/…`, `docs/…`, `tools/…`, `ffi/…`. */
export function namedPaths(text: string): string[] {
  const out = new Set<string>();
  for (
    const m of text.matchAll(
      /(?<![\w./@-])((?:src|tests|bench|deploy|docs|tools|ffi|\.github)\/[^\s`'"),;:|\]#]*)/g,
    )
  ) {
    let p = m[1]!.replace(/[.…]+$/, "");
    if (/[<>*{}…|]/.test(p) || /\bx_test\.ts$/.test(p)) continue; // a pattern, not a path
    p = p.replace(/'s$/, "");
    out.add(p);
  }
  return [...out];
}

Deno.test("every repository path the docs name exists", () => {
  const missing: string[] = [];
  for (const f of docFiles()) {
    for (const p of namedPaths(read(f))) if (!exists(`${REPO}${p}`)) missing.push(`${f}: ${p}`);
  }
  assert.deepEqual(missing, []);
});

Deno.test("every relative link of the docs resolves, anchors included", () => {
  const broken: string[] = [];
  for (const f of docFiles()) {
    const dir = f.includes("/") ? f.slice(0, f.lastIndexOf("/") + 1) : "";
    const text = read(f);
    for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = m[1]!;
      if (/^[a-z]+:/.test(target)) continue; // https:, mailto:
      const [file, hash] = target.split("#") as [string, string | undefined];
      const path = file ? new URL(file, `file://${REPO}${dir}`).pathname : `${REPO}${f}`;
      if (!exists(path)) {
        broken.push(`${f}: ${target}`);
        continue;
      }
      if (
        hash && path.endsWith(".md") && !headings(Deno.readTextFileSync(path)).some((h) => anchor(h) === hash)
      ) {
        broken.push(`${f}: ${target} (no such heading)`);
      }
    }
  }
  assert.deepEqual(broken, []);
});

Deno.test("every BENCHMARKS.md section the docs cite by name exists", () => {
  const sections = headings(read("BENCHMARKS.md")).map((h) => h.toLowerCase());
  const has = (name: string) => sections.some((s) => s.startsWith(name.toLowerCase()));
  const missing: string[] = [];
  for (const f of docFiles()) {
    const text = read(f).replace(/\s+/g, " ");
    for (const m of text.matchAll(/BENCHMARKS\.md[,:]? (?:section )?"([^"]+)"/g)) {
      if (!has(m[1]!)) missing.push(`${f}: BENCHMARKS.md "${m[1]}"`);
    }
  }
  // Inside BENCHMARKS.md: `"Agent scale" below`, `"flanneld, the reference" above`.
  for (const m of read("BENCHMARKS.md").replace(/\s+/g, " ").matchAll(/"([^"]+)" (?:above|below)/g)) {
    if (!has(m[1]!)) missing.push(`BENCHMARKS.md: "${m[1]}"`);
  }
  assert.deepEqual(missing, []);
});

/** The checks of the `run` blocks, by name: each runs the block's commands and checks what they print. */
const RUN: Record<string, (b: DocBlock, tmp: string) => Promise<void>> = {
  async "cleanup-dry-run"(b) {
    assert.deepEqual(b.lines, ["weft cleanup"]);
    if (!ROOT) return;
    // On a node where weft never ran (a fresh namespace): a dry run that finds nothing and changes nothing.
    await withScratchNetns("doc", async (ns) => {
      const r = await runIn(ns, [Deno.execPath(), "run", "-A", "--no-check", MAIN, "cleanup"]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^weft cleanup: dry run, nothing changed/);
      assert.match(r.stdout, /nothing of weft's to remove/);
    });
  },
  "plot-agent-scale": (b, tmp) => plot(b, tmp),
  "plot-cni": (b, tmp) => plot(b, tmp),
};

/** Runs a plot command with its output sent to `tmp` (the committed PNG stays); checks a PNG comes out. */
async function plot(b: DocBlock, tmp: string): Promise<void> {
  assert.equal(b.lines.length, 1);
  const line = b.lines[0]!;
  const png = /(bench\/results\/[\w.-]+\.png)/.exec(line)?.[1];
  assert.ok(png && exists(`${REPO}${png}`), `${line} names a committed PNG`);
  for (const csv of line.match(/bench\/results\/[\w.-]+\.csv/g) ?? []) {
    assert.ok(exists(`${REPO}${csv}`), csv);
  }
  if (!hasBinary("gnuplot")) return; // nothing to draw with; the paths were checked
  const out = `${tmp}/${png.split("/").pop()}`;
  const cmd = line.replace(png, out).replace(/^deno /, `${Deno.execPath()} `);
  const r = await new Deno.Command("sh", { args: ["-c", cmd], cwd: REPO, stdout: "piped", stderr: "piped" })
    .output();
  assert.equal(r.code, 0, new TextDecoder().decode(r.stderr));
  const head = Deno.readFileSync(out).subarray(0, 8);
  assert.deepEqual([...head], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], `${out} is a PNG`);
}

Deno.test("every checked block has a known kind, and the run blocks run with the output they promise", async (t) => {
  for (const f of docFiles()) {
    const text = read(f);
    const blocks = allDocBlocks().filter((b) => b.file === f);
    assert.equal(
      docMarkers(text).length,
      blocks.length,
      `${f}: every docs-check marker sits before a fenced block`,
    );
  }
  const blocks = allDocBlocks();
  for (const b of blocks) {
    assert.ok(["run", "demo", "kubectl", "node"].includes(b.kind), `${b.file}: kind ${b.kind}`);
  }
  const names = blocks.map((b) => `${b.kind} ${b.name}`);
  assert.equal(new Set(names).size, names.length, "names are unique per kind");
  const tmp = await Deno.makeTempDir({ prefix: "weft-docs-" });
  try {
    for (const b of blocks.filter((x) => x.kind === "run")) {
      const check = RUN[b.name];
      assert.ok(check, `${b.file}: the run block ${b.name} has a check in tests/docs_test.ts`);
      await t.step(`${b.file}: ${b.name}`, () => check(b, tmp));
    }
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});

/** The section of BENCHMARKS.md from `heading` to the next heading of its level or higher. */
function section(text: string, heading: string): string {
  const i = text.indexOf(heading);
  assert.ok(i >= 0, heading);
  const level = /^#+/.exec(heading)![0].length;
  const rest = text.slice(i + heading.length);
  const end = rest.search(new RegExp(`\\n#{1,${level}} `));
  return end < 0 ? rest : rest.slice(0, end);
}

function csvRows(file: string): Record<string, string>[] {
  const [head, ...lines] = read(file).trim().split("\n");
  const cols = head!.split(",");
  return lines.map((l) => Object.fromEntries(l.split(",").map((v, i) => [cols[i]!, v])));
}

Deno.test("each BENCHMARKS.md plot names its CSV, and the latest runs' tables hold that CSV's figures", () => {
  const text = read("BENCHMARKS.md");
  for (const m of text.matchAll(/!\[[^\]]*\]\((bench\/results\/[\w.-]+\.png)\)/g)) {
    // The command drawing it, in the same section, names the CSV it reads.
    const before = text.slice(0, m.index);
    const cmd = before.slice(before.lastIndexOf("```sh")).split("\n").find((l) => l.includes(m[1]!));
    assert.ok(cmd, `${m[1]} has the command that draws it right before it`);
    assert.match(cmd!, /bench\/results\/[\w.-]+\.csv/, `${m[1]}'s command names its CSV`);
  }
  // Agent scale, latest run: every figure of agent_scale_final.csv is in the table under its plot.
  const scale = section(text, "## Agent scale");
  const table = scale.slice(scale.indexOf("agent_scale_final.png"), scale.indexOf("### "));
  for (const r of csvRows("bench/results/agent_scale_final.csv")) {
    const rows = table.split("\n").filter((l) => l.startsWith(`| ${r.peers} `));
    const cell = (measure: string) => rows.find((l) => l.includes(measure))?.split("|")[3]?.trim();
    assert.equal(cell("start → all routes"), r.agent_start_s, `start at ${r.peers}`);
    assert.equal(cell("CPU s"), r.agent_cpu_s, `CPU at ${r.peers}`);
    assert.equal(cell("RSS MB"), `${r.agent_rss_mb} / ${r.agent_rss_max_mb}`, `RSS at ${r.peers}`);
  }
  // CNI latency, latest run: the medians of cni_latency_final.csv, rounded as printed.
  const cni = section(text, "## CNI latency");
  const cniTable = cni.slice(cni.indexOf("cni_latency_final.png"), cni.indexOf("### "));
  const row = (label: string) =>
    cniTable.split("\n").find((l) => l.startsWith(`| ${label} `))?.split("|").slice(2, 5).map((c) =>
      c.trim()
    );
  const csv = csvRows("bench/results/cni_latency_final.csv");
  const medians = (plugin: string, op: string) =>
    ["1", "50", "250"].map((lv) =>
      Number(csv.find((x) => x.level === lv && x.plugin === plugin && x.op === op)!.median_ms)
    );
  // (The bench prints one decimal of the unrounded median, the CSV two: they agree within 0.05.)
  const same = (label: string, plugin: string, op: string) => {
    const printed = row(label)?.map(Number) ?? [];
    const m = medians(plugin, op);
    assert.equal(printed.length, 3, label);
    printed.forEach((v, i) =>
      assert.ok(Math.abs(v - m[i]!) <= 0.051, `${label}: ${v} vs ${m[i]} in the CSV`)
    );
  };
  same("weft ADD, via agent", "weft via agent", "ADD");
  same("weft ADD, in-process", "weft", "ADD");
  same("bridge+host-local ADD", "debian", "ADD");
  same("weft DEL, via agent", "weft via agent", "DEL");
  same("weft DEL, in-process", "weft", "DEL");
  same("an empty Deno script", "empty Deno script", "run");
});
