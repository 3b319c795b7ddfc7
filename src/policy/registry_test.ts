import assert from "node:assert/strict";
import { parseCIDR } from "../net/ip.ts";
import { PodRegistry, REGISTRATION_TTL_MS } from "./registry.ts";
import type { Pod } from "./types.ts";

const NETS = [parseCIDR("10.244.1.0/24").net, parseCIDR("fd00:1::/64").net];
const podWith = (ips: string[]): Pod => ({
  metadata: { namespace: "x", name: "a" },
  status: { podIP: ips[0], podIPs: ips.map((ip) => ({ ip })) },
});

Deno.test("PodRegistry checks addresses, keeps the newest registration per container, pod and address", () => {
  const r = new PodRegistry();
  assert.throws(() => r.add({ containerId: "c", ips: [] }, NETS), /needs containerId and ips/);
  assert.throws(() => r.add({ containerId: "c", ips: ["nope"] }, NETS), /not an address/);
  assert.throws(() => r.add({ containerId: "c", ips: ["10.9.0.1"] }, NETS), /not in this node's pod subnets/);
  r.add({ containerId: "c1", namespace: "x", name: "a", ips: ["10.244.1.5/24", "fd00:1:0:0::5"] }, NETS, 1);
  assert.deepEqual(r.values()[0]!.ips, ["10.244.1.5", "fd00:1::5"], "canonical, prefix dropped");
  r.add({ containerId: "c2", namespace: "x", name: "a", ips: ["10.244.1.6"] }, NETS, 2); // same pod, new sandbox
  r.add({ containerId: "c3", namespace: "y", name: "b", ips: ["10.244.1.6"] }, NETS, 3); // same address
  assert.deepEqual(r.values().map((e) => e.name), ["b"]);
  assert.equal(r.remove("c3"), true);
  assert.equal(r.size, 0);
});

Deno.test("PodRegistry.prune() ends registrations the API caught up with, deleted pods' and old ones", () => {
  const r = new PodRegistry();
  r.add({ containerId: "c1", namespace: "x", name: "a", ips: ["10.244.1.5"] }, NETS, 0);
  r.prune(new Map(), 1);
  assert.equal(r.size, 1, "not seen yet: kept");
  r.prune(new Map([["x/a", podWith([])]]), 2);
  assert.equal(r.size, 1, "seen, no address in its status yet: kept");
  r.prune(new Map(), 3);
  assert.equal(r.size, 0, "seen, then gone: deleted");
  r.add({ containerId: "c2", namespace: "x", name: "a", ips: ["10.244.1.5"] }, NETS, 10);
  r.prune(new Map([["x/a", podWith(["10.244.1.5"])]]), 11);
  assert.equal(r.size, 0, "the status shows it: the API knows");
  r.add({ containerId: "c3", ips: ["10.244.1.9"] }, NETS, 20);
  r.prune(new Map(), 20 + REGISTRATION_TTL_MS + 1);
  assert.equal(r.size, 0, "expired");
});
