/**
 * A process's resident memory by mapping, from /proc/<pid>/smaps: for the benches and tests that ask
 * where RSS lies (the executable, a library, malloc's heap, anonymous memory).
 *
 * @module
 */

/**
 * Sums the `Rss` of every mapping of `pid` (a number, or "self") into the part `partOf` names for it
 * (kB); `partOf` gets the mapping's path or pseudo-name (`[heap]`, `[stack]`, "" for anonymous memory),
 * and a mapping it returns undefined for is left out.
 */
export function rssByMapping(
  pid: number | "self",
  partOf: (name: string) => string | undefined,
): Record<string, number> {
  const out: Record<string, number> = {};
  let part: string | undefined;
  for (const line of Deno.readTextFileSync(`/proc/${pid}/smaps`).split("\n")) {
    const m = line.match(/^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$/);
    if (m) {
      part = partOf(m[1]!);
      continue;
    }
    const kb = part === undefined ? undefined : line.match(/^Rss:\s+(\d+) kB/);
    if (kb) out[part!] = (out[part!] ?? 0) + Number(kb[1]);
  }
  return out;
}
