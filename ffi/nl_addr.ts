/**
 * Conversions between weft's address strings and libnl's `struct nl_addr`.
 *
 * IPs are parsed in TypeScript (ffi/ip.ts) so a bad address fails with a clear message before any
 * C call, and built with `nl_addr_build`; MACs are AF_LLC addresses of 6 bytes.
 *
 * @module
 */
import { ipBytes, parseCIDR, parseIP } from "./ip.ts";
import { Owned } from "./cmem.ts";
import { nl } from "./loader.ts";

import { AF } from "./nl_consts.ts";
import { addrScratch, ipText, macText, netText } from "./addr_text.ts";

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

/**
 * The bytes of a borrowed nl_addr, in a scratch buffer of their length (4, 6 or 16; the next call
 * overwrites it: read it at once), or undefined for an empty address or another length.
 */
function bytesOf(ptr: Deno.PointerObject): Uint8Array | undefined {
  const lib = nl();
  const scratch = addrScratch(lib.nl_addr_get_len(ptr));
  if (!scratch) return undefined;
  const bin = lib.nl_addr_get_binary_addr(ptr);
  if (bin === null) return undefined;
  Deno.UnsafePointerView.copyInto(bin, scratch);
  return scratch;
}

/** Reads a borrowed nl_addr holding an IP: `"10.0.0.1"`, or `undefined` for NULL/empty. */
export function readIP(ptr: Deno.PointerValue): string | undefined {
  return ptr === null ? undefined : ipText(bytesOf(ptr));
}

/** Reads a borrowed nl_addr as a network `"10.0.0.0/24"`; an empty address is the default route. */
export function readNet(ptr: Deno.PointerValue, family: 4 | 6): string {
  return ptr === null
    ? netText(undefined, 0, family)
    : netText(bytesOf(ptr), nl().nl_addr_get_prefixlen(ptr), family);
}

/** Reads a borrowed nl_addr holding a MAC, or `""`. */
export function readMac(ptr: Deno.PointerValue): string {
  return ptr === null ? "" : macText(bytesOf(ptr));
}

/** Reads a borrowed nl_addr with its prefix length: `"10.0.0.1/24"`. */
export function readCidr(ptr: Deno.PointerValue, prefix: number): string | undefined {
  const ip = readIP(ptr);
  return ip === undefined ? undefined : `${ip}/${prefix}`;
}
