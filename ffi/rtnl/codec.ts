/**
 * Netlink message encoding and decoding in TypeScript: a builder that appends messages (header, fixed
 * struct, attributes, nested attributes) into one ArrayBuffer-backed buffer, and readers for the replies.
 * All integers are in host byte order (little-endian on x86_64 and aarch64), as netlink wants, except
 * addresses, which are in network order.
 *
 * @module
 */

/** struct nlmsghdr size. */
export const NLMSG_HDRLEN = 16;

/** Netlink message types and flags used by weft (linux/netlink.h, linux/rtnetlink.h). */
export const NL = {
  NOOP: 1,
  ERROR: 2,
  DONE: 3,
  F_REQUEST: 0x1,
  F_MULTI: 0x2,
  F_ACK: 0x4,
  F_DUMP: 0x300,
  F_REPLACE: 0x100,
  F_EXCL: 0x200,
  F_CREATE: 0x400,
  /** In an NLMSG_ERROR: extended-ACK attributes follow. */
  F_ACK_TLVS: 0x200,
  /** In an NLMSG_ERROR: the request was not echoed back (only its header is). */
  F_CAPPED: 0x100,
  RTM_NEWLINK: 16,
  RTM_DELLINK: 17,
  RTM_GETLINK: 18,
  RTM_SETLINK: 19,
  RTM_NEWADDR: 20,
  RTM_DELADDR: 21,
  RTM_GETADDR: 22,
  RTM_NEWROUTE: 24,
  RTM_DELROUTE: 25,
  RTM_GETROUTE: 26,
} as const;

const align4 = (n: number) => (n + 3) & ~3;

/** Appends netlink messages into one growable buffer. */
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

  /** Appends a u32 attribute. */
  u32(type: number, v: number): this {
    const b = new Uint8Array(4);
    new DataView(b.buffer).setUint32(0, v, true);
    return this.bytes(type, b);
  }

  /** Appends a u8 attribute. */
  u8(type: number, v: number): this {
    return this.bytes(type, Uint8Array.of(v));
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

  /** The encoded messages (shares the buffer). */
  bytesOut(): Uint8Array {
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

/** Splits a received datagram into messages. */
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

/** Attribute payload positions by type (the last one wins), for attributes in `[from, to)`. */
export function attrs(dv: DataView, from: number, to: number): Map<number, [number, number]> {
  const out = new Map<number, [number, number]>();
  let off = from;
  while (off + 4 <= to) {
    const len = dv.getUint16(off, true);
    if (len < 4 || off + len > to) break;
    out.set(dv.getUint16(off + 2, true) & 0x3fff, [off + 4, off + len]); // without NLA_F_NESTED/BYTEORDER
    off += align4(len);
  }
  return out;
}

/** Reads a u32 attribute. */
export function attrU32(dv: DataView, a: [number, number] | undefined): number | undefined {
  return a && a[1] - a[0] >= 4 ? dv.getUint32(a[0], true) : undefined;
}

/** Reads a string attribute (up to its NUL). */
export function attrStr(dv: DataView, a: [number, number] | undefined): string | undefined {
  if (!a) return undefined;
  let end = a[0];
  while (end < a[1] && dv.getUint8(end) !== 0) end++;
  return new TextDecoder().decode(new Uint8Array(dv.buffer, dv.byteOffset + a[0], end - a[0]));
}

/** Copies a binary attribute out. */
export function attrBytes(dv: DataView, a: [number, number] | undefined): Uint8Array | undefined {
  return a ? new Uint8Array(dv.buffer.slice(dv.byteOffset + a[0], dv.byteOffset + a[1])) : undefined;
}
