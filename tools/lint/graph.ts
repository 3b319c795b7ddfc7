/**
 * The repository as `deno lint` sees it: where its root is, and the import graph of its product code
 * (main.ts, src/, ffi/), so that `weft/no-cycles` (tools/lint/plugin.ts) can refuse an import cycle
 * although a lint rule looks at one file at a time.
 *
 * Run it on its own to list the cycles of a tree: `deno run -A tools/lint/graph.ts [root]` (exit 1 when
 * there is one).
 *
 * @module
 */
import { importsOf } from "./imports.ts";

/** The folders (and file) whose imports may never form a cycle. Tests, benches and tools may. */
export const GRAPH_ROOTS = ["main.ts", "src", "ffi"];

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

function realPath(path: string): string {
  try {
    return Deno.realPathSync(path);
  } catch {
    return path;
  }
}

/** True when `dir`'s deno.json (or deno.jsonc) names the lint plugin at `pluginUrl` in `lint.plugins`. */
function namesPlugin(dir: string, pluginUrl: string): boolean {
  for (const name of ["deno.json", "deno.jsonc"]) {
    let conf: { lint?: { plugins?: unknown } };
    try {
      // deno.jsonc's comments: only whole-line ones are dropped; enough to find `lint.plugins`.
      conf = JSON.parse(Deno.readTextFileSync(`${dir}/${name}`).replace(/^\s*\/\/.*$/gm, ""));
    } catch {
      continue;
    }
    const plugins = Array.isArray(conf.lint?.plugins) ? conf.lint.plugins : [];
    const base = new URL(`file://${dir}/`);
    return plugins.some((p) => typeof p === "string" && realUrl(new URL(p, base)) === pluginUrl);
  }
  return false;
}

function realUrl(url: URL): string {
  return url.protocol === "file:" ? `file://${realPath(decodeURIComponent(url.pathname))}` : url.href;
}

/**
 * The repository `filename` belongs to: the nearest folder above it whose deno.json loads the lint
 * plugin at `pluginUrl`, else the plugin's own repository (`../../` of tools/lint/) when the file lies
 * in it, else undefined. Real paths (symbolic links resolved), without a trailing `/`. A folder that
 * happens to be called `src` higher up (`/home/x/src/weft/src/…`) is never taken for the root.
 */
export function repoRoot(filename: string, pluginUrl: string): string | undefined {
  const file = realPath(filename);
  const plugin = realUrl(new URL(pluginUrl));
  for (let dir = file.slice(0, file.lastIndexOf("/")); dir; dir = dir.slice(0, dir.lastIndexOf("/"))) {
    if (namesPlugin(dir, plugin)) return dir;
  }
  if (!plugin.startsWith("file://")) return undefined;
  const own = realPath(new URL("../../", plugin).pathname).replace(/\/$/, "");
  return file.startsWith(`${own}/`) ? own : undefined;
}

/** `filename`'s path inside `root` with `/` separators (the absolute path when it lies outside). */
export function relativeTo(root: string | undefined, filename: string): string {
  const file = realPath(filename).replaceAll("\\", "/");
  return root && file.startsWith(`${root}/`) ? file.slice(root.length + 1) : file;
}

/** True for a repo-relative path whose imports are part of the graph. */
export function inGraph(path: string): boolean {
  return /\.tsx?$/.test(path) && GRAPH_ROOTS.some((r) => path === r || path.startsWith(`${r}/`));
}

/**
 * The repo-relative file a specifier written in `from` (repo-relative) names, or undefined when it names
 * no file of the repo (a package, `node:`, a remote URL).
 */
export function resolveSpecifier(from: string, specifier: string): string | undefined {
  if (specifier.startsWith("./") || specifier.startsWith("../")) {
    const p = new URL(specifier, `file:///${from}`).pathname.slice(1);
    return p.startsWith("../") ? undefined : decodeURIComponent(p);
  }
  return undefined;
}

/** Import graph: repo-relative file → the repo-relative files it imports. */
export type Graph = Map<string, Set<string>>;

function listFiles(root: string, rel: string, out: string[]): void {
  let entries: Deno.DirEntry[];
  try {
    entries = [...Deno.readDirSync(`${root}/${rel}`)];
  } catch {
    return;
  }
  for (const e of entries) {
    const p = `${rel}/${e.name}`;
    if (e.isDirectory && e.name !== "node_modules" && !e.name.startsWith(".")) listFiles(root, p, out);
    else if (e.isFile && inGraph(p)) out.push(p);
  }
}

/** The import graph of the product code under `root`, read from the files on disk. */
export function readGraph(root: string): Graph {
  const files: string[] = [];
  for (const r of GRAPH_ROOTS) {
    if (isFile(`${root}/${r}`)) files.push(r);
    else listFiles(root, r, files);
  }
  const graph: Graph = new Map();
  for (const f of files) {
    const targets = new Set<string>();
    for (const { specifier } of importsOf(Deno.readTextFileSync(`${root}/${f}`))) {
      const t = resolveSpecifier(f, specifier);
      if (t && inGraph(t)) targets.add(t);
    }
    graph.set(f, targets);
  }
  return graph;
}

/** The strongly connected components of `graph` with a cycle in them (two files or more, or a self-import). */
export function cyclicComponents(graph: Graph): Set<string>[] {
  // Tarjan's algorithm.
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: Set<string>[] = [];
  let next = 0;
  const visit = (v: string) => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) !== index.get(v)) return;
    const scc = new Set<string>();
    for (let w = stack.pop()!;; w = stack.pop()!) {
      onStack.delete(w);
      scc.add(w);
      if (w === v) break;
    }
    if (scc.size > 1 || graph.get(v)?.has(v)) out.push(scc);
  };
  for (const v of [...graph.keys()].sort()) if (!index.has(v)) visit(v);
  return out;
}

/**
 * The shortest cycle that starts with the edge `from` → `to` (both in one component), as the files in
 * order, `from` first and again last; undefined when `to` does not lead back to `from`.
 */
export function cycleThrough(graph: Graph, from: string, to: string): string[] | undefined {
  if (from === to) return [from, from];
  const prev = new Map<string, string>([[to, from]]);
  const queue = [to];
  for (let q = 0; q < queue.length; q++) {
    const v = queue[q]!;
    for (const w of [...(graph.get(v) ?? [])].sort()) {
      if (w === from) {
        const path = [from];
        for (let u = v; u !== from; u = prev.get(u)!) path.splice(1, 0, u);
        return [...path, from];
      }
      if (!prev.has(w)) {
        prev.set(w, v);
        queue.push(w);
      }
    }
  }
  return undefined;
}

/** Every cycle of `graph`, one per component, each as a list of files (first = last). */
export function cycles(graph: Graph): string[][] {
  return cyclicComponents(graph).map((scc) => {
    const [first] = [...scc].sort();
    const to = [...graph.get(first!)!].filter((t) => scc.has(t)).sort()[0]!;
    return cycleThrough(graph, first!, to)!;
  });
}

if (import.meta.main) {
  const root = realPath(Deno.args[0] ?? new URL("../../", import.meta.url).pathname).replace(/\/$/, "");
  const found = cycles(readGraph(root));
  for (const c of found) console.log(`import cycle: ${c.join(" → ")}`);
  console.log(`${found.length} import cycle(s) among ${GRAPH_ROOTS.join(", ")} of ${root}`);
  Deno.exit(found.length ? 1 : 0);
}
