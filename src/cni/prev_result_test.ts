import assert from "node:assert/strict";
import { parsePrevResult } from "./prev_result.ts";
import { CniError } from "./types.ts";

Deno.test("parsePrevResult() keeps a well-formed result of any version and drops legacy fields", () => {
  const r = parsePrevResult({
    cniVersion: "0.4.0",
    interfaces: [{ name: "eth0", mac: "02:00:00:00:00:01", sandbox: "/run/netns/p" }],
    ips: [{ version: "4", address: "10.244.3.5/24", gateway: "10.244.3.1", interface: 0 }],
    routes: [{ dst: "0.0.0.0/0", gw: "10.244.3.1" }, { dst: "10.244.0.0/16" }],
    dns: { nameservers: ["10.96.0.10"] },
  });
  assert.deepEqual(r, {
    interfaces: [{ name: "eth0", mac: "02:00:00:00:00:01", sandbox: "/run/netns/p" }],
    ips: [{ address: "10.244.3.5/24", gateway: "10.244.3.1", interface: 0 }],
    routes: [{ dst: "0.0.0.0/0", gw: "10.244.3.1" }, { dst: "10.244.0.0/16" }],
    dns: { nameservers: ["10.96.0.10"] },
  });
  assert.deepEqual(
    parsePrevResult({}),
    { interfaces: [], ips: [], routes: [], dns: {} },
    "every list is optional",
  );
});

Deno.test("parsePrevResult() refuses each malformed shape with code 7 naming the field", () => {
  const bad: [unknown, RegExp][] = [
    [null, /prevResult must be an object, not null/],
    [{ ips: [null] }, /prevResult\.ips\[0\] must be an object, not null/],
    [{ ips: {} }, /prevResult\.ips must be a list/],
    [{ ips: [{}] }, /prevResult\.ips\[0\]\.address must be a string, not undefined/],
    [{ ips: [{ address: "10.1.1.1" }] }, /with a prefix/],
    [{ ips: [{ address: "10.1.1.1/33" }] }, /with a prefix/],
    [{ ips: [{ address: "10.1.1.1/24", gateway: "nope" }] }, /gateway must be an IP address/],
    [{ ips: [{ address: "10.1.1.1/24", interface: -1 }] }, /interface must be an index/],
    [{ ips: [{ address: "10.1.1.1/24", interface: 1.5 }] }, /interface must be an index/],
    [{ interfaces: [{ mac: "x" }] }, /interfaces\[0\]\.name must be a string/],
    [{ interfaces: [{ name: "eth0", mtu: "big" }] }, /interfaces\[0\]\.mtu must be an integer/],
    [{ routes: [{ dst: "10.0.0.0/8", gw: 7 }] }, /routes\[0\]\.gw must be a string/],
    [{ dns: [] }, /prevResult\.dns must be an object/],
  ];
  for (const [v, msg] of bad) {
    assert.throws(
      () => parsePrevResult(v),
      (e) => e instanceof CniError && e.code === 7 && msg.test(e.message),
      JSON.stringify(v),
    );
  }
});
