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

/** The end (exclusive) of the string whose opening quote is at `i`. */
function stringEnd(text: string, i: number): number {
  for (let q = text.indexOf('"', i + 1); q >= 0; q = text.indexOf('"', q + 1)) {
    let b = q - 1;
    while (text.charCodeAt(b) === 92) b--;
    if ((q - 1 - b) % 2 === 0) return q + 1;
  }
  throw new SyntaxError("unterminated string in JSON");
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
  throw new SyntaxError("unterminated value in JSON");
}

function skipSpace(text: string, i: number): number {
  while (i < text.length && text.charCodeAt(i) <= 32) i++;
  return i;
}

/**
 * `text` (one JSON object) with the value at each of `paths` replaced by `0`. Nothing is parsed; text that
 * is not JSON comes back as malformed as it went in (JSON.parse says so after).
 */
export function pruneJson(text: string, paths: readonly JsonPath[]): string {
  if (!paths.length) return text;
  const cuts: [number, number][] = [];
  // Walk the object along the paths: descend only into keys some path continues through.
  const walk = (start: number, prefix: JsonPath): number => {
    let i = skipSpace(text, start);
    if (text.charCodeAt(i) !== 123) return valueEnd(text, i);
    i++;
    for (;;) {
      i = skipSpace(text, i);
      if (text.charCodeAt(i) === 125) return i + 1;
      if (text.charCodeAt(i) === 44) i = skipSpace(text, i + 1);
      if (text.charCodeAt(i) !== 34) throw new SyntaxError("expected a key in JSON");
      const kEnd = stringEnd(text, i);
      const key = text.slice(i + 1, kEnd - 1);
      i = skipSpace(text, kEnd);
      if (text.charCodeAt(i) !== 58) throw new SyntaxError("expected ':' in JSON");
      i = skipSpace(text, i + 1);
      const path = [...prefix, key];
      const depth = path.length;
      const wanted = paths.filter((p) => p.length >= depth && path.every((k, n) => p[n] === k));
      if (wanted.some((p) => p.length === depth)) {
        const end = valueEnd(text, i);
        cuts.push([i, end]);
        i = end;
      } else if (wanted.length) i = walk(i, path);
      else i = valueEnd(text, i);
    }
  };
  walk(0, []);
  if (!cuts.length) return text;
  let out = "", from = 0;
  for (const [a, b] of cuts) {
    out += text.slice(from, a) + "0";
    from = b;
  }
  return out + text.slice(from);
}
