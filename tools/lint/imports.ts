/**
 * The import specifiers of a TypeScript file read from its text, for the checks that need other files
 * than the one `deno lint` is looking at (the import graph of tools/lint/graph.ts). A small tokenizer,
 * not regular expressions over the text: comments, strings, template literals and regular expression
 * literals are skipped as wholes, so an import written in a comment, a JSDoc example or a string of
 * generated code is never taken for one.
 *
 * Found: `import … from "x"`, `import type … from "x"`, `export … from "x"`, `import "x"`, and
 * `import("x")` — a dynamic import or an import type — when its specifier is a plain string literal
 * (a computed one, like main.ts's import of the CLI, names nothing that could be checked).
 *
 * @module
 */

/** One import of a file. */
export interface ImportRef {
  /** The specifier as written. */
  specifier: string;
  /** `static` (import/export … from, import "x") or `call` (`import("x")`: dynamic, or a type). */
  kind: "static" | "call";
}

type Token = { t: "id" | "str" | "punct" | "other"; v: string };

/** After these words a `/` starts a regular expression, not a division. */
const REGEX_AFTER = new Set([
  "return",
  "typeof",
  "case",
  "in",
  "of",
  "new",
  "delete",
  "void",
  "throw",
  "yield",
  "await",
  "else",
  "do",
  "instanceof",
]);

/** The index just past a quoted string that starts at `i` (its quote). */
function skipString(text: string, i: number): number {
  const q = text[i];
  for (let j = i + 1; j < text.length; j++) {
    const c = text[j];
    if (c === "\\") j++;
    else if (c === q || c === "\n") return j + 1;
  }
  return text.length;
}

/** The index just past a regular expression literal that starts at `i` (its `/`), flags included. */
function skipRegex(text: string, i: number): number {
  let inClass = false;
  let j = i + 1;
  for (; j < text.length; j++) {
    const c = text[j];
    if (c === "\\") j++;
    else if (c === "\n") return j;
    else if (c === "[") inClass = true;
    else if (c === "]") inClass = false;
    else if (c === "/" && !inClass) break;
  }
  j++;
  while (j < text.length && /[a-z]/i.test(text[j]!)) j++;
  return j;
}

/**
 * Scans template text from `i` (just past a backtick, or past the `}` closing a `${…}`): the index just
 * past the closing backtick, or just past a `${` with `open` true (the expression is tokenized, and its
 * closing `}` resumes the template).
 */
function skipTemplate(text: string, i: number): { end: number; open: boolean } {
  for (let j = i; j < text.length; j++) {
    const c = text[j];
    if (c === "\\") j++;
    else if (c === "`") return { end: j + 1, open: false };
    else if (c === "$" && text[j + 1] === "{") return { end: j + 2, open: true };
  }
  return { end: text.length, open: false };
}

function regexAllowed(prev: Token | undefined): boolean {
  if (!prev) return true;
  if (prev.t === "punct") return !")]}".includes(prev.v);
  if (prev.t === "id") return REGEX_AFTER.has(prev.v);
  return false;
}

/** The tokens of `text` that matter for imports: words, string literals (with their value), punctuation. */
function tokenize(text: string): Token[] {
  const out: Token[] = [];
  // Brace depths at which a template's `${` was opened: the `}` back at that depth resumes the template.
  const templates: number[] = [];
  let depth = 0;
  let i = 0;
  while (i < text.length) {
    const c = text[i]!;
    const next = text[i + 1];
    if (c === "/" && next === "/") {
      const nl = text.indexOf("\n", i);
      i = nl < 0 ? text.length : nl;
    } else if (c === "/" && next === "*") {
      const end = text.indexOf("*/", i + 2);
      i = end < 0 ? text.length : end + 2;
    } else if (c === '"' || c === "'") {
      const end = skipString(text, i);
      out.push({ t: "str", v: text.slice(i + 1, end - 1) });
      i = end;
    } else if (c === "`" || (c === "}" && templates.at(-1) === depth)) {
      if (c === "}") templates.pop();
      const { end, open } = skipTemplate(text, i + 1);
      if (open) templates.push(depth);
      else out.push({ t: "other", v: "`" });
      i = end;
    } else if (c === "/" && regexAllowed(out.at(-1))) {
      i = skipRegex(text, i);
      out.push({ t: "other", v: "/re/" });
    } else if (/[A-Za-z_$0-9]/.test(c)) {
      let j = i + 1;
      while (j < text.length && /[\w$]/.test(text[j]!)) j++;
      out.push({ t: /[0-9]/.test(c) ? "other" : "id", v: text.slice(i, j) });
      i = j;
    } else if (/\s/.test(c)) {
      i++;
    } else {
      if (c === "{") depth++;
      else if (c === "}") depth--;
      out.push({ t: "punct", v: c });
      i++;
    }
  }
  return out;
}

/** Every import of a file's text (see the module doc), in order. */
export function importsOf(text: string): ImportRef[] {
  const toks = tokenize(text);
  const out: ImportRef[] = [];
  for (let k = 0; k < toks.length; k++) {
    const tok = toks[k]!;
    if (tok.t !== "id" || toks[k - 1]?.v === ".") continue;
    const a = toks[k + 1];
    if (tok.v === "from" && a?.t === "str") out.push({ specifier: a.v, kind: "static" });
    else if (tok.v === "import" && a?.t === "str") out.push({ specifier: a.v, kind: "static" });
    else if (tok.v === "import" && a?.v === "(" && toks[k + 2]?.t === "str") {
      const close = toks[k + 3]?.v;
      if (close === ")" || close === ",") out.push({ specifier: toks[k + 2]!.v, kind: "call" });
    }
  }
  return out;
}
