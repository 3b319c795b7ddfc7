/**
 * weft's own lint rules, run by `deno lint` (deno.json `lint.plugins`):
 * - `weft/layers`: an import that crosses the layering of ARCHITECTURE.md (see layers.ts), or an npm/jsr
 *   package loaded by a part that may not load it;
 * - `weft/no-cycles`: an import that closes a cycle among main.ts, src/ and ffi/ (type-only and dynamic
 *   imports included). A rule sees one file, so the graph of the others is read from disk (graph.ts)
 *   once per run, the linted file's own imports taken from its syntax tree;
 * - `weft/max-function-lines`: a function in src/ or ffi/ longer than 80 lines. Where a longer one is
 *   right, say why in `// deno-lint-ignore weft/max-function-lines -- <why>`.
 *
 * Paths are taken relative to the repository the file is in (graph.ts `repoRoot`: the folder whose
 * deno.json loads this plugin), so a checkout under a folder called `src/` is read right.
 *
 * @module
 */
import {
  cycleThrough,
  cyclicComponents,
  type Graph,
  inGraph,
  readGraph,
  relativeTo,
  repoRoot,
  resolveSpecifier,
} from "./graph.ts";
import { layerViolation } from "./layers.ts";

/** Longest function body allowed, in lines. */
const MAX_FUNCTION_LINES = 80;

/**
 * How long a graph read from disk is used again: one `deno lint` run reads it once; an editor's
 * long-lived lint server sees saved changes of other files within this time.
 */
const GRAPH_TTL_MS = 10_000;

const roots = new Map<string, string | undefined>();
const graphs = new Map<string, { at: number; graph: Graph }>();

/** The repo-relative path of `filename` and its repo root (cached per folder). */
function locate(filename: string): { root: string | undefined; path: string } {
  const dir = filename.slice(0, filename.lastIndexOf("/"));
  if (!roots.has(dir)) roots.set(dir, repoRoot(filename, import.meta.url));
  const root = roots.get(dir);
  return { root, path: relativeTo(root, filename) };
}

function graphOf(root: string): Graph {
  const cached = graphs.get(root);
  if (cached && Date.now() - cached.at < GRAPH_TTL_MS) return cached.graph;
  const graph = readGraph(root);
  graphs.set(root, { at: Date.now(), graph });
  return graph;
}

type ImportNode = { node: Deno.lint.Node; source: Deno.lint.Node | null | undefined };

/** The literal specifier of an import-like node, if it has one. */
function specifierOf(source: Deno.lint.Node | null | undefined): string | undefined {
  return source?.type === "Literal" && typeof source.value === "string" ? source.value : undefined;
}

/** Visitors that hand every import of a file, with its node, to `each`. */
function onImports(each: (i: ImportNode) => void): Deno.lint.LintVisitor {
  return {
    ImportDeclaration: (n) => each({ node: n, source: n.source }),
    ExportAllDeclaration: (n) => each({ node: n, source: n.source }),
    ExportNamedDeclaration: (n) => each({ node: n, source: n.source }),
    ImportExpression: (n) => each({ node: n, source: n.source }),
    TSImportType: (n) => each({ node: n, source: (n.argument as { literal?: Deno.lint.Node }).literal }),
  };
}

const plugin: Deno.lint.Plugin = {
  name: "weft",
  rules: {
    "layers": {
      create(context) {
        const { path } = locate(context.filename);
        return onImports(({ node, source }) => {
          const spec = specifierOf(source);
          const why = spec === undefined ? undefined : layerViolation(path, spec);
          if (why) context.report({ node, message: why });
        });
      },
    },
    "no-cycles": {
      create(context) {
        const { root, path } = locate(context.filename);
        if (!root || !inGraph(path)) return {};
        const imports: { node: Deno.lint.Node; target: string }[] = [];
        return {
          ...onImports(({ node, source }) => {
            const spec = specifierOf(source);
            const target = spec === undefined ? undefined : resolveSpecifier(path, spec);
            if (target && inGraph(target)) imports.push({ node, target });
          }),
          "Program:exit"() {
            // The graph on disk, with this file's imports as its syntax tree has them (maybe unsaved).
            const graph = new Map(graphOf(root));
            graph.set(path, new Set(imports.map((i) => i.target)));
            const scc = cyclicComponents(graph).find((c) => c.has(path));
            if (!scc) return;
            for (const { node, target } of imports) {
              const cycle = scc.has(target) ? cycleThrough(graph, path, target) : undefined;
              if (cycle) {
                context.report({
                  node,
                  message: `import cycle: ${
                    cycle.join(" → ")
                  } (main.ts, src/ and ffi/ import downwards only)`,
                });
              }
            }
          },
        };
      },
    },
    "max-function-lines": {
      create(context) {
        const { path } = locate(context.filename);
        if (!/^(src|ffi)\//.test(path) || path.endsWith("_test.ts")) return {};
        const check = (node: Deno.lint.Node) => {
          const [a, b] = node.range;
          const lines = context.sourceCode.text.slice(a, b).split("\n").length;
          if (lines > MAX_FUNCTION_LINES) {
            context.report({
              node,
              message: `function of ${lines} lines (at most ${MAX_FUNCTION_LINES}): split it, or say why not`,
            });
          }
        };
        return { FunctionDeclaration: check, FunctionExpression: check, ArrowFunctionExpression: check };
      },
    },
  },
};

export default plugin;
