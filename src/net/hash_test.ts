import assert from "node:assert/strict";
import { digest53, fnv1a32, fnv1a64 } from "./hash.ts";

Deno.test("fnv1a32 and fnv1a64 give FNV-1a's published values (names derived from them must never change)", () => {
  // The FNV reference test vectors (draft-eastlake-fnv): "", "a", "foobar".
  assert.equal(fnv1a32(""), 0x811c9dc5);
  assert.equal(fnv1a32("a"), 0xe40c292c);
  assert.equal(fnv1a32("foobar"), 0xbf9cf968);
  assert.equal(fnv1a64(""), 0xcbf29ce484222325n);
  assert.equal(fnv1a64("a"), 0xaf63dc4c8601ec8cn);
  assert.equal(fnv1a64("foobar"), 0x85944171f73967e8n);
});

Deno.test("digest53 is a safe integer, equal for equal text, and spreads near-identical fingerprints", () => {
  const fp = (i: number, mac: string) =>
    JSON.stringify(["uid", "2026-12-07T07:09:13Z", `10.1.${i}.0/24`, {
      "backend-data": `{"VtepMAC":"${mac}"}`,
    }]);
  assert.equal(digest53(fp(1, "0a:00:00:00:00:01")), digest53(fp(1, "0a:00:00:00:00:01")));
  const seen = new Set<number>();
  for (let i = 0; i < 256; i++) {
    for (const mac of ["0a:00:00:00:00:01", "0a:00:00:00:00:02", "0a:00:00:00:00:10"]) {
      const d = digest53(fp(i, mac));
      assert.ok(Number.isSafeInteger(d) && d >= 0, `${d}`);
      seen.add(d);
    }
  }
  assert.equal(seen.size, 256 * 3, "no two of 768 one-character-apart fingerprints collide");
  // Every bit of the 53 is used: over those digests each bit is set in 25–75 % of them.
  for (let bit = 0; bit < 53; bit++) {
    const set = [...seen].filter((d) => Math.floor(d / 2 ** bit) % 2 === 1).length;
    assert.ok(set > 768 * 0.25 && set < 768 * 0.75, `bit ${bit} set in ${set} of 768`);
  }
});
