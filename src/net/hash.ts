/**
 * The non-cryptographic hashes weft uses, in one place:
 *
 * - {@linkcode fnv1a32} and {@linkcode fnv1a64}: stable across processes and versions, for names derived
 *   from text (nftables object names, the node end of a pod's veth). Their output must never change: a
 *   new agent or CNI binary finds what an older one made by recomputing the same name.
 * - {@linkcode digest53}: for comparing in memory only (never stored or shown), keyed per process.
 *
 * @module
 */

const FNV32_OFFSET = 0x811c9dc5;
const FNV32_PRIME = 0x01000193;
const encoder = new TextEncoder();

/** FNV-1a, 32 bits, over the UTF-8 bytes of `text`. */
export function fnv1a32(text: string): number {
  let h = FNV32_OFFSET;
  for (const b of encoder.encode(text)) h = Math.imul(h ^ b, FNV32_PRIME) >>> 0;
  return h;
}

/** FNV-1a, 64 bits, over the UTF-8 bytes of `text`. */
export function fnv1a64(text: string): bigint {
  let h = 0xcbf29ce484222325n;
  for (const b of encoder.encode(text)) {
    h ^= BigInt(b);
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return h;
}

/** Per-process seeds of {@linkcode digest53}: a Node's author cannot aim a collision at an agent. */
const SEEDS = crypto.getRandomValues(new Uint32Array(2));

/**
 * A 53-bit digest of `text`'s UTF-16 code units, as a number: what a map keeps instead of a long string
 * it only compares (an equal digest means equal text but for a 2^-53 chance per comparison). Two
 * multiply–xor lanes with random seeds, mixed at the end (the murmur3 finaliser); no encoding step, so a
 * 350-character string costs ~1 µs.
 */
export function digest53(text: string): number {
  let a = SEEDS[0]! ^ 0x9e3779b9;
  let b = SEEDS[1]! ^ 0x85ebca6b;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    a = Math.imul(a ^ c, 0x01000193);
    b = Math.imul(b ^ c, 0x5bd1e995);
    b ^= b >>> 15;
  }
  a = fmix32(a ^ text.length ^ Math.imul(b, 0xc2b2ae35));
  b = fmix32(b ^ a);
  return (a >>> 0) * 0x200000 + (b >>> 11);
}

/** murmur3's 32-bit finaliser: every input bit reaches every output bit. */
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}
