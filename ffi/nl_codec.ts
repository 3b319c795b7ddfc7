/**
 * The one netlink codec: messages and attributes (`struct nlattr`: u16 length, u16 type, payload, padded
 * to 4 bytes) built and read in TypeScript. The raw rtnetlink of the CNI plugin (ffi/rtnl/) sends whole
 * messages built here; generic netlink (ffi/genl.ts, kernel WireGuard) builds its payload here and hands
 * it to libnl. Pure byte work: no FFI, no library.
 *
 * Integers are in host byte order (little-endian on x86_64 and aarch64), as netlink wants, except
 * addresses, which are in network order.
 *
 * @module
 */
import { NLA_TYPE_MASK, NLMSG_HDRLEN } from "./nl_consts.ts";

const align4 = (n: number) => (n + 3) & ~3;

/**
 * Appends netlink messages — or, without {@linkcode begin}, a bare run of attributes (a genl payload) —
 * into one growable buffer. Nested attributes: {@linkcode nestStart}, then the children, then
 * {@linkcode nestEnd}; the type is written as given (or in `NLA_F_NESTED` where the family wants it).
 */
export class NlBuilder {
  #buf = new Uint8Array(new ArrayBuffer(1024));
  #dv = new DataView(this.#buf.buffer);
  #off = 0;
  #msgStart = -1;

  #room(n: number): void {
    if (this.#off + n <= this.#buf.length) return;
    const next = new Uint8Array(new ArrayBuffer(Math.max(this.#buf.length * 2, this.#off + n)));
    next.set(this.#buf.subarray(0, this.#off));
    this.#buf = next;
    this.#dv = new DataView(next.buffer);
  }

  /** Starts a message of `type` with `flags` and sequence number `seq`. */
  begin(type: number, flags: number, seq: number): this {
    this.#room(NLMSG_HDRLEN);
    this.#msgStart = this.#off;
    this.#dv.setUint16(this.#off + 4, type, true);
    this.#dv.setUint16(this.#off + 6, flags, true);
    this.#dv.setUint32(this.#off + 8, seq, true);
    this.#dv.setUint32(this.#off + 12, 0, true); // pid 0: the kernel fills in ours
    this.#off += NLMSG_HDRLEN;
    return this;
  }

  /** Appends zeroed bytes (a fixed struct) and returns its offset, to fill with {@linkcode view}. */
  struct(size: number): number {
    this.#room(align4(size));
    const at = this.#off;
    this.#buf.fill(0, at, at + align4(size));
    this.#off += align4(size);
    return at;
  }

  /** The buffer as a DataView (valid until the next append). */
  get view(): DataView {
    return this.#dv;
  }

  /** Appends an attribute with raw bytes. */
  bytes(type: number, data: Uint8Array): this {
    const len = 4 + data.length;
    this.#room(align4(len));
    this.#dv.setUint16(this.#off, len, true);
    this.#dv.setUint16(this.#off + 2, type, true);
    this.#buf.set(data, this.#off + 4);
    this.#buf.fill(0, this.#off + len, this.#off + align4(len));
    this.#off += align4(len);
    return this;
  }

  /** Appends a u8 attribute. */
  u8(type: number, v: number): this {
    return this.bytes(type, Uint8Array.of(v));
  }

  /** Appends a u16 attribute (host order). */
  u16(type: number, v: number): this {
    const b = new Uint8Array(2);
    new DataView(b.buffer).setUint16(0, v, true);
    return this.bytes(type, b);
  }

  /** Appends a u32 attribute (host order). */
  u32(type: number, v: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v, true);
    return this.bytes(type, b);
  }

  /** Appends a NUL-terminated string attribute. */
  str(type: number, s: string): this {
    const enc = new TextEncoder().encode(s);
    const b = new Uint8Array(enc.length + 1);
    b.set(enc);
    return this.bytes(type, b);
  }

  /** Opens a nested attribute; close it with {@linkcode nestEnd}. */
  nestStart(type: number): number {
    this.#room(4);
    const at = this.#off;
    this.#dv.setUint16(at + 2, type, true);
    this.#off += 4;
    return at;
  }

  /** Closes a nested attribute opened at `at`. */
  nestEnd(at: number): this {
    this.#dv.setUint16(at, this.#off - at, true);
    return this;
  }

  /** Finishes the current message (writes its length). */
  end(): this {
    this.#dv.setUint32(this.#msgStart, this.#off - this.#msgStart, true);
    this.#msgStart = -1;
    return this;
  }

  /** The encoded bytes (shares the buffer: valid until the next append). */
  bytesOut(): Uint8Array<ArrayBuffer> {
    return this.#buf.subarray(0, this.#off);
  }
}

/** One received message: its header fields and where its payload lies in `dv`. */
export interface NlMessage {
  /** nlmsg_type. */
  type: number;
  /** nlmsg_flags. */
  flags: number;
  /** nlmsg_seq. */
  seq: number;
  /** The receive buffer. */
  dv: DataView;
  /** Offset of the payload (after the header). */
  at: number;
  /** Offset just past the message. */
  end: number;
}

/** Splits a received datagram into messages; stops at the first malformed one. */
export function* messages(dv: DataView, length: number): Generator<NlMessage> {
  let off = 0;
  while (off + NLMSG_HDRLEN <= length) {
    const len = dv.getUint32(off, true);
    if (len < NLMSG_HDRLEN || off + len > length) break;
    yield {
      type: dv.getUint16(off + 4, true),
      flags: dv.getUint16(off + 6, true),
      seq: dv.getUint32(off + 8, true),
      dv,
      at: off + NLMSG_HDRLEN,
      end: off + len,
    };
    off += align4(len);
  }
}

/** A message's payload after its first `skip` bytes (a fixed struct), as a view. */
export function payload(m: NlMessage, skip = 0): Uint8Array {
  const from = Math.min(m.at + skip, m.end);
  return new Uint8Array(m.dv.buffer, m.dv.byteOffset + from, m.end - from);
}

/** A parsed attribute. */
export interface NlAttr {
  /** Type without the flag bits (NLA_F_NESTED, NLA_F_NET_BYTEORDER). */
  type: number;
  /** Payload (a view into the message). */
  data: Uint8Array;
}

/** Splits a run of attributes, repeated types kept in order; stops at the first malformed one. */
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

/**
 * The offset in `dv` of the payload of the first attribute of `type` between `from` and `end`, or -1; its
 * length is `attrLenAt(dv, at)`. Makes nothing: a dump of thousands of messages is read in place.
 */
export function attrAt(dv: DataView, from: number, end: number, type: number): number {
  let off = from;
  while (off + 4 <= end) {
    const len = dv.getUint16(off, true);
    if (len < 4 || off + len > end) return -1;
    if ((dv.getUint16(off + 2, true) & NLA_TYPE_MASK) === type) return off + 4;
    off += align4(len);
  }
  return -1;
}

/** The payload length of the attribute whose payload {@linkcode attrAt} found at `at`. */
export function attrLenAt(dv: DataView, at: number): number {
  return dv.getUint16(at - 4, true) - 4;
}

/** The attributes of a run by type (the last of a repeated type wins). */
export function attrMap(bytes: Uint8Array): Map<number, NlAttr> {
  return new Map(parseAttrs(bytes).map((a) => [a.type, a]));
}

const view = (a: NlAttr) => new DataView(a.data.buffer, a.data.byteOffset, a.data.byteLength);

/** A u8 payload, or undefined when the attribute is absent or too short. */
export function attrU8(a: NlAttr | undefined): number | undefined {
  return a && a.data.length >= 1 ? a.data[0] : undefined;
}

/** A u16 payload (host order), or undefined when the attribute is absent or too short. */
export function attrU16(a: NlAttr | undefined): number | undefined {
  return a && a.data.length >= 2 ? view(a).getUint16(0, true) : undefined;
}

/** A u32 payload (host order), or undefined when the attribute is absent or too short. */
export function attrU32(a: NlAttr | undefined): number | undefined {
  return a && a.data.length >= 4 ? view(a).getUint32(0, true) : undefined;
}

/** A u64 payload as a number (counters stay far below 2^53), or undefined when absent or too short. */
export function attrU64(a: NlAttr | undefined): number | undefined {
  return a && a.data.length >= 8 ? Number(view(a).getBigUint64(0, true)) : undefined;
}

/** A string payload up to its NUL, or undefined when the attribute is absent. */
export function attrString(a: NlAttr | undefined): string | undefined {
  if (!a) return undefined;
  const z = a.data.indexOf(0);
  return new TextDecoder().decode(z < 0 ? a.data : a.data.subarray(0, z));
}

/** A copy of a binary payload (it outlives the receive buffer), or undefined when absent. */
export function attrBytes(a: NlAttr | undefined): Uint8Array | undefined {
  return a ? a.data.slice() : undefined;
}
