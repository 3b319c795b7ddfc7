/**
 * The one seeded random generator of the tests (mulberry32): small, fast and deterministic, so that a
 * fuzz case or a random order that fails can be replayed from its seed.
 *
 * @module
 */

/** Numbers in [0, 1) from `seed`, the same sequence for the same seed on every machine. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
