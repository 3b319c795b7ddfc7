/**
 * Netlink attributes (`struct nlattr`: u16 length, u16 type, payload, padded to 4 bytes) built and read
 * in TypeScript, for generic netlink messages whose payload libnl has no object model for (WireGuard).
 * Pure byte work, no FFI.
 *
 * @module
 */

/** NLA_F_NESTED: the payload is itself a list of attributes. */
export const NLA_F_NESTED = 0x8000;
/** Bits of nla_type that are flags, not the type. */
const NLA_TYPE_MASK = ~(0x8000 | 0x4000) & 0xffff;

const align4 = (n: number) => (n + 3) & ~3;

/** One attribute: header, payload, padding. */
export function nlAttr(type: number, payload: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(align4(4 + payload.length));
  const v = new DataView(out.buffer);
  v.setUint16(0, 4 + payload.length, true);
  v.setUint16(2, type, true);
  out.set(payload, 4);
  return out;
}

/** Concatenates byte arrays. */
export function concatBytes(parts: Uint8Array[]): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.length;
  }
  return out;
}

/** A nested attribute (NLA_F_NESTED set) holding `children`. */
export function nlNested(type: number, children: Uint8Array[]): Uint8Array<ArrayBuffer> {
  return nlAttr(type | NLA_F_NESTED, concatBytes(children));
}

/** A u8 attribute. */
export function nlU8(type: number, v: number): Uint8Array<ArrayBuffer> {
  return nlAttr(type, Uint8Array.of(v));
}

/** A u16 attribute (host order, little-endian here). */
export function nlU16(type: number, v: number): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(2);
  new DataView(b.buffer).setUint16(0, v, true);
  return nlAttr(type, b);
}

/** A u32 attribute (host order). */
export function nlU32(type: number, v: number): Uint8Array<ArrayBuffer> {
  const b = new Uint8Array(4);
  new DataView(b.buffer).setUint32(0, v, true);
  return nlAttr(type, b);
}

/** A NUL-terminated string attribute. */
export function nlString(type: number, s: string): Uint8Array<ArrayBuffer> {
  const b = new TextEncoder().encode(s);
  const z = new Uint8Array(b.length + 1);
  z.set(b);
  return nlAttr(type, z);
}

/** A parsed attribute. */
export interface NlAttr {
  /** Type without flag bits. */
  type: number;
  /** Payload (a view into the message). */
  data: Uint8Array;
}

/** Splits a run of attributes; stops at the first malformed one. */
export function parseAttrs(bytes: Uint8Array): NlAttr[] {
  const out: NlAttr[] = [];
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let off = 0;
  while (off + 4 <= bytes.length) {
    const len = v.getUint16(off, true);
    if (len < 4 || off + len > bytes.length) break;
    out.push({ type: v.getUint16(off + 2, true) & NLA_TYPE_MASK, data: bytes.subarray(off + 4, off + len) });
    off += align4(len);
  }
  return out;
}

/** Reads a u16 payload. */
export function attrU16(a: NlAttr): number {
  return new DataView(a.data.buffer, a.data.byteOffset, a.data.byteLength).getUint16(0, true);
}

/** Reads a u32 payload. */
export function attrU32(a: NlAttr): number {
  return new DataView(a.data.buffer, a.data.byteOffset, a.data.byteLength).getUint32(0, true);
}

/** Reads a u64 payload (as a number: counters stay far below 2^53). */
export function attrU64(a: NlAttr): number {
  return Number(new DataView(a.data.buffer, a.data.byteOffset, a.data.byteLength).getBigUint64(0, true));
}

/** Reads a NUL-terminated string payload. */
export function attrString(a: NlAttr): string {
  const z = a.data.indexOf(0);
  return new TextDecoder().decode(z < 0 ? a.data : a.data.subarray(0, z));
}
