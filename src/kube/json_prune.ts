/**
 * Drops the bulky parts of a Kubernetes object's JSON before it is parsed. A real Node is ~13 KB, most
 * of it `status.images` and `metadata.managedFields`, which a network agent never reads; a kubelet
 * heartbeat sends all of it again. Parsing it whole costs the parse and, above all, the garbage: at 200
 * heartbeats/s the collector worked more than the parser. Here those values are cut out of the text
 * (each replaced by `0`, so the JSON stays valid) by a scan that skips strings with `indexOf`, and only
 * the rest, ~1–2 KB, is parsed.
 *
 * @module
 */

/** A path into an object, key by key (e.g. `["status", "images"]`); arrays are not descended into. */
export type JsonPath = readonly string[];

/**
 * The text ended inside the value (more of it may still be on the wire). One instance, thrown again and
 * again: a list arriving in pieces ends mid-item often, and an Error's stack trace is not free.
 */
const TRUNCATED = new SyntaxError("unexpected end of JSON");

/** The end (exclusive) of the string whose opening quote is at `i`. */
function stringEnd(text: string, i: number): number {
  for (let q = text.indexOf('"', i + 1); q >= 0; q = text.indexOf('"', q + 1)) {
    let b = q - 1;
    while (text.charCodeAt(b) === 92) b--;
    if ((q - 1 - b) % 2 === 0) return q + 1;
  }
  throw TRUNCATED;
}

/** The end (exclusive) of the value starting at `i` (after whitespace). */
function valueEnd(text: string, i: number): number {
  const c = text.charCodeAt(i);
  if (c === 34) return stringEnd(text, i);
  if (c !== 123 && c !== 91) {
    let j = i;
    for (let d = text.charCodeAt(j); j < text.length; d = text.charCodeAt(++j)) {
      if (d === 44 || d === 125 || d === 93 || d <= 32) break; // , } ] or whitespace
    }
    return j;
  }
  let depth = 0;
  for (let j = i; j < text.length; j++) {
    const d = text.charCodeAt(j);
    if (d === 34) j = stringEnd(text, j) - 1;
    else if (d === 123 || d === 91) depth++;
    else if ((d === 125 || d === 93) && --depth === 0) return j + 1;
  }
  throw TRUNCATED;
}

function skipSpace(text: string, i: number): number {
  while (i < text.length && text.charCodeAt(i) <= 32) i++;
  if (i >= text.length) throw TRUNCATED;
  return i;
}

/** Paths as a tree: a key maps to the keys below it, or to `true` where its value is cut. */
type PathTree = Map<string, PathTree | true>;

const trees = new WeakMap<readonly JsonPath[], PathTree>();

function treeOf(paths: readonly JsonPath[]): PathTree {
  let t = trees.get(paths);
  if (t) return t;
  t = new Map();
  for (const p of paths) {
    let node = t;
    p.forEach((k, i) => {
      if (i === p.length - 1) node.set(k, true);
      else {
        let next = node.get(k);
        if (next === undefined || next === true) node.set(k, next = new Map());
        node = next;
      }
    });
  }
  trees.set(paths, t);
  return t;
}

/** Walks the object at `start` along `tree`, noting the cuts; returns its end. */
function walk(text: string, start: number, tree: PathTree, cuts: number[]): number {
  let i = skipSpace(text, start);
  if (text.charCodeAt(i) !== 123) return valueEnd(text, i);
  i++;
  for (;;) {
    i = skipSpace(text, i);
    if (text.charCodeAt(i) === 125) return i + 1;
    if (text.charCodeAt(i) === 44) i = skipSpace(text, i + 1);
    if (text.charCodeAt(i) !== 34) throw new SyntaxError("expected a key in JSON");
    const kEnd = stringEnd(text, i);
    const below = tree.get(text.slice(i + 1, kEnd - 1));
    i = skipSpace(text, kEnd);
    if (text.charCodeAt(i) !== 58) throw new SyntaxError("expected ':' in JSON");
    i = skipSpace(text, i + 1);
    if (below === true) {
      const end = valueEnd(text, i);
      cuts.push(i, end);
      i = end;
    } else if (below) i = walk(text, i, below, cuts);
    else i = valueEnd(text, i);
  }
}

function cut(text: string, start: number, end: number, cuts: number[]): string {
  let out = "", from = start;
  for (let c = 0; c < cuts.length; c += 2) {
    out += text.slice(from, cuts[c]) + "0";
    from = cuts[c + 1]!;
  }
  return out + text.slice(from, end);
}

/**
 * `text` (one JSON object) with the value at each of `paths` replaced by `0`. Nothing is parsed and
 * nothing allocated but the result; text that is not JSON comes back as malformed as it went in
 * (JSON.parse says so after). Pass the same `paths` array each time: its tree is built once.
 */
export function pruneJson(text: string, paths: readonly JsonPath[]): string {
  if (!paths.length) return text;
  const cuts: number[] = [];
  walk(text, 0, treeOf(paths), cuts);
  return cuts.length ? cut(text, 0, text.length, cuts) : text;
}

/**
 * The object starting at `start` in `text` (a list answer as it arrives), pruned as {@linkcode pruneJson}
 * does, and where it ends; undefined when `text` ends before the object does (wait for more).
 */
export function pruneValue(
  text: string,
  start: number,
  paths: readonly JsonPath[],
): { text: string; end: number } | undefined {
  const cuts: number[] = [];
  let end: number;
  try {
    end = walk(text, start, treeOf(paths), cuts);
  } catch (err) {
    if (err === TRUNCATED) return undefined;
    throw err;
  }
  return { text: cut(text, start, end, cuts), end };
}
