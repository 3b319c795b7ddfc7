import assert from "node:assert/strict";
import { parseIP, parseNet } from "../net/ip.ts";
import { formatRanges, netRange, normalize, rangesContain, subtract } from "./ip_ranges.ts";

const v4 = (s: string) => parseIP(s).value;
const net = (s: string) => netRange(parseNet(s));

Deno.test("normalize() sorts and merges overlapping and adjacent ranges", () => {
  const r = normalize([
    { lo: v4("10.0.0.5"), hi: v4("10.0.0.5") },
    { lo: v4("10.0.0.1"), hi: v4("10.0.0.3") },
    { lo: v4("10.0.0.4"), hi: v4("10.0.0.4") },
    { lo: v4("10.0.0.2"), hi: v4("10.0.0.2") },
    { lo: v4("10.0.1.0"), hi: v4("10.0.1.0") },
  ]);
  assert.deepEqual(formatRanges(4, r), ["10.0.0.1-10.0.0.5", "10.0.1.0"]);
});

Deno.test("subtract() punches except holes, at the edges and in the middle", () => {
  const r = subtract([net("10.0.0.0/8")], normalize([net("10.0.0.0/16"), net("10.128.0.0/9")]));
  assert.deepEqual(formatRanges(4, r), ["10.1.0.0-10.127.255.255"]);
  const mid = subtract([net("192.168.0.0/24")], [net("192.168.0.7/32")]);
  assert.deepEqual(formatRanges(4, mid), ["192.168.0.0-192.168.0.6", "192.168.0.8-192.168.0.255"]);
  assert.deepEqual(subtract([net("10.0.0.0/24")], [net("10.0.0.0/16")]), []);
});

Deno.test("formatRanges() prints exact CIDRs as CIDRs, for IPv6 too", () => {
  assert.deepEqual(formatRanges(4, [net("10.244.0.0/16")]), ["10.244.0.0/16"]);
  assert.deepEqual(formatRanges(4, [net("0.0.0.0/0")]), ["0.0.0.0/0"]);
  assert.deepEqual(formatRanges(6, [netRange(parseNet("fd00:10::/64"))]), ["fd00:10::/64"]);
  const hole = subtract([netRange(parseNet("fd00::/126"))], [netRange(parseNet("fd00::1/128"))]);
  assert.deepEqual(formatRanges(6, hole), ["fd00::", "fd00::2/127"]);
  const odd = subtract([netRange(parseNet("fd00::/126"))], [netRange(parseNet("fd00::/128"))]);
  assert.deepEqual(formatRanges(6, odd), ["fd00::1-fd00::3"]);
});

Deno.test("rangesContain() answers membership", () => {
  const r = subtract([net("10.0.0.0/24")], [net("10.0.0.7/32")]);
  assert.equal(rangesContain(r, v4("10.0.0.6")), true);
  assert.equal(rangesContain(r, v4("10.0.0.7")), false);
  assert.equal(rangesContain(r, v4("10.0.1.0")), false);
});
