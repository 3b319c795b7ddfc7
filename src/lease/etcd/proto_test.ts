import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import {
  ETCD3_LOADER_OPTIONS,
  etcd3ProtoRoot,
  etcd3Require,
  etcd3RpcProto,
  schemaFromRoot,
} from "../../../tools/gen_etcd_proto.ts";
import { decodeMessage, encodeMessage, etcdPackageDefinition } from "./proto.ts";
import { ETCD_ENUMS, ETCD_MESSAGES, ETCD_METHODS } from "./proto_schema.ts";
import { mulberry32 } from "../../../tests/helpers/prng.ts";

// protobufjs as etcd3's proto-loader would use it: the reference every check below compares with.
const root = etcd3ProtoRoot();

Deno.test("the generated tables are exactly what protobufjs reads from etcd3's rpc.proto", () => {
  const fresh = schemaFromRoot(root);
  assert.deepEqual(fresh.messages, ETCD_MESSAGES, "run: deno run -A tools/gen_etcd_proto.ts");
  assert.deepEqual(fresh.enums, ETCD_ENUMS, "run: deno run -A tools/gen_etcd_proto.ts");
  assert.deepEqual(fresh.methods, ETCD_METHODS, "run: deno run -A tools/gen_etcd_proto.ts");
});

Deno.test("the package definition has every service and method @grpc/proto-loader gives etcd3, same paths, streams and aliases", () => {
  const real = etcd3Require()("@grpc/proto-loader").loadSync(etcd3RpcProto(), ETCD3_LOADER_OPTIONS);
  const ours = etcdPackageDefinition();
  const services = Object.keys(real).filter((k) => !("format" in real[k]));
  assert.deepEqual(Object.keys(ours).sort(), services.sort());
  for (const s of services) {
    assert.deepEqual(Object.keys(ours[s]!).sort(), Object.keys(real[s]).sort(), s);
    for (const [name, m] of Object.entries(ours[s]!)) {
      const r = real[s][name];
      assert.deepEqual(
        [m.path, m.requestStream, m.responseStream, m.originalName],
        [r.path, r.requestStream, r.responseStream, r.originalName],
        `${s}.${name}`,
      );
    }
  }
});

/** Seeded, so a failure can be replayed. */
const rng = mulberry32;

type Field = (typeof ETCD_MESSAGES)[string][number];

/** A random value for one field, in every spelling etcd3 (or a careless caller) might use. */
function randomValue(f: Field, r: () => number, depth: number): unknown {
  const pick = <T>(xs: T[]): T => xs[Math.floor(r() * xs.length)]!;
  const int = (max: number) => Math.floor(r() * max);
  switch (f[2]) {
    case "int64":
      return pick<unknown>([
        0,
        int(1000),
        -int(1000),
        "0",
        String(int(2 ** 31)),
        "-" + String(int(2 ** 40)),
        "9223372036854775807",
        "-9223372036854775808",
        "18446744073709551615",
        String(2 ** 53 + int(1000)),
        2 ** 60,
        -(2 ** 63) - 4096,
        1.75,
        BigInt(int(2 ** 31)) * 4294967296n,
        { low: int(2 ** 31), high: -1 },
        ...(r() < 0.05 ? ["", "12-3", "1e5x", true] : []), // protobufjs throws on the first two
      ]);
    case "uint64":
      return pick<unknown>([
        0,
        int(1 << 30),
        "0",
        "18446744073709551615",
        "123456789012345678",
        2 ** 64,
        -5,
        "-1",
      ]);
    case "uint32":
    case "int32":
      return pick([0, int(1000), -int(1000), 2 ** 32 + 5]);
    case "bool":
      return pick<unknown>([true, false, 0, 1, "x"]);
    case "string":
      return pick(["", "a", "κλειδί/ü/🚀", "x".repeat(int(300)), "\u{1F600}end"]);
    case "bytes":
      return pick<unknown>([
        Buffer.from([]),
        Buffer.from(Array.from({ length: int(200) }, () => int(256))),
        new Uint8Array([1, 2, 255]),
        "aGVsbG8=",
        [7, 8, 300],
      ]);
    case "enum": {
      const values = ETCD_ENUMS[f[4]]!;
      return pick<unknown>([...values.map((v) => v[0]), ...values.map((v) => v[1]), 77, "NoSuchName"]);
    }
    case "message":
      if (r() < 0.02) return "not an object"; // protobufjs throws "… object expected"
      return depth > 3 ? null : pick([null, randomMessage(f[4], r, depth + 1)]);
  }
  throw new Error(`no generator for ${f[2]}`);
}

function randomMessage(type: string, r: () => number, depth = 0): Record<string, unknown> {
  const o: Record<string, unknown> = {};
  const oneofs = new Set<string>();
  for (const f of ETCD_MESSAGES[type]!) {
    // Mostly one member per oneof, sometimes two (both are then written, as protobufjs does).
    if (f[5] && oneofs.has(f[5]) && r() < 0.8) continue;
    if (r() < 0.3) continue;
    if (f[5]) oneofs.add(f[5]);
    o[f[0]] = f[3] && r() < 0.02
      ? "not an array" // protobufjs throws "… array expected"
      : f[3]
      ? Array.from({ length: Math.floor(r() * 4) }, () => randomValue(f, r, depth))
      : randomValue(f, r, depth);
    if (f[2] === "message" && Array.isArray(o[f[0]])) {
      o[f[0]] = (o[f[0]] as unknown[]).filter((x) => x !== null);
    }
  }
  return o;
}

function bytesOf(b: Uint8Array): number[] {
  return Array.from(b);
}

Deno.test("encoding matches protobufjs byte for byte (or throws as it does) for random values of every message", () => {
  const r = rng(15);
  let threw = 0;
  for (const type of Object.keys(ETCD_MESSAGES)) {
    const T = root.lookupType(type);
    for (let i = 0; i < 40; i++) {
      const obj = randomMessage(type, r);
      let want: number[] | Error;
      try {
        want = bytesOf(T.encode(T.fromObject(obj)).finish());
      } catch (err) {
        want = err as Error;
      }
      if (want instanceof Error) {
        threw++;
        assert.throws(() => encodeMessage(type, obj), { message: want.message }, `${type} ${i}`);
      } else {
        assert.deepEqual(
          bytesOf(encodeMessage(type, obj)),
          want,
          `${type} ${i}: ${JSON.stringify(obj, (_, v) => typeof v === "bigint" ? `${v}n` : v)}`,
        );
      }
    }
  }
  assert.ok(threw > 20, `only ${threw} inputs exercised protobufjs's errors`);
});

Deno.test("decoding matches protobufjs's toObject with etcd3's options for random messages of every type", () => {
  const r = rng(16);
  for (const type of Object.keys(ETCD_MESSAGES)) {
    const T = root.lookupType(type);
    for (let i = 0; i < 40; i++) {
      let wire: Buffer | undefined;
      while (!wire) {
        try {
          wire = Buffer.from(T.encode(T.fromObject(randomMessage(type, r))).finish());
        } catch { /* an input protobufjs rejects: draw another */ }
      }
      const want = T.toObject(T.decode(wire), ETCD3_LOADER_OPTIONS);
      assert.deepStrictEqual(decodeMessage(type, wire), want, `${type} ${i}: ${wire.toString("hex")}`);
    }
  }
});

Deno.test("decoding gives 64-bit integers as exact decimal text, bytes as Buffers and absent fields as defaults", () => {
  const T = root.lookupType("etcdserverpb.RangeResponse");
  const wire = Buffer.from(
    T.encode(T.fromObject({
      header: { revision: "9223372036854775807", cluster_id: "18446744073709551615" },
      kvs: [{ key: Buffer.from("/k"), value: Buffer.from("{}"), lease: "-2" }],
    })).finish(),
  );
  const d = decodeMessage("etcdserverpb.RangeResponse", wire) as {
    header: Record<string, unknown>;
    kvs: Record<string, unknown>[];
    more: boolean;
    count: string;
  };
  assert.equal(d.header.revision, "9223372036854775807");
  assert.equal(d.header.cluster_id, "18446744073709551615");
  assert.equal(d.kvs[0]!.lease, "-2");
  assert.ok(Buffer.isBuffer(d.kvs[0]!.key));
  assert.equal((d.kvs[0]!.value as Buffer).toString(), "{}");
  assert.equal(d.more, false);
  assert.equal(d.count, "0");
});

Deno.test("a truncated message is rejected, not read past its end", () => {
  const wire = encodeMessage("etcdserverpb.PutRequest", {
    key: Buffer.from("/some/key"),
    value: Buffer.from("v"),
  });
  assert.throws(
    () => decodeMessage("etcdserverpb.PutRequest", wire.subarray(0, wire.length - 2)),
    RangeError,
  );
});

Deno.test("installEtcdProtoCodec makes a fresh etcd3 load its services from the codec, never from protobufjs", async () => {
  const mod = new URL("./proto.ts", import.meta.url).href;
  const code = `
    import { installEtcdProtoCodec, etcdProtoCodecUsed } from "${mod}";
    import { createRequire } from "node:module";
    const installed = installEtcdProtoCodec();
    const { Etcd3 } = await import("etcd3");
    new Etcd3({ hosts: "http://127.0.0.1:1" }).close();
    const cache = createRequire(import.meta.url).cache;
    const protobufjs = Object.keys(cache).filter((k) => /[\\\\/]protobufjs[\\\\/]/.test(k)).length;
    console.log(JSON.stringify({ installed, used: etcdProtoCodecUsed(), protobufjs }));`;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["eval", code],
    cwd: new URL("../../..", import.meta.url).pathname,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
  assert.deepEqual(JSON.parse(text), { installed: true, used: true, protobufjs: 0 });
});
