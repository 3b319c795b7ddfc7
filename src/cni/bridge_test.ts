import assert from "node:assert/strict";
import { hostVethName } from "./bridge.ts";

Deno.test("hostVethName() is stable, 15 characters, and differs per container and per ifname", () => {
  const a = hostVethName("0123456789abcdef", "eth0");
  assert.equal(a, hostVethName("0123456789abcdef", "eth0"));
  assert.match(a, /^veth[0-9a-f]{11}$/);
  assert.notEqual(a, hostVethName("0123456789abcdef", "net1"));
  assert.notEqual(a, hostVethName("0123456789abcdeg", "eth0"));
  const many = new Set(Array.from({ length: 10000 }, (_, i) => hostVethName(`pod-${i}`, "eth0")));
  assert.equal(many.size, 10000, "no collisions among 10000 pods");
});
