/**
 * Sets of addresses as sorted, disjoint, non-adjacent ranges — the shape an nftables interval set wants
 * (it rejects overlapping elements): pod addresses and `ipBlock` CIDRs with their `except` holes are
 * folded into one such set per rule and family.
 *
 * @module
 */
import { bitsOf, formatIP, formatNet, type IPFamily, type IPNet } from "../net/ip.ts";

/** One inclusive range of addresses of one family. */
export interface IPRange {
  /** First address. */
  lo: bigint;
  /** Last address (≥ lo). */
  hi: bigint;
}

/** Addresses of one family as sorted, disjoint, non-adjacent ranges. */
export type RangeSet = readonly IPRange[];

/** The range a network covers. */
export function netRange(n: IPNet): IPRange {
  const size = 1n << BigInt(bitsOf(n.ip.family) - n.prefix);
  return { lo: n.ip.value, hi: n.ip.value + size - 1n };
}

/** Sorts and merges ranges (overlapping or adjacent ones become one). */
export function normalize(ranges: Iterable<IPRange>): RangeSet {
  const sorted = [...ranges].sort((a, b) => (a.lo < b.lo ? -1 : a.lo > b.lo ? 1 : 0));
  const out: IPRange[] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r.lo <= last.hi + 1n) {
      if (r.hi > last.hi) out[out.length - 1] = { lo: last.lo, hi: r.hi };
    } else {
      out.push({ ...r });
    }
  }
  return out;
}

/** `a` without the addresses in `b` (both normalized). */
export function subtract(a: RangeSet, b: RangeSet): RangeSet {
  const out: IPRange[] = [];
  for (const r of a) {
    let lo = r.lo;
    for (const h of b) {
      if (h.hi < lo || h.lo > r.hi) continue;
      if (h.lo > lo) out.push({ lo, hi: h.lo - 1n });
      lo = h.hi + 1n;
      if (lo > r.hi) break;
    }
    if (lo <= r.hi) out.push({ lo, hi: r.hi });
  }
  return out;
}

/** Whether `v` is in the set. */
export function rangesContain(set: RangeSet, v: bigint): boolean {
  return set.some((r) => r.lo <= v && v <= r.hi);
}

/**
 * nft element text for each range: an address, a CIDR when the range is exactly one, else `lo-hi`.
 *
 * @example
 * ```ts
 * formatRanges(4, [{ lo: 0x0a000000n, hi: 0x0a00ffffn }]); // ["10.0.0.0/16"]
 * ```
 */
export function formatRanges(family: IPFamily, set: RangeSet): string[] {
  const bits = bitsOf(family);
  return set.map((r) => {
    const ip = (v: bigint) => formatIP({ family, value: v });
    if (r.lo === r.hi) return ip(r.lo);
    const size = r.hi - r.lo + 1n;
    // A power of two, aligned on its size, is a CIDR.
    if ((size & (size - 1n)) === 0n && r.lo % size === 0n) {
      const prefix = bits - (size.toString(2).length - 1);
      return formatNet({ ip: { family, value: r.lo }, prefix });
    }
    return `${ip(r.lo)}-${ip(r.hi)}`;
  });
}
