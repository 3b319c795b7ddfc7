/**
 * Phase timings for one CNI call, appended to its log line when `WEFT_CNI_TRACE=1`: where an ADD or DEL
 * spends its time (module loading, netlink, IPAM lock, nftables), without a profiler. One call at a
 * time: {@linkcode traceStart} begins a call's record (the agent's CNI server runs calls one by one).
 *
 * @module
 */

let on = false;
let last = 0;
let marks: string[] = [];

/** Starts recording a call's phases (or stops recording, when `enabled` is false). */
export function traceStart(enabled: boolean): void {
  on = enabled;
  marks = [];
  last = performance.now();
}

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
