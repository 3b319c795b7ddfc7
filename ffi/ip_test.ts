import assert from "node:assert/strict";
import {
  addIP,
  bitsOf,
  compareIP,
  formatIP,
  formatNet,
  ipBytes,
  ipEqual,
  ipFromBytes,
  IPParseError,
  lastIP,
  netContains,
  netContainsNet,
  netEqual,
  netSize,
  netsOverlap,
  networkOf,
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

Deno.test("formatIP() compresses only the longest run of two or more zero groups, the first on a tie", () => {
  const cases: [string, string][] = [
    ["1:0:2:3:4:5:6:7", "1:0:2:3:4:5:6:7"], // a single zero group stays
    ["1:0:0:2:0:0:0:3", "1:0:0:2::3"], // the longer run wins
    ["1:0:0:2:3:0:0:4", "1::2:3:0:0:4"], // tie: the first run
    ["0:0:0:0:0:0:0:1", "::1"],
    ["1:0:0:0:0:0:0:0", "1::"],
    ["fd00:0:0:0:0:0:0:0", "fd00::"],
  ];
  for (const [given, want] of cases) assert.equal(formatIP(parseIP(given)), want, given);
});

Deno.test("parseIP() accepts every IPv6 spelling of one address and an IPv4 tail", () => {
  const want = parseIP("fd00::a00:1");
  for (
    const s of ["fd00:0:0:0:0:0:a00:1", "FD00::0A00:0001", "fd00::10.0.0.1", "fd00:0::a00:1", " fd00::a00:1 "]
  ) {
    assert.ok(ipEqual(parseIP(s), want), s);
  }
  assert.equal(formatIP(parseIP("1:2:3:4:5:6:7::")), "1:2:3:4:5:6:7:0", ":: may stand for one group");
  for (const bad of [":1::", "1:2:3:4:5:6:7:8::", "::1.2.3", "::1.2.3.256", "fd00::a00::1", "1.2.3.4/24"]) {
    assert.equal(tryParseIP(bad), undefined, bad);
  }
  assert.throws(
    () => parseIP("10.0.0.256"),
    (e: unknown) => e instanceof IPParseError && e.input === "10.0.0.256",
  );
});

Deno.test("parseCIDR() keeps the address as written and zeroes the host bits of the network, like Go", () => {
  const v6 = parseCIDR("fd00:10:244:3::1/64");
  assert.equal(formatIP(v6.ip), "fd00:10:244:3::1");
  assert.equal(formatNet(v6.net), "fd00:10:244:3::/64");
  assert.equal(formatNet(parseCIDR("10.1.2.3/0").net), "0.0.0.0/0");
  assert.equal(formatNet(parseCIDR("10.1.2.3/32").net), "10.1.2.3/32");
  for (
    const bad of ["10.1.2.3", "10.1.2.3/33", "10.1.2.3/", "10.1.2.3/x", "/24", "fd00::/129", "10.1.2.3/-1"]
  ) {
    assert.throws(() => parseCIDR(bad), IPParseError, bad);
  }
  assert.throws(() => networkOf(parseIP("10.0.0.1"), 40), /prefix must be 0–32/);
  assert.equal(formatNet(networkOf(parseIP("fd00::ffff"), 112)), "fd00::/112");
});

Deno.test("addIP() steps both ways and refuses to leave the address space", () => {
  assert.equal(formatIP(addIP(parseIP("10.244.1.0"), -1)), "10.244.0.255");
  assert.equal(formatIP(addIP(parseIP("10.244.0.255"), 1n)), "10.244.1.0");
  assert.equal(formatIP(addIP(parseIP("fd00::ffff"), 1)), "fd00::1:0");
  assert.throws(() => addIP(parseIP("0.0.0.0"), -1), RangeError);
  assert.throws(() => addIP(parseIP("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), 1), RangeError);
  assert.throws(() => nextNet(parseNet("255.255.255.0/24")), RangeError);
});

Deno.test("network relations: containment of networks, overlap, equality, families never mix", () => {
  const n16 = parseNet("10.244.0.0/16");
  assert.ok(netContainsNet(n16, parseNet("10.244.3.0/24")));
  assert.ok(netContainsNet(n16, n16));
  assert.ok(!netContainsNet(parseNet("10.244.3.0/24"), n16), "a bigger network is not inside a smaller one");
  assert.ok(!netsOverlap(n16, parseNet("::/0")), "IPv4 and IPv6 never overlap");
  assert.ok(netsOverlap(parseNet("0.0.0.0/0"), n16));
  assert.ok(netEqual(parseNet("10.244.0.0/16"), n16));
  assert.ok(!netEqual(parseNet("10.244.0.0/17"), n16));
  assert.ok(!ipEqual(parseIP("::a00:1"), parseIP("10.0.0.1")), "same value, different family");
  assert.equal(netSize(parseNet("fd00::/64")), 1n << 64n);
  assert.equal(formatIP(lastIP(parseNet("fd00::/120"))), "fd00::ff");
  assert.equal(bitsOf(4), 32);
  assert.equal(bitsOf(6), 128);
});

Deno.test("compareIP() sorts IPv4 before IPv6 and numerically within a family", () => {
  const sorted = ["fd00::1", "10.0.0.10", "::1", "10.0.0.9", "9.255.255.255"].map(parseIP).sort(compareIP)
    .map(formatIP);
  assert.deepEqual(sorted, ["9.255.255.255", "10.0.0.9", "10.0.0.10", "::1", "fd00::1"]);
  assert.equal(compareIP(parseIP("10.0.0.1"), parseIP("10.0.0.1")), 0);
});

Deno.test("IPv4 parsing accepts exactly four parts of 0-255 without leading zeros (checked against a plain reference)", () => {
  const reference = (s: string) => {
    const parts = s.split(".");
    if (parts.length !== 4) return undefined;
    let v = 0;
    for (const p of parts) {
      if (!/^\d{1,3}$/.test(p) || (p.length > 1 && p[0] === "0") || Number(p) > 255) return undefined;
      v = v * 256 + Number(p);
    }
    return BigInt(v);
  };
  const pieces = [
    "0",
    "00",
    "1",
    "01",
    "9",
    "10",
    "99",
    "100",
    "255",
    "256",
    "999",
    "1000",
    "",
    "a",
    "-1",
    " 1",
  ];
  let seed = 7;
  const pick = () => pieces[(seed = (seed * 1103515245 + 12345) & 0x7fffffff) % pieces.length]!;
  for (let i = 0; i < 5000; i++) {
    const n = 3 + (i % 3);
    const s = Array.from({ length: n }, pick).join(".");
    const want = reference(s.trim());
    const got = tryParseIP(s);
    assert.equal(got?.value, want, JSON.stringify(s));
    if (want !== undefined) assert.equal(formatIP(got!), s.trim().split(".").map(Number).join("."));
  }
});
