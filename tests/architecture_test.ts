/**
 * The layering of ARCHITECTURE.md holds: the `weft/layers` lint rule (tools/lint/) refuses the imports
 * the design forbids, `weft/no-cycles` refuses any import cycle among main.ts, src/ and ffi/, `deno lint`
 * reports both on a real file (in a checkout that lives under a folder called `src/`), and the tree as
 * it is passes both. ARCHITECTURE.md's tables are layers.ts's, entry for entry.
 */
import assert from "node:assert/strict";
import { BACKENDS, BASE, LAYERS, layerViolation, packageOf, PACKAGES, partOf } from "../tools/lint/layers.ts";
import { cycles, type Graph, readGraph, repoRoot } from "../tools/lint/graph.ts";
import { importsOf } from "../tools/lint/imports.ts";

const ROOT = new URL("..", import.meta.url).pathname.replace(/\/$/, "");

Deno.test("layerViolation() refuses backend → agent, datapath → etcd, agent → any store's own code", () => {
  assert.match(
    layerViolation("src/backend/vxlan/vxlan.ts", "../../agent/agent.ts")!,
    /src\/backend\/vxlan may not import/,
  );
  assert.match(
    layerViolation("src/datapath/reconciler.ts", "../lease/etcd/etcd_registry.ts")!,
    /may not import/,
  );
  assert.match(layerViolation("src/datapath/reconciler.ts", "../lease/etcd/manager.ts")!, /may not import/);
  assert.match(layerViolation("src/agent/agent.ts", "../lease/etcd/mod.ts")!, /may not import/);
  assert.match(layerViolation("src/agent/agent.ts", "../lease/kube/lease_source.ts")!, /may not import/);
  assert.match(layerViolation("src/backend/vxlan/vxlan.ts", "etcd3")!, /may not load etcd3/);
  assert.match(layerViolation("src/cni/add.ts", "commander")!, /commander/);
  assert.match(layerViolation("src/cni/main.ts", "@commander-js/extra-typings")!, /may not load/);
  assert.match(layerViolation("src/net/ip.ts", "../config/net_conf.ts")!, /may not import/);
  assert.match(layerViolation("ffi/links.ts", "../src/agent/agent.ts")!, /ffi may not import/);
  assert.match(layerViolation("ffi/addrs.ts", "../src/net/ip.ts")!, /ffi may not import/);
  // One backend never reaches into another; the agent sees the Backend seam, not a backend's folder.
  assert.match(layerViolation("src/backend/vxlan/vxlan.ts", "../udp/peers.ts")!, /may not import/);
  assert.match(layerViolation("src/agent/status.ts", "../backend/udp/forwarder.ts")!, /may not import/);
  // The shared lease code stays below both stores, and the stores apart from each other.
  assert.match(layerViolation("src/lease/lease.ts", "./etcd/manager.ts")!, /may not import/);
  assert.match(layerViolation("src/lease/etcd/manager.ts", "../kube/node_lease.ts")!, /may not import/);
  // Product code never reaches into tests, benches or tools, nor out of the repository.
  assert.match(layerViolation("src/lab/lab.ts", "../../tests/helpers/etcd.ts")!, /outside main\.ts, src\//);
  assert.match(layerViolation("src/net/ip.ts", "../../../elsewhere.ts")!, /outside/);
});

Deno.test("layerViolation() reads npm: and jsr: specifiers with versions and subpaths", () => {
  assert.match(layerViolation("src/agent/agent.ts", "npm:etcd3@1.1.2")!, /may not load etcd3/);
  assert.match(layerViolation("src/agent/agent.ts", "npm:etcd3@1.1.2/lib/index.js")!, /may not load etcd3/);
  assert.match(layerViolation("src/agent/agent.ts", "etcd3/lib/index.js")!, /may not load etcd3/);
  assert.match(
    layerViolation("src/cni/main.ts", "npm:@commander-js/extra-typings@15.1.0")!,
    /may not load @commander-js\/extra-typings/,
  );
  assert.match(
    layerViolation("src/kube/client.ts", "yaml")!,
    /may not load yaml \(only src\/kube\/config\.ts\)/,
  );
  // A package deno.json does not list may not be loaded by any part, whatever its registry.
  assert.match(layerViolation("src/cli/main.ts", "npm:left-pad@1.3.0")!, /left-pad is not in deno\.json/);
  assert.match(layerViolation("src/cli/main.ts", "jsr:@std/assert@1/equals")!, /@std\/assert is not in/);
  assert.match(layerViolation("src/net/ip.ts", "https://example.com/x.ts")!, /only relative paths/);
  for (
    const [from, spec] of [
      ["src/lease/etcd/etcd_registry.ts", "npm:etcd3@1.1.2"],
      ["src/cli/main.ts", "npm:@commander-js/extra-typings@15.1.0/esm.mjs"],
      ["src/log.ts", "@logtape/logtape"],
      ["src/kube/config.ts", "yaml"],
      ["src/net/iface.ts", "node:os"],
      ["tests/deploy_test.ts", "yaml"],
    ]
  ) assert.equal(layerViolation(from!, spec!), undefined, `${from} → ${spec}`);
  assert.equal(packageOf("npm:@scope/pkg@1.2.3/sub/path.js"), "@scope/pkg");
  assert.equal(packageOf("npm:/pkg@^2"), "pkg");
  assert.equal(packageOf("jsr:@std/path@1"), "@std/path");
  assert.equal(packageOf("@commander-js/extra-typings"), "@commander-js/extra-typings");
  assert.equal(packageOf("node:fs"), undefined);
  assert.equal(packageOf("../x.ts"), undefined);
});

Deno.test("layers.ts lists exactly the packages of deno.json, and each loader exists", () => {
  const conf = JSON.parse(Deno.readTextFileSync(`${ROOT}/deno.json`)) as { imports: Record<string, string> };
  assert.deepEqual(Object.keys(PACKAGES).sort(), Object.keys(conf.imports).sort());
  for (const [pkg, parts] of Object.entries(PACKAGES)) {
    for (const p of parts) assert.ok(Deno.statSync(`${ROOT}/${p}`), `${pkg}: ${p}`);
  }
});

Deno.test("layerViolation() allows the design's imports", () => {
  for (
    const [from, spec] of [
      ["src/agent/agent.ts", "../lease/source.ts"],
      ["src/agent/agent.ts", "../lease/lease.ts"],
      ["src/agent/agent.ts", "../backend/registry.ts"],
      ["src/backend/registry.ts", "./vxlan/vxlan.ts"],
      ["src/backend/hostgw/hostgw.ts", "../route_via.ts"],
      ["src/backend/vxlan/vxlan.ts", "../../datapath/reconciler.ts"],
      ["src/backend/vxlan/vxlan.ts", "../../../ffi/mod.ts"],
      ["src/datapath/reconciler.ts", "../lease/lease.ts"],
      ["src/lease/etcd/etcd_registry.ts", "etcd3"],
      ["src/lease/etcd/manager.ts", "../../async.ts"],
      ["src/lease/etcd/manager.ts", "../source.ts"],
      ["src/lease/kube/lease_source.ts", "../../kube/client.ts"],
      ["src/cli/agent.ts", "../lease/etcd/mod.ts"],
      ["src/cli/main.ts", "@commander-js/extra-typings"],
      ["main.ts", "./src/cni/main.ts"],
      ["src/net/ip.ts", "../../ffi/ip.ts"],
      ["src/backend/vxlan/vxlan_test.ts", "../../../tests/helpers/scratch_netns.ts"],
      ["tests/agent_e2e_test.ts", "../src/agent/agent.ts"],
    ]
  ) assert.equal(layerViolation(from!, spec!), undefined, `${from} → ${spec}`);
});

Deno.test("partOf() names folders, the base files and main.ts", () => {
  assert.equal(partOf("src/agent/agent.ts"), "src/agent");
  assert.equal(partOf("src/lease/etcd/manager.ts"), "src/lease/etcd");
  assert.equal(partOf("src/lease/lease.ts"), "src/lease");
  assert.equal(partOf("src/backend/vxlan/vxlan.ts"), "src/backend/vxlan");
  assert.equal(partOf("src/cli/doctor/checks.ts"), "src/cli");
  assert.equal(partOf("src/log.ts"), "src/base");
  assert.equal(partOf("src/self_command.ts"), "src/self_command.ts");
  assert.equal(partOf("main.ts"), "main.ts");
  assert.equal(partOf("ffi/mod.ts"), "ffi");
  assert.equal(partOf("tests/helpers/etcd.ts"), undefined);
});

Deno.test("importsOf() finds static, type-only, re-export and dynamic imports, and nothing in comments or strings", () => {
  const text = [
    `import { a } from "./a.ts";`,
    `import type { B } from './b.ts';`,
    `export * from "./c.ts";`,
    `export { d } from "./d.ts";`,
    `import "./e.ts";`,
    `const f = await import("./f.ts");`,
    `type G = typeof import("./g.ts");`,
    `// import { no } from "./comment.ts";`,
    `/** @example import { no } from "./jsdoc.ts"; */`,
    'const code = `import { no } from "./template.ts"; ${await import("./h.ts")}`;',
    `const s = "import('./string.ts')";`,
    `const re = /"/; const half = 1 / 2; // "unbalanced`,
    `const dyn = await import(CLI_MODULE); const obj = { from: "./key.ts" }; x.import("./method.ts");`,
  ].join("\n");
  assert.deepEqual(
    importsOf(text).map((i) => `${i.kind} ${i.specifier}`),
    [
      "static ./a.ts",
      "static ./b.ts",
      "static ./c.ts",
      "static ./d.ts",
      "static ./e.ts",
      "call ./f.ts",
      "call ./g.ts",
      "call ./h.ts",
    ],
  );
});

Deno.test("cycles() finds every cycle of a graph, one per component, and only those", () => {
  const g: Graph = new Map([
    ["a", new Set(["b"])],
    ["b", new Set(["c"])],
    ["c", new Set(["a", "d"])],
    ["d", new Set(["e"])],
    ["e", new Set<string>()],
    ["f", new Set(["f"])],
    ["g", new Set(["e", "a"])],
  ]);
  assert.deepEqual(cycles(g), [["a", "b", "c", "a"], ["f", "f"]]);
  assert.deepEqual(cycles(new Map([["a", new Set(["b"])], ["b", new Set<string>()]])), []);
});

Deno.test("the import graph read from the files is deno's own, edge for edge", async () => {
  const graph = readGraph(ROOT);
  const file = (s: string | undefined) =>
    s?.startsWith(`file://${ROOT}/`) ? decodeURIComponent(s.slice(ROOT.length + 8)) : undefined;
  let compared = 0;
  // The CLI's and the CNI plugin's graphs hold every product module (main.ts imports the CLI by a
  // computed specifier, so it is a root of its own).
  for (const root of ["main.ts", "src/cli/main.ts", "src/cni/main.ts"]) {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", root],
      cwd: ROOT,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
      modules: {
        specifier: string;
        dependencies?: { code?: { specifier?: string }; type?: { specifier?: string } }[];
      }[];
    };
    for (const m of info.modules) {
      const from = file(m.specifier);
      if (!from || !graph.has(from)) continue;
      const deps = new Set(
        (m.dependencies ?? []).flatMap((d) => [file(d.code?.specifier), file(d.type?.specifier)])
          .filter((t): t is string => !!t && graph.has(t)),
      );
      assert.deepEqual([...graph.get(from)!].sort(), [...deps].sort(), from);
      compared++;
    }
  }
  assert.ok(compared > 100, `${compared} modules compared`);
});

Deno.test("the tree passes: no import cycle, no import across the layers", () => {
  const graph = readGraph(ROOT);
  assert.ok(graph.size > 100, `${graph.size} files read`);
  assert.deepEqual(cycles(graph), []);
  const violations: string[] = [];
  for (const file of graph.keys()) {
    for (const { specifier } of importsOf(Deno.readTextFileSync(`${ROOT}/${file}`))) {
      const why = layerViolation(file, specifier);
      if (why) violations.push(why);
    }
  }
  assert.deepEqual(violations, []);
});

/** The rows of the markdown table under `heading` in ARCHITECTURE.md: [first cell, second cell]. */
function tableRows(heading: string): [string, string][] {
  const text = Deno.readTextFileSync(`${ROOT}/ARCHITECTURE.md`);
  const at = text.indexOf(heading);
  assert.ok(at >= 0, `ARCHITECTURE.md has "${heading}"`);
  const rows: [string, string][] = [];
  for (const line of text.slice(at).split("\n").slice(1)) {
    if (!line.startsWith("|")) {
      if (rows.length) break;
      continue;
    }
    const [a, b] = line.split("|").slice(1, 3).map((c) => c.trim());
    if (a && b && !/^-+$/.test(a) && a !== "part" && a !== "package") rows.push([a, b]);
  }
  return rows;
}

const ticks = (cell: string) => [...cell.matchAll(/`([^`]+)`/g)].map((m) => m[1]!);

Deno.test("ARCHITECTURE.md's layer table is layers.ts's, part for part and entry for entry", () => {
  const table: Record<string, string[]> = {};
  for (const [part, allowed] of tableRows("<!-- layers.ts LAYERS -->")) {
    const names = ticks(part);
    // `src/backend/{vxlan,hostgw,udp,wireguard}` is one row for the four backends; the base files one row.
    const brace = /^(.*)\{(.*)\}$/.exec(names[0] ?? "");
    const keys = brace
      ? brace[2]!.split(",").map((b) => brace[1] + b)
      : names.length > 1
      ? ["src/base"]
      : names;
    if (names.length > 1) assert.deepEqual(names, BASE, "the base row names the base files");
    for (const k of keys) table[k] = ticks(allowed);
  }
  assert.deepEqual(Object.keys(table).sort(), Object.keys(LAYERS).sort());
  for (const [part, entries] of Object.entries(LAYERS)) {
    assert.deepEqual(table[part]!.slice().sort(), entries.slice().sort(), part);
  }
  assert.ok(BACKENDS.every((b) => b in table));
});

Deno.test("ARCHITECTURE.md's package table is layers.ts's", () => {
  const table = Object.fromEntries(
    tableRows("<!-- layers.ts PACKAGES -->").map(([pkg, parts]) => [ticks(pkg)[0]!, ticks(parts)]),
  );
  assert.deepEqual(table, PACKAGES);
});

/** Writes `files` (path → text) under `dir`. */
function writeTree(dir: string, files: Record<string, string>): void {
  for (const [path, text] of Object.entries(files)) {
    Deno.mkdirSync(`${dir}/${path.slice(0, path.lastIndexOf("/"))}`, { recursive: true });
    Deno.writeTextFileSync(`${dir}/${path}`, text);
  }
}

Deno.test("deno lint, in a checkout under a folder named src/, reports an upward import, an import cycle and an 80+ line function", async () => {
  const tmp = await Deno.makeTempDir({ prefix: "weft-arch-" });
  try {
    // A folder called src/ above the repository must not be taken for the repository's src/.
    const repo = `${tmp}/src/weft`;
    const lint: Record<string, string> = {};
    for (const e of Deno.readDirSync(`${ROOT}/tools/lint`)) {
      if (e.name.endsWith(".ts")) {
        lint[`tools/lint/${e.name}`] = Deno.readTextFileSync(`${ROOT}/tools/lint/${e.name}`);
      }
    }
    const long = Array.from({ length: 85 }, (_, i) => `  const v${i} = ${i};\n  void v${i};`).join("\n");
    writeTree(repo, {
      ...lint,
      "deno.json": JSON.stringify({ lint: { plugins: ["./tools/lint/plugin.ts"] } }),
      "src/agent/agent.ts": "export const x = 1;\n",
      "src/backend/bad.ts":
        `import { x } from "../agent/agent.ts";\nexport function f(): number {\n${long}\n  return x;\n}\n`,
      // a → b (type only) → c (dynamic) → a: a cycle all the same.
      "src/net/a.ts": `import type { B } from "./b.ts";\nexport type A = { b?: B };\n`,
      "src/net/b.ts": `export type B = number;\nexport function load() {\n  return import("./c.ts");\n}\n`,
      "src/net/c.ts": `import type { A } from "./a.ts";\nexport const c: A = {};\n`,
      "src/net/ok.ts": `import type { A } from "./a.ts";\nexport const ok: A = {};\n`,
    });
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["lint", "--json"],
      cwd: repo,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.notEqual(out.code, 0, "lint must fail");
    const diags = (JSON.parse(new TextDecoder().decode(out.stdout)) as {
      diagnostics: { code: string; message: string; filename: string }[];
    }).diagnostics.map((d) => ({
      ...d,
      filename: d.filename.replace(/^file:\/\//, "").slice(repo.length + 1),
    }));
    const of = (code: string) => diags.filter((d) => d.code === code);
    const layers = of("weft/layers");
    assert.equal(layers.length, 1, JSON.stringify(layers));
    assert.equal(layers[0]!.filename, "src/backend/bad.ts");
    assert.match(layers[0]!.message, /^src\/backend may not import src\/agent\/agent\.ts \(allowed: /);
    assert.deepEqual(of("weft/max-function-lines").map((d) => d.filename), ["src/backend/bad.ts"]);
    assert.deepEqual(
      of("weft/no-cycles").map((d) => `${d.filename}: ${d.message.replace(/ \(.*$/, "")}`).sort(),
      [
        "src/net/a.ts: import cycle: src/net/a.ts → src/net/b.ts → src/net/c.ts → src/net/a.ts",
        "src/net/b.ts: import cycle: src/net/b.ts → src/net/c.ts → src/net/a.ts → src/net/b.ts",
        "src/net/c.ts: import cycle: src/net/c.ts → src/net/a.ts → src/net/b.ts → src/net/c.ts",
      ],
    );
    assert.equal(diags.length, 5, JSON.stringify(diags, null, 1));
    assert.equal(repoRoot(`${repo}/src/net/a.ts`, new URL(`file://${repo}/tools/lint/plugin.ts`).href), repo);
  } finally {
    await Deno.remove(tmp, { recursive: true });
  }
});
