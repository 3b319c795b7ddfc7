/**
 * The documentation's checked blocks: a fenced block preceded by `<!-- docs-check: KIND NAME -->` is a
 * command sequence a test runs and checks. Kinds and the tests that run them: `run` (tests/docs_test.ts,
 * one checker per NAME), `demo` (tests/demo_test.ts, after `weft demo up`), `kubectl` and `node`
 * (tests/migration_kube_test.ts, against the test API server and on node namespaces). Every test asserts it
 * ran every block of its kind, and tests/docs_test.ts that no block has another kind.
 *
 * @module
 */

/** The repository root (with a trailing slash). */
export const REPO = new URL("../../", import.meta.url).pathname;

/** The markdown files the docs check reads, repo-relative. */
export function docFiles(): string[] {
  const out = ["README.md", "ARCHITECTURE.md", "BENCHMARKS.md", "CHANGELOG.md", "bench/README.md"];
  for (const e of Deno.readDirSync(`${REPO}docs`)) if (e.name.endsWith(".md")) out.push(`docs/${e.name}`);
  return out.filter((f) => {
    try {
      return Deno.statSync(`${REPO}${f}`).isFile;
    } catch {
      return false;
    }
  });
}

/** One checked block. */
export interface DocBlock {
  /** The file it is in. */
  file: string;
  /** Its kind (`run`, `demo`, `kubectl`, `node`). */
  kind: string;
  /** Its name, unique per kind. */
  name: string;
  /** Its command lines (backslash continuations joined, comments and blank lines dropped). */
  lines: string[];
}

/** The checked blocks of one markdown text. */
export function docBlocks(text: string, file = ""): DocBlock[] {
  const out: DocBlock[] = [];
  for (const m of text.matchAll(/<!-- docs-check: (\S+) (\S+) -->\s*\n\s*```\w*\n([\s\S]*?)```/g)) {
    const lines = m[3]!.replace(/\\\n\s*/g, "").split("\n").map((l) => l.trim())
      .filter((l) => l && !l.startsWith("#"));
    out.push({ file, kind: m[1]!, name: m[2]!, lines });
  }
  return out;
}

/** Every checked block of every doc file. */
export function allDocBlocks(): DocBlock[] {
  return docFiles().flatMap((f) => docBlocks(Deno.readTextFileSync(`${REPO}${f}`), f));
}

/** Every `docs-check` marker of a text, well-formed or not (a marker without its block is an error). */
export function docMarkers(text: string): string[] {
  return [...text.matchAll(/<!-- docs-check:[^>]*-->/g)].map((m) => m[0]);
}
