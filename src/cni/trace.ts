/**
 * Phase timings for one CNI call, printed on stderr when `WEFT_CNI_TRACE=1`: where an ADD or DEL spends
 * its time (library loading, IPAM lock, netlink, nftables), without a profiler.
 *
 * @module
 */

const on = Deno.env.get("WEFT_CNI_TRACE") === "1";
let last = performance.now();
const marks: string[] = [];

/** Records the time since the previous mark under `label` (no-op unless tracing). */
export function mark(label: string): void {
  if (!on) return;
  const now = performance.now();
  marks.push(`${label} ${(now - last).toFixed(1)}`);
  last = now;
}

/** The recorded phases as one line (empty unless tracing). */
export function phases(): string {
  return on ? ` [${marks.join(", ")}; process up ${performance.now().toFixed(1)} ms]` : "";
}
