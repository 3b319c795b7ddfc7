/**
 * The etcd v3 API's protobuf codec, from plain tables (proto_schema.ts), standing in for
 * `@grpc/proto-loader` under `npm:etcd3`.
 *
 * Why: etcd3 calls proto-loader's `loadSync` on its rpc.proto when it is imported. That loads protobufjs,
 * parses 36 KB of .proto text and builds reflection objects and generated codecs for ~110 messages:
 * measured ~10 MB of RSS and 100-150 ms of start-up in every agent and CLI call, for the dozen messages
 * weft uses. This module hands etcd3 the same package definition - every service and method of that
 * rpc.proto, each with a serializer and deserializer - built from tables generated once from the same
 * .proto files (tools/gen_etcd_proto.ts). etcd3 itself is unchanged: {@linkcode installEtcdProtoCodec}
 * puts this definition in the require cache under the path etcd3's `require("@grpc/proto-loader")`
 * resolves to, before etcd3 is imported.
 *
 * The codec reproduces protobufjs with etcd3's options (`keepCase`, `longs: String`, `enums: String`,
 * `defaults: true`, `oneofs: true`) - byte for byte when encoding (fields by number, explicitly given
 * defaults written, repeated numbers packed) and value for value when decoding (64-bit integers as
 * decimal strings, enums by name, bytes as Buffers sharing the message's memory, absent fields as
 * their defaults, `null` for absent messages, the oneof's name beside its member); proto_test.ts
 * checks both against protobufjs for every message of the API.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import Module, { createRequire } from "node:module";
import { ETCD_ENUMS, ETCD_MESSAGES, ETCD_METHODS } from "./proto_schema.ts";

/** One field, resolved. */
interface Field {
  name: string;
  id: number;
  kind: string;
  /** 0 single, 1 repeated, 2 repeated and packed. */
  rep: 0 | 1 | 2;
  msg: Message | undefined;
  enm: Enum | undefined;
  oneof: string;
  /** The field's key (number and wire type) as written on the wire. */
  tag: number;
}

/** One message type, resolved. */
interface Message {
  name: string;
  /** Declaration order (fromObject and defaults). */
  fields: Field[];
  /** By field number (encode order). */
  sorted: Field[];
  byId: Map<number, Field>;
}

/** One enum type. */
interface Enum {
  byName: Map<string, number>;
  byNumber: Map<number, string>;
  first: [string, number];
}

const WIRE: Record<string, number> = {
  int32: 0,
  int64: 0,
  uint32: 0,
  uint64: 0,
  bool: 0,
  enum: 0,
  string: 2,
  bytes: 2,
  message: 2,
};

let messages: Map<string, Message> | undefined;

/** Resolves the tables once, on first use. */
function schema(): Map<string, Message> {
  if (messages) return messages;
  const enums = new Map<string, Enum>();
  for (const [name, values] of Object.entries(ETCD_ENUMS)) {
    const byNumber = new Map<number, string>();
    // A number listed twice keeps its first name, as protobufjs's valuesById does.
    for (const [n, v] of values) if (!byNumber.has(v)) byNumber.set(v, n);
    enums.set(name, { byName: new Map(values), byNumber, first: [...values[0]!] });
  }
  const out = new Map<string, Message>();
  for (const name of Object.keys(ETCD_MESSAGES)) {
    out.set(name, { name, fields: [], sorted: [], byId: new Map() });
  }
  for (const [name, defs] of Object.entries(ETCD_MESSAGES)) {
    const m = out.get(name)!;
    for (const [fname, id, kind, rep, type, oneof] of defs) {
      const wire = WIRE[kind];
      if (wire === undefined) throw new Error(`etcd proto: ${name}.${fname}: unsupported kind ${kind}`);
      const f: Field = {
        name: fname,
        id,
        kind,
        rep,
        msg: kind === "message" ? out.get(type) : undefined,
        enm: kind === "enum" ? enums.get(type) : undefined,
        oneof,
        tag: id * 8 + (rep === 2 ? 2 : wire),
      };
      if ((kind === "message" && !f.msg) || (kind === "enum" && !f.enm)) {
        throw new Error(`etcd proto: ${name}.${fname}: unknown type ${type}`);
      }
      m.fields.push(f);
      m.byId.set(id, f);
    }
    m.sorted = [...m.fields].sort((a, b) => a.id - b.id);
  }
  messages = out;
  return out;
}

// ---- 64-bit integers, as protobufjs's Long handles them -------------------------------------------

const TWO_32 = 4294967296;
const MASK_64 = (1n << 64n) - 1n;

function bitsOfBigInt(b: bigint): [number, number] {
  const u = b & MASK_64;
  return [Number(u & 0xffffffffn), Number(u >> 32n)];
}

/** Long.fromNumber: NaN -> 0, clamped to the type's range, truncated towards zero. */
function bitsOfNumber(v: number, unsigned: boolean): [number, number] {
  if (v >= 0 && v < 2 ** 53 && Number.isInteger(v)) return [v >>> 0, Math.floor(v / TWO_32)];
  if (Number.isNaN(v)) return [0, 0];
  if (unsigned) {
    if (v < 0) return [0, 0];
    if (v >= 2 ** 64) return [0xffffffff, 0xffffffff];
  } else {
    if (v <= -(2 ** 63)) return [0, 0x80000000];
    if (v + 1 >= 2 ** 63) return [0xffffffff, 0x7fffffff];
  }
  return bitsOfBigInt(BigInt(Math.trunc(v)));
}

/** Long.fromString (radix 10): chunks of 8 digits through parseInt, wrapping at 64 bits. */
function bitsOfString(s: string): [number, number] {
  if (/^\d{1,15}$/.test(s)) return bitsOfNumber(Number(s), true);
  if (s.length === 0) throw Error("empty string");
  if (s === "NaN" || s === "Infinity" || s === "+Infinity" || s === "-Infinity") return [0, 0];
  const p = s.indexOf("-");
  if (p > 0) throw Error("interior hyphen");
  if (p === 0) {
    const [lo, hi] = bitsOfString(s.slice(1));
    return bitsOfBigInt(-((BigInt(hi) << 32n) | BigInt(lo)));
  }
  let r = 0n;
  for (let i = 0; i < s.length; i += 8) {
    const chunk = s.slice(i, i + 8);
    const v = parseInt(chunk, 10);
    r = (r * 10n ** BigInt(chunk.length) + (Number.isNaN(v) ? 0n : BigInt(v))) & MASK_64;
  }
  return bitsOfBigInt(r);
}

/** Long.fromValue: a number, a decimal string, a bigint or a `{low, high}` object. */
function longBits(v: unknown, unsigned: boolean): [number, number] {
  if (typeof v === "number") return bitsOfNumber(v, unsigned);
  if (typeof v === "string") return bitsOfString(v);
  if (typeof v === "bigint") return bitsOfBigInt(v);
  const o = v as { low?: number; high?: number };
  return [((o.low as number) | 0) >>> 0, ((o.high as number) | 0) >>> 0];
}

/** The decimal text of a 64-bit value (Long.toString). */
function longText(lo: number, hi: number, unsigned: boolean): string {
  if (hi === 0) return String(lo);
  if (hi < 0x200000) return String(hi * TWO_32 + lo);
  const u = (BigInt(hi) << 32n) | BigInt(lo);
  return (unsigned ? u : BigInt.asIntN(64, u)).toString();
}

// ---- encoding (fromObject + encode) ---------------------------------------------------------------

class Writer {
  buf = new Uint8Array(128);
  len = 0;

  #room(n: number): void {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const b = new Uint8Array(size);
    b.set(this.buf.subarray(0, this.len));
    this.buf = b;
  }

  varint(v: number): void {
    this.#room(5);
    v >>>= 0;
    while (v > 127) {
      this.buf[this.len++] = (v & 127) | 128;
      v >>>= 7;
    }
    this.buf[this.len++] = v;
  }

  varint64(lo: number, hi: number): void {
    this.#room(10);
    while (hi) {
      this.buf[this.len++] = (lo & 127) | 128;
      lo = ((lo >>> 7) | (hi << 25)) >>> 0;
      hi >>>= 7;
    }
    this.varint(lo);
  }

  /** int32 and enums: negative numbers as 10-byte varints, as protobufjs writes them. */
  int32(v: number): void {
    v |= 0;
    if (v < 0) this.varint64(v >>> 0, 0xffffffff);
    else this.varint(v);
  }

  bytes(b: ArrayLike<number>): void {
    const n = b.length >>> 0;
    this.varint(n);
    this.#room(n);
    if (b instanceof Uint8Array) this.buf.set(b.subarray(0, n), this.len);
    else for (let i = 0; i < n; i++) this.buf[this.len + i] = b[i]!;
    this.len += n;
  }
}

const enc = new TextEncoder();

/** A message field's value as protobufjs's fromObject leaves it (undefined: not set). */
function fromValue(f: Field, v: unknown): unknown {
  switch (f.kind) {
    case "int64":
    case "uint64":
      return longBits(v, f.kind === "uint64");
    case "uint32":
      return (v as number) >>> 0;
    case "int32":
      return (v as number) | 0;
    case "bool":
      return Boolean(v);
    case "string":
      return String(v);
    case "bytes":
      if (typeof v === "string") return Buffer.from(v, "base64");
      return (v as { length?: number }).length! >= 0 ? v : undefined;
    case "enum": {
      const n = f.enm!.byName.get(v as string);
      if (typeof v === "string" && n !== undefined) return n;
      if (typeof v === "number") return v;
      // An unknown name: not set in a single field; the first value in a repeated one (protobufjs's
      // generated switch falls through there).
      return f.rep ? f.enm!.first[1] : undefined;
    }
    case "message":
      return fromObject(f.msg!, v);
  }
  return undefined;
}

type Plain = Record<string, unknown>;

/** protobufjs's fromObject: the set fields, converted, by name. */
function fromObject(m: Message, d: unknown): Map<Field, unknown> {
  if (!d || typeof d !== "object") throw TypeError(`.${m.name}: object expected`);
  const o = d as Plain;
  const set = new Map<Field, unknown>();
  for (const f of m.fields) {
    const v = o[f.name];
    if (f.rep) {
      if (!v) continue;
      if (!Array.isArray(v)) throw TypeError(`.${m.name}.${f.name}: array expected`);
      const list: unknown[] = [];
      for (const x of v) {
        if (f.kind === "message" && typeof x !== "object") {
          throw TypeError(`.${m.name}.${f.name}: object expected`);
        }
        list.push(fromValue(f, x));
      }
      set.set(f, list);
    } else if (v != null) {
      if (f.kind === "message" && typeof v !== "object") {
        throw TypeError(`.${m.name}.${f.name}: object expected`);
      }
      const x = fromValue(f, v);
      if (x !== undefined) set.set(f, x);
    }
  }
  return set;
}

function writeValue(w: Writer, f: Field, v: unknown): void {
  switch (f.kind) {
    case "int64":
    case "uint64": {
      const [lo, hi] = v as [number, number];
      w.varint64(lo, hi);
      return;
    }
    case "uint32":
      w.varint(v as number);
      return;
    case "int32":
    case "enum":
      w.int32(v as number);
      return;
    case "bool":
      w.varint(v ? 1 : 0);
      return;
    case "string":
      w.bytes(enc.encode(v as string));
      return;
    case "bytes":
      w.bytes(v as ArrayLike<number>);
      return;
    case "message": {
      const sub = new Writer();
      encodeInto(sub, f.msg!, v as Map<Field, unknown>);
      w.bytes(sub.buf.subarray(0, sub.len));
    }
  }
}

function encodeInto(w: Writer, m: Message, set: Map<Field, unknown>): void {
  for (const f of m.sorted) {
    if (!set.has(f)) continue;
    const v = set.get(f);
    if (f.rep === 2) {
      const list = v as unknown[];
      if (!list.length) continue;
      const sub = new Writer();
      for (const x of list) writeValue(sub, f, x);
      w.varint(f.tag);
      w.bytes(sub.buf.subarray(0, sub.len));
    } else if (f.rep === 1) {
      for (const x of v as unknown[]) {
        w.varint(f.tag);
        writeValue(w, f, x);
      }
    } else {
      w.varint(f.tag);
      writeValue(w, f, v);
    }
  }
}

/** Encodes `obj` as message `type` (protobufjs: `encode(fromObject(obj)).finish()`). */
export function encodeMessage(type: string, obj: unknown): Buffer {
  const m = schema().get(type);
  if (!m) throw new Error(`etcd proto: unknown message ${type}`);
  const w = new Writer();
  encodeInto(w, m, fromObject(m, obj));
  return Buffer.from(w.buf.buffer, 0, w.len);
}

// ---- decoding (decode + toObject) -----------------------------------------------------------------

class Reader {
  pos: number;
  lo = 0;
  hi = 0;
  constructor(readonly buf: Uint8Array, start: number, public end: number) {
    this.pos = start;
  }

  #byte(): number {
    if (this.pos >= this.end) throw new RangeError(`index out of range: ${this.pos} + 1 > ${this.end}`);
    return this.buf[this.pos++]!;
  }

  varint(): number {
    let v = 0;
    for (let shift = 0; shift < 28; shift += 7) {
      const b = this.#byte();
      v |= (b & 127) << shift;
      if (b < 128) return v >>> 0;
    }
    const b = this.#byte();
    v = (v | ((b & 15) << 28)) >>> 0;
    if (b < 128) return v;
    // The rest of a 64-bit varint does not fit 32 bits (protobufjs drops it the same way).
    for (let i = 0; i < 5; i++) if (this.#byte() < 128) return v;
    throw Error("invalid varint encoding");
  }

  /** A 64-bit varint into `lo`/`hi`. */
  varint64(): void {
    let lo = 0, hi = 0;
    for (let shift = 0; shift < 28; shift += 7) {
      const b = this.#byte();
      lo |= (b & 127) << shift;
      if (b < 128) {
        this.lo = lo >>> 0;
        this.hi = 0;
        return;
      }
    }
    let b = this.#byte();
    lo |= (b & 127) << 28;
    hi = (b & 127) >> 4;
    if (b >= 128) {
      for (let shift = 3; shift < 32; shift += 7) {
        b = this.#byte();
        hi |= (b & 127) << shift;
        if (b < 128) break;
        if (shift + 7 >= 32) throw Error("invalid varint encoding");
      }
    }
    this.lo = lo >>> 0;
    this.hi = hi >>> 0;
  }

  /** The end of a length-delimited field starting here. */
  delimited(): number {
    const n = this.varint();
    const end = this.pos + n;
    if (end > this.end) throw new RangeError(`index out of range: ${this.pos} + ${n} > ${this.end}`);
    return end;
  }

  skip(wire: number): void {
    switch (wire) {
      case 0:
        this.varint64();
        return;
      case 1:
        this.pos += 8;
        break;
      case 2:
        this.pos = this.delimited();
        return;
      case 5:
        this.pos += 4;
        break;
      case 3:
        for (;;) {
          const t = this.varint();
          if ((t & 7) === 4) return;
          this.skip(t & 7);
        }
      default:
        throw Error(`invalid wire type ${wire} at offset ${this.pos}`);
    }
    if (this.pos > this.end) throw new RangeError("index out of range");
  }
}

const dec = new TextDecoder();

function readValue(r: Reader, f: Field, source: Buffer): unknown {
  switch (f.kind) {
    case "int64":
    case "uint64":
      r.varint64();
      return longText(r.lo, r.hi, f.kind === "uint64");
    case "uint32":
      return r.varint();
    case "int32":
      return r.varint() | 0;
    case "enum": {
      const n = r.varint() | 0;
      return f.enm!.byNumber.get(n) ?? n;
    }
    case "bool":
      return r.varint() !== 0; // the low 32 bits only, as protobufjs reads a bool
    case "string": {
      const n = r.varint();
      const end = Math.min(r.pos + n, r.end);
      const s = dec.decode(r.buf.subarray(r.pos, end));
      r.pos = end;
      return s;
    }
    case "bytes": {
      const end = r.delimited();
      const b = source.subarray(r.pos, end);
      r.pos = end;
      return b;
    }
    case "message": {
      const end = r.delimited();
      const o = decodeFrom(f.msg!, r, end, source);
      r.pos = end;
      return o;
    }
  }
  return undefined;
}

function defaultOf(f: Field): unknown {
  switch (f.kind) {
    case "int64":
    case "uint64":
      return "0";
    case "uint32":
    case "int32":
      return 0;
    case "bool":
      return false;
    case "string":
      return "";
    case "bytes":
      return Buffer.alloc(0);
    case "enum":
      return f.enm!.first[0];
    case "message":
      return null;
  }
  return undefined;
}

function decodeFrom(m: Message, r: Reader, end: number, source: Buffer): Plain {
  const d: Plain = {};
  for (const f of m.fields) {
    if (f.rep) d[f.name] = [];
    else if (!f.oneof) d[f.name] = defaultOf(f);
  }
  const outer = r.end;
  r.end = end;
  while (r.pos < end) {
    const t = r.varint();
    const f = m.byId.get(t >>> 3);
    if (!f) {
      r.skip(t & 7);
      continue;
    }
    if (f.rep) {
      const list = d[f.name] as unknown[];
      if (f.kind !== "message" && f.kind !== "string" && f.kind !== "bytes" && (t & 7) === 2) {
        const stop = r.delimited();
        r.end = stop;
        while (r.pos < stop) list.push(readValue(r, f, source));
        r.end = end;
      } else list.push(readValue(r, f, source));
    } else {
      d[f.name] = readValue(r, f, source);
      if (f.oneof) d[f.oneof] = f.name;
    }
  }
  r.end = outer;
  if (r.pos !== end) throw new RangeError("index out of range");
  return d;
}

/** Decodes message `type` (protobufjs: `toObject(decode(buf), etcd3's options)`). */
export function decodeMessage(type: string, buf: Uint8Array): Plain {
  const m = schema().get(type);
  if (!m) throw new Error(`etcd proto: unknown message ${type}`);
  const source = Buffer.isBuffer(buf) ? buf : Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength);
  return decodeFrom(m, new Reader(source, 0, source.length), source.length, source);
}

// ---- the package definition and its place in the require cache ------------------------------------

/** What `@grpc/proto-loader` gives for one RPC (the parts `@grpc/grpc-js` reads). */
export interface EtcdMethodDefinition {
  /** `/etcdserverpb.KV/Range`. */
  path: string;
  /** Client streaming. */
  requestStream: boolean;
  /** Server streaming. */
  responseStream: boolean;
  /** Encodes a request. */
  requestSerialize: (o: unknown) => Buffer;
  /** Decodes a request. */
  requestDeserialize: (b: Uint8Array) => Plain;
  /** Encodes a response. */
  responseSerialize: (o: unknown) => Buffer;
  /** Decodes a response. */
  responseDeserialize: (b: Uint8Array) => Plain;
  /** The camelCase alias etcd3 calls methods by (`range`). */
  originalName: string;
}

function serializer(type: string): (o: unknown) => Buffer {
  const short = type.slice(type.lastIndexOf(".") + 1);
  return (o) => {
    if (Array.isArray(o)) {
      throw new Error(
        `Failed to serialize message: expected object with ${short} structure, got array instead`,
      );
    }
    return encodeMessage(type, o);
  };
}

/** Every service of etcd's rpc.proto, as `@grpc/proto-loader`'s `loadSync` returns them. */
export function etcdPackageDefinition(): Record<string, Record<string, EtcdMethodDefinition>> {
  const out: Record<string, Record<string, EtcdMethodDefinition>> = {};
  for (const [service, method, alias, req, res, reqStream, resStream] of ETCD_METHODS) {
    (out[service] ??= {})[method] = {
      path: `/${service}/${method}`,
      requestStream: reqStream,
      responseStream: resStream,
      requestSerialize: serializer(req),
      requestDeserialize: (b) => decodeMessage(req, b),
      responseSerialize: serializer(res),
      responseDeserialize: (b) => decodeMessage(res, b),
      originalName: alias,
    };
  }
  return out;
}

let installed: string | undefined;
let used = false;

/** Whether etcd3 loaded its services from this codec (tests: the shim really is in place). */
export function etcdProtoCodecUsed(): boolean {
  return used;
}

/**
 * Makes etcd3's `require("@grpc/proto-loader")` return a loader whose `loadSync` of etcd3's rpc.proto
 * gives {@linkcode etcdPackageDefinition}. Call before etcd3 is first imported (later calls change
 * nothing for an etcd3 already loaded). Any other `loadSync` goes to the real proto-loader. Returns
 * false when it could not be installed (etcd3 then loads the real one: slower, same behaviour).
 */
export function installEtcdProtoCodec(): boolean {
  if (installed) return true;
  try {
    // `require` as etcd3's lib/connection-pool.js has it, so the path is the one etcd3 resolves.
    const etcd3Req = createRequire(
      new URL("../../subnet/connection-pool.js", import.meta.resolve("etcd3")).pathname,
    );
    const path = etcd3Req.resolve("@grpc/proto-loader");
    const cache = etcd3Req.cache as Record<string, unknown>;
    if (cache[path]) return false; // already loaded for real
    const real = () => {
      delete cache[path];
      try {
        return etcd3Req("@grpc/proto-loader");
      } finally {
        cache[path] = mod;
      }
    };
    const loader = {
      loadSync(file: string, options?: Record<string, unknown>) {
        // etcd3 asks for `${__dirname}/../proto/rpc.proto` with keepCase and oneofs.
        if (
          /[\\/]etcd3[\\/](lib[\\/]\.\.[\\/])?proto[\\/]rpc\.proto$/.test(file) && options?.keepCase &&
          options.oneofs
        ) {
          used = true;
          return etcdPackageDefinition();
        }
        return real().loadSync(file, options);
      },
    };
    const Ctor = Module as unknown as new (id: string) => {
      filename: string;
      loaded: boolean;
      exports: unknown;
    };
    const mod = new Ctor(path);
    mod.filename = path;
    mod.loaded = true;
    mod.exports = loader;
    cache[path] = mod;
    installed = path;
    return true;
  } catch {
    return false;
  }
}
