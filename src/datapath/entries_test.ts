import assert from "node:assert/strict";
import type { FdbInfo, NeighInfo, RouteInfo } from "../../ffi/types.ts";
import { type Entry, KernelIndex } from "./entries.ts";

const route = (dst: string, over: Partial<RouteInfo> = {}): RouteInfo => ({
  dst,
  family: 4,
  gateway: dst.split("/")[0]!,
  index: 5,
  onlink: true,
  type: "unicast",
  protocol: 87,
  table: 254,
  metric: 0,
  scope: 0,
  ...over,
});
const neigh = (index: number, ip: string, mac: string, state = 0x80): NeighInfo => ({
  index,
  family: 4,
  ip,
  mac,
  state,
});
const fdb = (index: number, mac: string, dst?: string): FdbInfo => ({
  index,
  mac,
  ...(dst ? { dst } : {}),
  state: 0x80,
  flags: 2,
});

const MAC_A = "aa:00:00:00:00:01", MAC_B = "aa:00:00:00:00:02";

function kernel(): KernelIndex {
  return new KernelIndex({
    routes: [route("10.244.1.0/24"), route("10.244.2.0/24"), route("10.244.3.0/24", { metric: 100 })],
    neighs: [
      neigh(5, "10.244.1.0", MAC_A),
      neigh(5, "10.244.2.0", MAC_B),
      neigh(6, "10.244.1.0", MAC_A), // the same address on another device: another identity
      neigh(5, "10.244.9.0", MAC_A, 0x02), // learned (reachable), not permanent
    ],
    fdbs: [
      fdb(5, MAC_A, "192.168.1.1"),
      fdb(5, MAC_A, "192.168.1.9"), // one MAC, two remotes
      fdb(5, MAC_B, "192.168.1.2"),
      fdb(5, "00:00:00:00:00:00"), // no remote: not indexed (never weft's to prune)
    ],
    driverEntries: new Map([["wg keyA", "endpoint 1"], ["wg keyB", "endpoint 2"]]),
  });
}

Deno.test("KernelIndex.has compares what a replace would change, by identity", () => {
  const idx = kernel();
  const yes: Entry[] = [
    { kind: "route", spec: { dst: "10.244.1.0/24", gateway: "10.244.1.0", dev: 5, onlink: true } },
    {
      kind: "route",
      spec: { dst: "10.244.3.0/24", gateway: "10.244.3.0", dev: 5, onlink: true, metric: 100 },
    },
    { kind: "neigh", spec: { dev: 5, ip: "10.244.1.0", mac: MAC_A } },
    { kind: "neigh", spec: { dev: 6, ip: "10.244.1.0", mac: MAC_A } },
    { kind: "fdb", spec: { dev: 5, mac: MAC_A, dst: "192.168.1.9" } },
    { kind: "fdb", spec: { dev: 5, mac: MAC_B, dst: "192.168.1.2" } },
    { kind: "driver", driver: "wg", key: "keyA", value: "endpoint 1" },
  ];
  for (const e of yes) assert.equal(idx.has(e), true, JSON.stringify(e));
  const no: Entry[] = [
    { kind: "route", spec: { dst: "10.244.4.0/24", gateway: "10.244.4.0", dev: 5, onlink: true } }, // absent
    { kind: "route", spec: { dst: "10.244.2.0/24", gateway: "10.244.2.9", dev: 5, onlink: true } }, // gateway
    { kind: "route", spec: { dst: "10.244.3.0/24", gateway: "10.244.3.0", dev: 5, onlink: true, metric: 5 } },
    { kind: "neigh", spec: { dev: 5, ip: "10.244.2.0", mac: MAC_A } }, // another MAC
    { kind: "neigh", spec: { dev: 5, ip: "10.244.9.0", mac: MAC_A } }, // not permanent
    { kind: "neigh", spec: { dev: 7, ip: "10.244.1.0", mac: MAC_A } }, // another device
    { kind: "fdb", spec: { dev: 5, mac: MAC_B, dst: "192.168.1.1" } }, // another remote
    { kind: "driver", driver: "wg", key: "keyB", value: "endpoint 3" }, // another value
  ];
  for (const e of no) assert.equal(idx.has(e), false, JSON.stringify(e));
});

Deno.test("KernelIndex leaves unclaimed exactly the entries no wanted entry named, altered or not", () => {
  const idx = kernel();
  // Claimed though altered (a replace fixes them, a prune must not remove them first).
  idx.has({ kind: "route", spec: { dst: "10.244.2.0/24", gateway: "10.244.2.9", dev: 5, onlink: true } });
  idx.has({ kind: "neigh", spec: { dev: 5, ip: "10.244.2.0", mac: MAC_A } });
  idx.has({ kind: "driver", driver: "wg", key: "keyB", value: "endpoint 3" });
  // Claimed and equal.
  idx.has({ kind: "fdb", spec: { dev: 5, mac: MAC_A, dst: "192.168.1.1" } });
  // Claims nothing: no such entry in the kernel.
  idx.has({ kind: "route", spec: { dst: "10.244.7.0/24", gateway: "10.244.7.0", dev: 5, onlink: true } });

  assert.deepEqual([...idx.unclaimedRoutes()].map((r) => r.dst), ["10.244.1.0/24", "10.244.3.0/24"]);
  assert.deepEqual(
    [...idx.unclaimedNeighs()].map((n) => `${n.index} ${n.ip}`),
    ["5 10.244.1.0", "5 10.244.9.0", "6 10.244.1.0"],
  );
  assert.deepEqual(
    [...idx.unclaimedFdbs()].map((f) => `${f.mac} ${f.dst}`),
    [`${MAC_A} 192.168.1.9`, `${MAC_B} 192.168.1.2`],
  );
  assert.deepEqual([...idx.unclaimedDriverEntries()], [["wg keyA", "endpoint 1"]]);
});
