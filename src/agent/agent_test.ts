import assert from "node:assert/strict";
import { type AgentOptions, agentParts } from "./agent.ts";
import { AgentStatus } from "./status.ts";

const OPTS: AgentOptions = {
  iface: ["eth1"],
  ifaceRegex: [],
  publicIP: "192.168.1.5",
  ipMasq: true,
  ipMasqFullyRandom: false,
  iptablesResyncSeconds: 7,
  iptablesForwardRules: true,
  ipBlackholeRoute: true,
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
  assert.deepEqual(p.node, {
    subnetFile: "/run/flannel/subnet.env",
    ipMasq: true,
    ipMasqFullyRandom: false,
    iptablesForwardRules: true,
    iptablesResyncSeconds: 7,
    ipBlackholeRoute: true,
  });
  assert.deepEqual(p.keep, { ttlSeconds: 86400, renewMarginSeconds: 3600 });
  assert.deepEqual(p.health, { hostname: "127.0.0.1", port: 8471 });
  assert.equal(p.resyncSeconds, 10);
  assert.equal(p.probeMs, 5000, "store probes at most every 5 s");
  assert.equal(agentParts({ ...OPTS, resyncSeconds: 0.5 }).probeMs, 500);
  assert.equal(p.policy, undefined);
});

Deno.test("AgentStatus: the store is unreachable since start until it answers, then since its last failure", () => {
  const status = new AgentStatus("kube");
  const t0 = status.storeDownSince!;
  assert.ok(t0 instanceof Date, "not answered yet");
  status.storeUp = true;
  assert.equal(status.storeDownSince, undefined);
  status.storeUp = false;
  const t1 = status.storeDownSince!;
  assert.ok(t1.getTime() >= t0.getTime());
  status.storeUp = false; // a second failure keeps the first one's time
  assert.equal(status.storeDownSince, t1);
});

Deno.test("the metrics say whether subnet.env is there", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const status = new AgentStatus();
    status.subnetFile = `${dir}/subnet.env`;
    assert.equal(status.view().subnetEnvPresent!(), false);
    Deno.writeTextFileSync(status.subnetFile, "FLANNEL_NETWORK=10.244.0.0/16\n");
    assert.equal(status.view().subnetEnvPresent!(), true);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
