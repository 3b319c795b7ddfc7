/**
 * Addresses as text, from their bytes: IPv4 and MACs built from character codes in one step, IPv6 through
 * ffi/ip.ts; and the address attributes of a netlink message read into reused buffers. Pure byte work,
 * shared by the libnl wrappers (ffi/nl_addr.ts) and the raw socket's dumps (ffi/rtnl/).
 *
 * @module
 */
import { formatIP, ipFromBytes } from "./ip.ts";
import { attrAt, attrLenAt } from "./nl_codec.ts";

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

/** The scratch buffer for an address of `length` bytes (4, 6 or 16), or undefined for another length. */
export function addrScratch(length: number): Uint8Array<ArrayBuffer> | undefined {
  return SCRATCH[length];
}

/**
 * The payload of address attribute `type` between `from` and `end` of `dv` — 4, 6 or 16 bytes — in the
 * scratch buffer of its length (the next call overwrites it: read it at once), or undefined. A dump read in
 * place makes no view per address this way.
 */
export function addrAttr(dv: DataView, from: number, end: number, type: number): Uint8Array | undefined {
  const at = attrAt(dv, from, end, type);
  const scratch = at < 0 ? undefined : addrScratch(attrLenAt(dv, at));
  if (!scratch) return undefined;
  for (let i = 0; i < scratch.length; i++) scratch[i] = dv.getUint8(at + i);
  return scratch;
}

/** 4 or 16 address bytes as text, else undefined. */
export function ipText(b: Uint8Array | undefined): string | undefined {
  // IPv4 without the bigint round trip: list calls read thousands of addresses.
  if (b?.length === 4) return formatV4(b);
  return b?.length === 16 ? formatIP(ipFromBytes(b)) : undefined;
}

/** 4 or 16 address bytes and a prefix as a network; no bytes (or another length) is the default route. */
export function netText(b: Uint8Array | undefined, prefix: number, family: 4 | 6): string {
  if (b?.length === 4) return formatV4(b, prefix);
  if (b?.length !== 16) return family === 4 ? "0.0.0.0/0" : "::/0";
  return `${formatIP(ipFromBytes(b))}/${prefix}`;
}

/** 6 bytes as a MAC, anything else as `""`. */
export function macText(b: Uint8Array | undefined): string {
  return b?.length === 6 ? formatMac(b) : "";
}
