/**
 * IP address and CIDR arithmetic for IPv4 and IPv6, as a leaf module (it imports nothing). It lives in
 * ffi/ because netlink speaks addresses as bytes (`ipBytes`, `ipFromBytes`); src/ imports it through
 * src/net/ip.ts.
 *
 * Addresses are held as `bigint` so one set of functions serves both families; `family` says how many
 * bits the value has (32 or 128).
 *
 * @module
 */

/** Address family: 4 or 6. */
export type IPFamily = 4 | 6;

/** One IP address. */
export interface IP {
  /** 4 or 6. */
  readonly family: IPFamily;
  /** The address as an unsigned integer of 32 (IPv4) or 128 (IPv6) bits. */
  readonly value: bigint;
}

/** One IP network: a network address and a prefix length. The host bits of `ip` are zero. */
export interface IPNet {
  /** The network address (host bits zero). */
  readonly ip: IP;
  /** Prefix length, 0–32 or 0–128. */
  readonly prefix: number;
}

/** Thrown for text that is not an IP address or CIDR. */
export class IPParseError extends Error {
  /** Creates the error for `input`, with `why` saying what is wrong. */
  constructor(readonly input: string, why: string) {
    super(`invalid IP ${JSON.stringify(input)}: ${why}`);
    this.name = "IPParseError";
  }
}

/** Number of bits of an address of `family`. */
export function bitsOf(family: IPFamily): number {
  return family === 4 ? 32 : 128;
}

/**
 * Four dot-separated decimal parts of 1–3 digits, each ≤ 255, no leading zeros. Scanned by character
 * code into a number and made a bigint once: agents parse every peer's lease key at start-up (three
 * lists of 5000), and splitting, a regular expression and bigint shifts per part allocated ~1 KB per
 * address.
 */
function parseIPv4(s: string): bigint | undefined {
  let v = 0, part = 0, digits = 0, parts = 0;
  for (let i = 0; i <= s.length; i++) {
    const c = i < s.length ? s.charCodeAt(i) : 46; // a '.' after the last part ends it
    if (c === 46) {
      if (digits === 0 || part > 255) return undefined;
      v = v * 256 + part;
      parts++;
      part = 0;
      digits = 0;
    } else {
      if (c < 48 || c > 57 || ++digits > 3 || (digits === 2 && part === 0)) return undefined;
      part = part * 10 + c - 48;
    }
  }
  return parts === 4 ? BigInt(v) : undefined;
}

function parseIPv6(s: string): bigint | undefined {
  // An embedded IPv4 tail (::ffff:1.2.3.4) becomes two hextets.
  let text = s;
  const lastColon = text.lastIndexOf(":");
  if (text.includes(".") && lastColon >= 0) {
    const v4 = parseIPv4(text.slice(lastColon + 1));
    if (v4 === undefined) return undefined;
    text = `${text.slice(0, lastColon + 1)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const head = halves[0] ? halves[0].split(":") : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(":") : [];
  const missing = 8 - head.length - tail.length;
  if (halves.length === 1 ? missing !== 0 : missing < 1) return undefined;
  const groups = [...head, ...Array<string>(halves.length === 2 ? missing : 0).fill("0"), ...tail];
  let v = 0n;
  for (const g of groups) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return undefined;
    v = (v << 16n) | BigInt(parseInt(g, 16));
  }
  return v;
}

/** Parses an IPv4 or IPv6 address. Throws {@linkcode IPParseError}. */
export function parseIP(s: string): IP {
  const text = s.trim();
  if (text.includes(":")) {
    const v = parseIPv6(text);
    if (v === undefined) throw new IPParseError(s, "not an IPv6 address");
    return { family: 6, value: v };
  }
  const v = parseIPv4(text);
  if (v === undefined) throw new IPParseError(s, "not an IPv4 address");
  return { family: 4, value: v };
}

/** Returns `parseIP(s)`, or `undefined` where `s` is not an address. */
export function tryParseIP(s: string): IP | undefined {
  try {
    return parseIP(s);
  } catch {
    return undefined;
  }
}

/** Formats an address the canonical way (RFC 5952 for IPv6). */
export function formatIP(ip: IP): string {
  if (ip.family === 4) {
    const v = Number(ip.value);
    return `${v >>> 24}.${(v >>> 16) & 255}.${(v >>> 8) & 255}.${v & 255}`;
  }
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((ip.value >> BigInt(i * 16)) & 0xffffn));
  // Compress the longest run (≥ 2) of zero groups, the first one on a tie.
  let bestStart = -1, bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) [bestStart, bestLen] = [i, j - i];
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(":");
  return `${hex.slice(0, bestStart).join(":")}::${hex.slice(bestStart + bestLen).join(":")}`;
}

/** Netmasks by family and prefix, built once: BigInt shifts are slow, and masks are wanted per lease. */
const MASKS: Record<IPFamily, bigint[]> = { 4: [], 6: [] };

function mask(family: IPFamily, prefix: number): bigint {
  const cached = MASKS[family][prefix];
  if (cached !== undefined) return cached;
  const bits = BigInt(bitsOf(family));
  const m = ((1n << bits) - 1n) ^ ((1n << (bits - BigInt(prefix))) - 1n);
  MASKS[family][prefix] = m;
  return m;
}

/** Builds a network from any address inside it, zeroing the host bits. */
export function networkOf(ip: IP, prefix: number): IPNet {
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > bitsOf(ip.family)) {
    throw new IPParseError(`${formatIP(ip)}/${prefix}`, `prefix must be 0–${bitsOf(ip.family)}`);
  }
  return { ip: { family: ip.family, value: ip.value & mask(ip.family, prefix) }, prefix };
}

/**
 * Parses `addr/prefix`. Returns the address as written and the network it is in (host bits zeroed),
 * like Go's `net.ParseCIDR`.
 */
export function parseCIDR(s: string): { ip: IP; net: IPNet } {
  const slash = s.indexOf("/");
  if (slash < 0) throw new IPParseError(s, "missing /prefix");
  const ip = parseIP(s.slice(0, slash));
  const p = s.slice(slash + 1);
  if (!/^\d{1,3}$/.test(p)) throw new IPParseError(s, "prefix is not a number");
  return { ip, net: networkOf(ip, Number(p)) };
}

/** Parses a CIDR that must be a network address (host bits zero). */
export function parseNet(s: string): IPNet {
  const { ip, net } = parseCIDR(s);
  if (ip.value !== net.ip.value) throw new IPParseError(s, `host bits set (network is ${formatNet(net)})`);
  return net;
}

/** Formats a network as `addr/prefix`. */
export function formatNet(n: IPNet): string {
  return `${formatIP(n.ip)}/${n.prefix}`;
}

/** Returns the address `n` steps after `ip` (negative steps go back). Throws on overflow. */
export function addIP(ip: IP, n: bigint | number): IP {
  const v = ip.value + BigInt(n);
  if (v < 0n || v >= 1n << BigInt(bitsOf(ip.family))) {
    throw new RangeError(`address ${formatIP(ip)} + ${n} leaves the IPv${ip.family} space`);
  }
  return { family: ip.family, value: v };
}

/** True when `ip` lies inside `net`. */
export function netContains(net: IPNet, ip: IP): boolean {
  return ip.family === net.ip.family && (ip.value & mask(ip.family, net.prefix)) === net.ip.value;
}

/** True when `inner` lies wholly inside `outer`. */
export function netContainsNet(outer: IPNet, inner: IPNet): boolean {
  return inner.prefix >= outer.prefix && netContains(outer, inner.ip);
}

/** True when the two networks share any address. */
export function netsOverlap(a: IPNet, b: IPNet): boolean {
  return netContainsNet(a, b) || netContainsNet(b, a);
}

/** Number of addresses in `net`. */
export function netSize(net: IPNet): bigint {
  return 1n << BigInt(bitsOf(net.ip.family) - net.prefix);
}

/** The last address of `net` (the broadcast address for IPv4). */
export function lastIP(net: IPNet): IP {
  return { family: net.ip.family, value: net.ip.value + netSize(net) - 1n };
}

/** The network of the same prefix that follows `net`, e.g. 10.244.3.0/24 → 10.244.4.0/24. */
export function nextNet(net: IPNet): IPNet {
  return { ip: addIP(net.ip, netSize(net)), prefix: net.prefix };
}

/** True when two addresses are the same. */
export function ipEqual(a: IP, b: IP): boolean {
  return a.family === b.family && a.value === b.value;
}

/** True when two networks are the same. */
export function netEqual(a: IPNet, b: IPNet): boolean {
  return a.prefix === b.prefix && ipEqual(a.ip, b.ip);
}

/** Compares two addresses (family first) for sorting. */
export function compareIP(a: IP, b: IP): number {
  if (a.family !== b.family) return a.family - b.family;
  return a.value < b.value ? -1 : a.value > b.value ? 1 : 0;
}

/** Returns the 4 or 16 bytes of `ip` in network order. */
export function ipBytes(ip: IP): Uint8Array {
  const n = bitsOf(ip.family) / 8;
  const out = new Uint8Array(n);
  let v = ip.value;
  for (let i = n - 1; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

/** Builds an address from 4 or 16 bytes in network order. */
export function ipFromBytes(bytes: Uint8Array): IP {
  if (bytes.length !== 4 && bytes.length !== 16) {
    throw new RangeError(`an IP has 4 or 16 bytes, not ${bytes.length}`);
  }
  let v = 0n;
  for (const b of bytes) v = (v << 8n) | BigInt(b);
  return { family: bytes.length === 4 ? 4 : 6, value: v };
}
