import assert from "node:assert/strict";
import { randomMac } from "./mac.ts";

Deno.test("randomMac() gives lowercase, locally administered unicast MACs that differ", () => {
  const seen = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const mac = randomMac();
    assert.match(mac, /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/);
    const first = parseInt(mac.slice(0, 2), 16);
    assert.equal(first & 0x01, 0, `${mac} is unicast`);
    assert.equal(first & 0x02, 0x02, `${mac} is locally administered`);
    seen.add(mac);
  }
  assert.ok(seen.size > 190, "random");
});
