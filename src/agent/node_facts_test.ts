import assert from "node:assert/strict";
import { formatIP, formatNet } from "../net/ip.ts";
import { localAddresses } from "./node_facts.ts";

Deno.test("localAddresses() keeps every address with its connected network, not IPv6 link-local ones", () => {
  const got = localAddresses(
    [
      { index: 1, family: 4, cidr: "127.0.0.1/8", scope: 254 },
      { index: 2, family: 4, cidr: "192.168.77.11/24", scope: 0 },
      { index: 2, family: 6, cidr: "fd00:77::11/64", scope: 0 },
      { index: 2, family: 6, cidr: "fe80::1/64", scope: 253 },
      { index: 3, family: 4, cidr: "10.244.7.0/32", scope: 0 },
      { index: 9, family: 4, cidr: "not an address", scope: 0 },
    ],
    new Map([[1, "lo"], [2, "eth0"], [3, "flannel.1"]]),
  );
  assert.deepEqual(got.map((a) => `${formatIP(a.ip)} ${formatNet(a.net)} ${a.dev}`), [
    "127.0.0.1 127.0.0.0/8 lo",
    "192.168.77.11 192.168.77.0/24 eth0",
    "fd00:77::11 fd00:77::/64 eth0",
    "10.244.7.0 10.244.7.0/32 flannel.1",
  ]);
  assert.deepEqual(
    got.map((a) => a.overlay ?? false),
    [false, false, false, true],
    "flannel.1 is an overlay",
  );
});
