/**
 * weft's own lint rules, run by `deno lint` (deno.json `lint.plugins`):
 * - `weft/layers`: an import that crosses the layering of ARCHITECTURE.md (see layers.ts);
 * - `weft/max-function-lines`: a function in src/ or ffi/ longer than 80 lines. Where a longer one is
 *   right, say why in `// deno-lint-ignore weft/max-function-lines -- <why>`.
 *
 * @module
 */
import { layerViolation } from "./layers.ts";

/** Longest function body allowed, in lines. */
const MAX_FUNCTION_LINES = 80;

/** The path of `filename` relative to the repo (the folder holding `src/`), with `/` separators. */
function repoPath(filename: string): string {
  const f = filename.replaceAll("\\", "/");
  const m = /\/(src\/.*|ffi\/.*|main\.ts|tests\/.*|bench\/.*|tools\/.*)$/.exec(f);
  return m ? m[1]! : f;
}

const plugin: Deno.lint.Plugin = {
  name: "weft",
  rules: {
    "layers": {
      create(context) {
        const from = repoPath(context.filename);
        const check = (node: Deno.lint.Node, source: Deno.lint.Node | null | undefined) => {
          if (!source || source.type !== "Literal" || typeof source.value !== "string") return;
          const why = layerViolation(from, source.value);
          if (why) context.report({ node, message: why });
        };
        return {
          ImportDeclaration: (n) => check(n, n.source),
          ExportAllDeclaration: (n) => check(n, n.source),
          ExportNamedDeclaration: (n) => check(n, n.source),
          ImportExpression: (n) => check(n, n.source),
          TSImportType: (n) => check(n, (n.argument as { literal?: Deno.lint.Node }).literal),
        };
      },
    },
    "max-function-lines": {
      create(context) {
        const path = repoPath(context.filename);
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
