import assert from "node:assert/strict";
import {
  attrString,
  attrU16,
  attrU32,
  nlNested,
  nlString,
  nlU16,
  nlU32,
  nlU8,
  parseAttrs,
} from "./nl_attr.ts";

Deno.test("netlink attributes are padded to 4 bytes and read back, nested ones included", () => {
  const msg = new Uint8Array([
    ...nlString(2, "flannel-wg"),
    ...nlU16(6, 51820),
    ...nlNested(8, [nlNested(0, [nlU32(3, 2), nlU8(9, 24)])]),
  ]);
  assert.equal(msg.length % 4, 0);
  const top = parseAttrs(msg);
  assert.deepEqual(top.map((a) => a.type), [2, 6, 8]);
  assert.equal(attrString(top[0]!), "flannel-wg");
  assert.equal(top[0]!.data.length, 11, "the length field counts the NUL, not the padding");
  assert.equal(attrU16(top[1]!), 51820);
  const peer = parseAttrs(parseAttrs(top[2]!.data)[0]!.data);
  assert.equal(attrU32(peer[0]!), 2);
  assert.deepEqual([...peer[1]!.data], [24]);
  // The nested flag is not part of the type.
  assert.equal(new DataView(msg.buffer).getUint16(16 + 8 + 2, true) & 0x8000, 0x8000);
});

Deno.test("parseAttrs() stops at a truncated attribute instead of reading past the message", () => {
  const good = nlU32(1, 7);
  const bad = new Uint8Array([8, 0, 2, 0, 1]); // claims 8 bytes, has 5
  assert.deepEqual(parseAttrs(new Uint8Array([...good, ...bad])).map((a) => a.type), [1]);
});
