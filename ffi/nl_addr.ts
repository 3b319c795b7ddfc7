/**
 * Conversions between weft's address strings and libnl's `struct nl_addr`.
 *
 * IPs are parsed in TypeScript (ffi/ip.ts) so a bad address fails with a clear message before any
 * C call, and built with `nl_addr_build`; MACs are AF_LLC addresses of 6 bytes.
 *
 * @module
 */
import { formatIP, ipBytes, ipFromBytes, parseCIDR, parseIP } from "./ip.ts";
import { Owned } from "./cmem.ts";
import { nl } from "./loader.ts";

import { AF } from "./nl_consts.ts";
import { attrAt, attrLenAt } from "./nl_codec.ts";

/** Linux address family numbers (from the one table, ffi/nl_consts.ts). */
export { AF };

function build(family: number, bytes: Uint8Array<ArrayBuffer>, prefix?: number): Owned {
  const lib = nl();
  const ptr = lib.nl_addr_build(family, bytes, BigInt(bytes.length));
  if (ptr === null) throw new Error("nl_addr_build: out of memory");
  if (prefix !== undefined) lib.nl_addr_set_prefixlen(ptr, prefix);
  return new Owned(ptr, (p) => lib.nl_addr_put(p));
}

// Dotted-quad fast path: the reconciler converts thousands of IPv4 addresses per pass, and the general
// parser works in bigint. Scanned by character code into a reusable buffer (nl_addr_build copies it):
// a regular expression match per address was a good part of what programming 5000 peers allocated.
const V4_BYTES = new Uint8Array(4);

/** `a.b.c.d` or `a.b.c.d/p` (parts of 1-3 digits up to 255, p of 1-2 digits up to 32), else undefined. */
function scanV4(text: string): { prefix: number | undefined } | undefined {
  let part = 0, digits = 0, parts = 0, i = 0;
  for (; i <= text.length; i++) {
    const c = i < text.length ? text.charCodeAt(i) : 46;
    if (c === 46 || c === 47) { // '.' or '/' ends a part
      if (digits === 0 || part > 255 || parts === 4) return undefined;
      V4_BYTES[parts++] = part;
      part = 0;
      digits = 0;
      if (c === 47 || i === text.length) break;
    } else if (c < 48 || c > 57 || ++digits > 3) return undefined;
    else part = part * 10 + c - 48;
  }
  if (parts !== 4) return undefined;
  if (i >= text.length) return { prefix: undefined };
  const p = text.slice(i + 1);
  if (!/^\d{1,2}$/.test(p) || Number(p) > 32) return undefined;
  return { prefix: Number(p) };
}

function fastV4(text: string, network: boolean): Owned | undefined {
  const scanned = scanV4(text);
  if (!scanned) return undefined;
  const { prefix } = scanned;
  const b = V4_BYTES;
  if (network && prefix !== undefined) {
    // Zero the host bits.
    const v = ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
    const masked = prefix === 0 ? 0 : (v & (0xffffffff << (32 - prefix))) >>> 0;
    b[0] = masked >>> 24, b[1] = (masked >>> 16) & 255, b[2] = (masked >>> 8) & 255, b[3] = masked & 255;
  }
  return build(AF.INET, b, prefix ?? (network ? 32 : undefined));
}

/** Builds an nl_addr from `"10.0.0.1"` (full-length prefix) or `"10.0.0.0/24"`. */
export function ipAddr(text: string): Owned {
  const fast = fastV4(text, false);
  if (fast) return fast;
  if (text.includes("/")) {
    const { ip, net } = parseCIDR(text);
    return build(ip.family === 4 ? AF.INET : AF.INET6, ipBytes(ip) as Uint8Array<ArrayBuffer>, net.prefix);
  }
  const ip = parseIP(text);
  return build(ip.family === 4 ? AF.INET : AF.INET6, ipBytes(ip) as Uint8Array<ArrayBuffer>);
}

/** Builds a network nl_addr (host bits cleared) from `"10.0.0.0/24"`, `"default"` or `"default6"`. */
export function netAddr(text: string): Owned {
  if (text === "default") return build(AF.INET, new Uint8Array(4), 0);
  if (text === "default6") return build(AF.INET6, new Uint8Array(16), 0);
  const fast = fastV4(text, true);
  if (fast) return fast;
  const { net } = parseCIDR(text.includes("/") ? text : `${text}/${text.includes(":") ? 128 : 32}`);
  return build(
    net.ip.family === 4 ? AF.INET : AF.INET6,
    ipBytes(net.ip) as Uint8Array<ArrayBuffer>,
    net.prefix,
  );
}

const MAC = /^[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}$/;

// One hex digit from its char code (already validated by MAC).
function hexDigit(c: number): number {
  return c <= 57 ? c - 48 : (c | 32) - 87;
}

/** Parses `"aa:bb:cc:dd:ee:ff"` into 6 bytes; throws a clear error otherwise. */
export function macBytes(mac: string): Uint8Array<ArrayBuffer> {
  if (!MAC.test(mac)) {
    throw new Error(`invalid MAC address ${JSON.stringify(mac)}: want six hex pairs like 0a:58:0a:f4:01:01`);
  }
  // Char codes rather than split/parseInt: two MACs per peer on the agent's hot path (~3 µs → 0.5 µs).
  const b = new Uint8Array(6);
  for (let i = 0; i < 6; i++) {
    b[i] = (hexDigit(mac.charCodeAt(i * 3)) << 4) | hexDigit(mac.charCodeAt(i * 3 + 1));
  }
  return b;
}

/** Builds an AF_LLC nl_addr from a MAC string. */
export function macAddr(mac: string): Owned {
  return build(AF.LLC, macBytes(mac));
}

// Text built from character codes in one step: a template of many parts makes V8 allocate a chain of
// intermediate strings (~300 bytes per MAC); a full pass formats ~20 000 MACs and IPs.
const HEX_CODES = Array.from("0123456789abcdef", (c) => c.charCodeAt(0));
const codes: number[] = [];

/** Formats 6 bytes as a lowercase MAC. */
export function formatMac(b: Uint8Array): string {
  codes.length = 17;
  for (let i = 0; i < 6; i++) {
    codes[i * 3] = HEX_CODES[b[i]! >> 4]!;
    codes[i * 3 + 1] = HEX_CODES[b[i]! & 15]!;
    if (i < 5) codes[i * 3 + 2] = 58; // ':'
  }
  return String.fromCharCode.apply(null, codes);
}

/** Formats 4 bytes as a dotted IPv4 address, and `/prefix` after it when given. */
function formatV4(b: Uint8Array, prefix?: number): string {
  codes.length = 0;
  const digits = (v: number) => {
    if (v >= 100) codes.push(48 + ((v / 100) | 0));
    if (v >= 10) codes.push(48 + (((v / 10) | 0) % 10));
    codes.push(48 + (v % 10));
  };
  for (let i = 0; i < 4; i++) {
    if (i) codes.push(46); // '.'
    digits(b[i]!);
  }
  if (prefix !== undefined) {
    codes.push(47); // '/'
    digits(prefix);
  }
  return String.fromCharCode.apply(null, codes);
}

// One reusable buffer per address length: a full pass reads ~15 000 addresses at 5000 peers, and a
// fresh ArrayBuffer (and its copy) per address was most of what a pass allocated.
const SCRATCH: Record<number, Uint8Array<ArrayBuffer>> = {
  4: new Uint8Array(4),
  6: new Uint8Array(6),
  16: new Uint8Array(16),
};

/**
 * The bytes of a borrowed nl_addr, in a scratch buffer of their length (4, 6 or 16; the next call
 * overwrites it: read it at once), or undefined for an empty address or another length.
 */
function bytesOf(ptr: Deno.PointerObject): Uint8Array | undefined {
  const lib = nl();
  const scratch = SCRATCH[lib.nl_addr_get_len(ptr)];
  if (!scratch) return undefined;
  const bin = lib.nl_addr_get_binary_addr(ptr);
  if (bin === null) return undefined;
  Deno.UnsafePointerView.copyInto(bin, scratch);
  return scratch;
}

/**
 * The payload of address attribute `type` between `from` and `end` of `dv` — 4, 6 or 16 bytes — in the
 * scratch buffer of its length (the next call overwrites it: read it at once), or undefined. A dump read in
 * place makes no view per address this way.
 */
export function addrAttr(dv: DataView, from: number, end: number, type: number): Uint8Array | undefined {
  const at = attrAt(dv, from, end, type);
  const scratch = at < 0 ? undefined : SCRATCH[attrLenAt(dv, at)];
  if (!scratch) return undefined;
  for (let i = 0; i < scratch.length; i++) scratch[i] = dv.getUint8(at + i);
  return scratch;
}

/** Reads a borrowed nl_addr holding an IP: `"10.0.0.1"`, or `undefined` for NULL/empty. */
export function readIP(ptr: Deno.PointerValue): string | undefined {
  return ptr === null ? undefined : ipText(bytesOf(ptr));
}

/** 4 or 16 address bytes as text, else undefined. */
export function ipText(b: Uint8Array | undefined): string | undefined {
  // IPv4 without the bigint round trip: list calls read thousands of addresses.
  if (b?.length === 4) return formatV4(b);
  return b?.length === 16 ? formatIP(ipFromBytes(b)) : undefined;
}

/** Reads a borrowed nl_addr as a network `"10.0.0.0/24"`; an empty address is the default route. */
export function readNet(ptr: Deno.PointerValue, family: 4 | 6): string {
  return ptr === null
    ? netText(undefined, 0, family)
    : netText(bytesOf(ptr), nl().nl_addr_get_prefixlen(ptr), family);
}

/** 4 or 16 address bytes and a prefix as a network; no bytes (or another length) is the default route. */
export function netText(b: Uint8Array | undefined, prefix: number, family: 4 | 6): string {
  if (b?.length === 4) return formatV4(b, prefix);
  if (b?.length !== 16) return family === 4 ? "0.0.0.0/0" : "::/0";
  return `${formatIP(ipFromBytes(b))}/${prefix}`;
}

/** Reads a borrowed nl_addr holding a MAC, or `""`. */
export function readMac(ptr: Deno.PointerValue): string {
  return ptr === null ? "" : macText(bytesOf(ptr));
}

/** 6 bytes as a MAC, anything else as `""`. */
export function macText(b: Uint8Array | undefined): string {
  return b?.length === 6 ? formatMac(b) : "";
}

/** Reads a borrowed nl_addr with its prefix length: `"10.0.0.1/24"`. */
export function readCidr(ptr: Deno.PointerValue, prefix: number): string | undefined {
  const ip = readIP(ptr);
  return ip === undefined ? undefined : `${ip}/${prefix}`;
}
