/**
 * `Type=notify` (deploy/weft.service) as systemd runs it: a unix datagram socket named in `NOTIFY_SOCKET`
 * (an abstract name, as systemd's own `@/org/freedesktop/systemd1/notify` is) receives `READY=1` only once
 * the agent wrote subnet.env and programmed the datapath — not while it waits for its network config — and
 * `STOPPING=1` on SIGTERM.
 */
import assert from "node:assert/strict";
import { withNetns } from "../ffi/mod.ts";
import { UnixDatagramListener } from "../ffi/unix_datagram.ts";
import { agentHttp, startAgent, waitFor } from "./helpers/agent.ts";
import { haveEtcd, putNetworkConfig, startEtcd } from "./helpers/etcd.ts";
import { createTopology, requireRoot, skipUnless } from "./helpers/topology.ts";

Deno.test({
  name: "the agent notifies systemd: READY=1 only after subnet.env exists, STOPPING=1 on SIGTERM",
  ignore: requireRoot() || skipUnless(haveEtcd(), "etcd is not installed"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using topo = await createTopology({ nodes: 1 });
    const dir = await Deno.makeTempDir({ prefix: "weft-notify-" });
    await using etcd = await startEtcd({ netns: topo.underlay, host: topo.underlayIP });
    const node = topo.nodes[0]!;
    // Abstract names live in a network namespace: listen in the node's, where the agent runs.
    const name = `@weft-test/notify-${crypto.randomUUID()}`;
    using sock = withNetns(node.netns, () => UnixDatagramListener.listen(name));
    const messages: { text: string; subnetEnv: boolean }[] = [];
    const subnetEnvExists = () => {
      try {
        return Deno.statSync(agent.subnetFile).isFile;
      } catch {
        return false;
      }
    };
    const drain = () => {
      for (let d = sock.tryReceive(); d; d = sock.tryReceive()) {
        // What systemd would see at that moment: is subnet.env there?
        messages.push({ text: new TextDecoder().decode(d), subnetEnv: subnetEnvExists() });
      }
    };
    const agent = startAgent(node, { etcd: etcd.endpoint, dir, env: { NOTIFY_SOCKET: name } });
    try {
      // No network config yet: the agent runs and answers /healthz, but holds no lease: no READY=1.
      await waitFor(
        "the agent's health endpoint",
        20_000,
        () => agentHttp(agent, "/healthz").catch(() => undefined),
      );
      const until = Date.now() + 2000;
      while (Date.now() < until) {
        drain();
        await new Promise((r) => setTimeout(r, 50));
      }
      assert.equal(
        messages.length,
        0,
        `no notification while the agent has no lease: ${JSON.stringify(messages)}`,
      );
      assert.equal(subnetEnvExists(), false);

      await putNetworkConfig(etcd.endpoint, { Network: "10.244.0.0/16", Backend: { Type: "vxlan" } }, {
        netns: topo.underlay,
      });
      await waitFor("READY=1", 30_000, () => {
        drain();
        return messages.length > 0 || undefined;
      }, 20);
      const ready = messages[0]!;
      assert.match(
        ready.text,
        /^READY=1\nSTATUS=ready: lease 10\.244\.\d+\.0\/24 \(vxlan\), 0 peers programmed$/,
      );
      assert.equal(ready.subnetEnv, true, "subnet.env was there when READY=1 arrived");
      assert.equal((await agentHttp(agent, "/readyz"))[0], 200);

      await agent.stop("SIGTERM");
      drain();
      assert.deepEqual(messages.slice(1).map((m) => m.text.split("\n")[0]), ["STOPPING=1"]);
    } finally {
      await agent.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
