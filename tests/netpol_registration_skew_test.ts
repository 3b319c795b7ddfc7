/**
 * CNI ADD's pod registration (src/cni/pod_registration.ts) against agents that cannot take it, as a rolling
 * upgrade or a stopped agent leaves a node: no agent listening, a protocol-0 agent (weft before versioning,
 * frozen in tests/testdata/cni_protocol_v0: it closes a request it cannot parse), a version-1 agent without
 * the `register-pod` kind ("unsupported"). In each case ADD goes on — the agent's table holds unknown pods of
 * its subnet closed while any policy exists — and says why in its outcome.
 */
import assert from "node:assert/strict";
import type { CniConfig } from "../src/cni/config.ts";
import type { CniEnv } from "../src/cni/env.ts";
import { registerPod } from "../src/cni/pod_registration.ts";
import { cniLab, startCniServer, stopCniServer } from "./helpers/cni.ts";
import { requireRoot } from "./helpers/topology.ts";

const V0_SERVER = new URL("./testdata/cni_protocol_v0/agent_server.ts", import.meta.url).pathname;

const env: CniEnv = {
  command: "ADD",
  containerId: "c1",
  netns: "/run/netns/x",
  ifname: "eth0",
  args: { K8S_POD_NAMESPACE: "x", K8S_POD_NAME: "a" },
  path: "",
};

Deno.test({
  name: "ADD's registration goes on past agents that cannot take it: none, protocol 0, no register-pod kind",
  ignore: requireRoot(),
  async fn() {
    await using lab = await cniLab();
    const sock = `${lab.dir}/agent.sock`;
    const cfg = { subnetFile: `${lab.dir}/subnet.env`, agentSocket: sock } as CniConfig;
    assert.equal(await registerPod(cfg, env, ["10.244.7.9"], false), "no agent");
    assert.equal(await registerPod({ ...cfg, agentSocket: "" }, env, ["10.244.7.9"], false), "no agent");
    for (const server of [V0_SERVER, undefined]) {
      const child = await startCniServer(lab.node, sock, server ? { server } : {});
      try {
        const t0 = performance.now();
        assert.equal(await registerPod(cfg, env, ["10.244.7.9"], false), "old agent", server ?? "v1");
        assert.ok(performance.now() - t0 < 5000, "answered, not timed out");
      } finally {
        await stopCniServer(child);
      }
    }
  },
});
