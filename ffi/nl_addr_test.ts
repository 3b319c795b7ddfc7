import assert from "node:assert/strict";
import { ipAddr, macAddr, macBytes, netAddr, readIP, readMac, readNet } from "./nl_addr.ts";
import { libnlAvailable } from "./loader.ts";
import { skipUnless } from "../tests/helpers/skip.ts";

Deno.test("macBytes() parses six hex pairs in either case and rejects everything else", () => {
  assert.deepEqual([...macBytes("0a:58:0A:f4:01:ff")], [0x0a, 0x58, 0x0a, 0xf4, 0x01, 0xff]);
  assert.deepEqual([...macBytes("00:00:00:00:00:00")], [0, 0, 0, 0, 0, 0]);
  for (
    const bad of [
      "",
      "0a:58:0a:f4:01",
      "0a:58:0a:f4:01:ff:00",
      "0a-58-0a-f4-01-ff",
      "0g:58:0a:f4:01:ff",
      "a:58:0a:f4:01:ff",
      "0a:58:0a:f4:01:ff ",
    ]
  ) {
    assert.throws(() => macBytes(bad), /invalid MAC address/, bad);
  }
});

Deno.test({
  name: "IPs, networks and MACs survive the round trip through libnl's nl_addr",
  ignore: skipUnless(libnlAvailable(), "libnl-3 is not installed (apt: libnl-3-200 libnl-route-3-200)"),
  fn() {
    for (const ip of ["10.244.3.0", "0.0.0.0", "255.255.255.255", "fd00::1", "fe80::9cf6:79ff:fe1a:b08e"]) {
      using a = ipAddr(ip);
      assert.equal(readIP(a.ptr), ip);
    }
    const nets: [string, string][] = [
      ["10.244.3.7/24", "10.244.3.0/24"],
      ["fd00:1::5/64", "fd00:1::/64"],
      ["default", "0.0.0.0/0"],
    ];
    for (const [given, want] of nets) {
      using n = netAddr(given);
      assert.equal(readNet(n.ptr, given.includes(":") ? 6 : 4), want, given);
    }
    using m = macAddr("0A:58:0a:f4:01:FF");
    assert.equal(readMac(m.ptr), "0a:58:0a:f4:01:ff");
    assert.equal(readIP(null), undefined);
    assert.equal(readMac(null), "");
  },
});

Deno.test("addresses read back format exactly as weft writes them, every byte value included", () => {
  for (let v = 0; v < 256; v++) {
    const ip = `${v}.${255 - v}.${v >> 1}.${(v * 7) & 255}`;
    using a = ipAddr(ip);
    assert.equal(readIP(a.ptr), ip);
    using n = netAddr(`${v}.0.0.0/${v % 33}`);
    const p = v % 33, first = p >= 8 ? v : v & (0xff << (8 - p)) & 0xff; // host bits cleared
    assert.equal(readNet(n.ptr, 4), `${first}.0.0.0/${p}`);
    const mac = [v, 255 - v, 0, 15, 16, v ^ 0x5a].map((x) => x.toString(16).padStart(2, "0")).join(":");
    using m = macAddr(mac);
    assert.equal(readMac(m.ptr), mac);
  }
});
