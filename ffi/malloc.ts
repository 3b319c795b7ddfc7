/**
 * Giving freed native memory back to the system.
 *
 * A full reconcile pass reads every route, neighbour and FDB entry through libnl, which mallocs a cache
 * object per entry and frees them all at the end. glibc keeps the freed chunks in its arenas for reuse
 * rather than returning them, so the agent's RSS carried ~8 MB of free native heap at 5000 peers
 * (measured with `malloc_stats`, bench/agent_scale.ts). `malloc_trim(0)` returns the free pages of
 * every arena; it takes well under a millisecond.
 *
 * @module
 */
import { c } from "./loader.ts";

/** Returns free native heap to the system (glibc `malloc_trim(0)`); true when some was released. */
export function releaseFreeNativeMemory(): boolean {
  try {
    return c().malloc_trim(0n) === 1;
  } catch {
    return false; // not glibc (musl has no malloc_trim): nothing to release this way
  }
}
