import assert from "node:assert/strict";
import { type AgentOptions, agentParts } from "./agent.ts";

const OPTS: AgentOptions = {
  iface: ["eth1"],
  ifaceRegex: [],
  publicIP: "192.168.1.5",
  ipMasq: true,
  subnetFile: "/run/flannel/subnet.env",
  renewMarginSeconds: 3600,
  leaseTtlSeconds: 86400,
  healthz: { hostname: "127.0.0.1", port: 8471 },
  resyncSeconds: 10,
  signal: new AbortController().signal,
};

Deno.test("agentParts() gives each part its own options and nothing else", () => {
  const p = agentParts(OPTS);
  assert.deepEqual(p.start, {
    iface: ["eth1"],
    ifaceRegex: [],
    publicIP: "192.168.1.5",
    subnetFile: "/run/flannel/subnet.env",
    leaseTtlSeconds: 86400,
  });
  assert.deepEqual(p.node, { subnetFile: "/run/flannel/subnet.env", ipMasq: true });
  assert.deepEqual(p.keep, { ttlSeconds: 86400, renewMarginSeconds: 3600 });
  assert.deepEqual(p.health, { hostname: "127.0.0.1", port: 8471 });
  assert.equal(p.resyncSeconds, 10);
  assert.equal(p.probeMs, 5000, "store probes at most every 5 s");
  assert.equal(agentParts({ ...OPTS, resyncSeconds: 0.5 }).probeMs, 500);
  assert.equal(p.policy, undefined);
});
