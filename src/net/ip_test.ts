import assert from "node:assert/strict";
import {
  addIP,
  formatIP,
  formatNet,
  ipBytes,
  ipFromBytes,
  lastIP,
  netContains,
  netSize,
  netsOverlap,
  nextNet,
  parseCIDR,
  parseIP,
  parseNet,
  tryParseIP,
} from "./ip.ts";

Deno.test("parseIP()/formatIP() round-trip IPv4 and canonical IPv6 (RFC 5952)", () => {
  for (
    const s of [
      "0.0.0.0",
      "10.244.3.1",
      "255.255.255.255",
      "::",
      "::1",
      "fd00:10:244:3::",
      "2001:db8::1:0:0:1",
      "1:2:3:4:5:6:7:8",
    ]
  ) {
    assert.equal(formatIP(parseIP(s)), s);
  }
  assert.equal(formatIP(parseIP("FD00:0:0:0:0:0:0:1")), "fd00::1");
  assert.equal(formatIP(parseIP("::ffff:10.0.0.1")), "::ffff:a00:1");
});

Deno.test("parseIP() rejects malformed addresses", () => {
  for (
    const s of [
      "",
      "1.2.3",
      "1.2.3.4.5",
      "256.1.1.1",
      "01.2.3.4",
      "1::2::3",
      "12345::",
      "g::1",
      "1:2:3:4:5:6:7:8:9",
    ]
  ) {
    assert.equal(tryParseIP(s), undefined, s);
  }
});

Deno.test("CIDR helpers: networks, containment, sizes, next network", () => {
  const { ip, net } = parseCIDR("10.244.3.7/24");
  assert.equal(formatIP(ip), "10.244.3.7");
  assert.equal(formatNet(net), "10.244.3.0/24");
  assert.throws(() => parseNet("10.244.3.7/24"), /host bits set/);
  assert.ok(netContains(parseNet("10.244.0.0/16"), parseIP("10.244.255.1")));
  assert.ok(!netContains(parseNet("10.244.0.0/16"), parseIP("10.245.0.1")));
  assert.ok(!netContains(parseNet("10.244.0.0/16"), parseIP("::1")), "families never mix");
  assert.equal(netSize(parseNet("10.244.0.0/20")), 4096n);
  assert.equal(formatIP(lastIP(parseNet("10.244.0.0/24"))), "10.244.0.255");
  assert.equal(formatNet(nextNet(parseNet("10.244.255.0/24"))), "10.245.0.0/24");
  assert.equal(formatNet(nextNet(parseNet("fd00::/64"))), "fd00:0:0:1::/64");
  assert.ok(netsOverlap(parseNet("10.0.0.0/8"), parseNet("10.1.0.0/16")));
  assert.ok(!netsOverlap(parseNet("10.0.0.0/16"), parseNet("10.1.0.0/16")));
  assert.throws(() => addIP(parseIP("255.255.255.255"), 1), RangeError);
});

Deno.test("ipBytes()/ipFromBytes() use network byte order", () => {
  assert.deepEqual([...ipBytes(parseIP("10.244.3.1"))], [10, 244, 3, 1]);
  assert.equal(formatIP(ipFromBytes(new Uint8Array([0xfd, 0, ...new Array(13).fill(0), 1]))), "fd00::1");
  assert.throws(() => ipFromBytes(new Uint8Array(5)), RangeError);
});
