import assert from "node:assert/strict";
import {
  attrBytes,
  attrMap,
  attrString,
  attrU16,
  attrU32,
  attrU64,
  attrU8,
  messages,
  NlBuilder,
  parseAttrs,
  payload,
} from "./nl_codec.ts";
import { NLA_F_NESTED, NLM_F, NLMSG_HDRLEN, RTM } from "./nl_consts.ts";

Deno.test("netlink attributes are padded to 4 bytes and read back, nested ones included", () => {
  const b = new NlBuilder().str(2, "flannel-wg").u16(6, 51820);
  const peers = b.nestStart(8 | NLA_F_NESTED);
  const peer = b.nestStart(NLA_F_NESTED);
  b.u32(3, 2).u8(9, 24).nestEnd(peer).nestEnd(peers);
  const msg = b.bytesOut();
  assert.equal(msg.length % 4, 0);
  const top = parseAttrs(msg);
  assert.deepEqual(top.map((a) => a.type), [2, 6, 8]);
  assert.equal(attrString(top[0]), "flannel-wg");
  assert.equal(top[0]!.data.length, 11, "the length field counts the NUL, not the padding");
  assert.equal(attrU16(top[1]), 51820);
  const inner = parseAttrs(parseAttrs(top[2]!.data)[0]!.data);
  assert.equal(attrU32(inner[0]), 2);
  assert.equal(attrU8(inner[1]), 24);
  // The nested flag is written, and is not part of the type read back.
  assert.equal(new DataView(msg.buffer).getUint16(16 + 8 + 2, true) & 0x8000, 0x8000);
});

Deno.test("parseAttrs() stops at a truncated attribute instead of reading past the message", () => {
  const good = new NlBuilder().u32(1, 7).bytesOut();
  const bad = new Uint8Array([8, 0, 2, 0, 1]); // claims 8 bytes, has 5
  assert.deepEqual(parseAttrs(new Uint8Array([...good, ...bad])).map((a) => a.type), [1]);
});

Deno.test("readers answer undefined for an absent or short attribute; attrMap keeps the last of a type", () => {
  const run = new NlBuilder().u32(1, 1).u32(1, 2).bytes(2, Uint8Array.of(1, 2)).bytesOut();
  const m = attrMap(run);
  assert.equal(attrU32(m.get(1)), 2);
  assert.equal(attrU32(m.get(2)), undefined, "2 bytes are no u32");
  assert.equal(attrU64(m.get(2)), undefined);
  assert.equal(attrString(m.get(9)), undefined);
  const copy = attrBytes(m.get(2))!;
  assert.deepEqual([...copy], [1, 2]);
  assert.notEqual(copy.buffer, run.buffer, "binary payloads are copied out of the receive buffer");
});

Deno.test("a message: header, fixed struct and attributes, split back by messages() and payload()", () => {
  const b = new NlBuilder();
  for (const seq of [7, 8]) {
    b.begin(RTM.GETLINK, NLM_F.REQUEST | NLM_F.ACK, seq);
    const at = b.struct(16);
    b.view.setInt32(at + 4, seq * 10, true);
    b.str(3, `eth${seq}`).end();
  }
  const out = b.bytesOut();
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  const got = [...messages(dv, out.length)];
  assert.deepEqual(got.map((m) => [m.type, m.flags, m.seq]), [[18, 5, 7], [18, 5, 8]]);
  for (const m of got) {
    assert.equal(m.at, (m.seq - 7) * (m.end - m.at + NLMSG_HDRLEN) + NLMSG_HDRLEN);
    assert.equal(m.dv.getInt32(m.at + 4, true), m.seq * 10);
    assert.equal(attrString(attrMap(payload(m, 16)).get(3)), `eth${m.seq}`);
  }
  // A length beyond the datagram ends the split; a skip beyond the message gives no attributes.
  assert.equal([...messages(dv, out.length - 1)].length, 1);
  assert.deepEqual(parseAttrs(payload(got[0]!, 1000)), []);
});
