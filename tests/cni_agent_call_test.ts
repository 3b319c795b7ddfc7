/**
 * The thin CNI call into the agent (src/cni/agent_*.ts): with the agent's CNI server listening beside
 * subnet.env, the plugin process hands the call over and prints the agent's answer; whenever the agent
 * cannot serve it correctly — another network namespace, other files behind the call's paths, a dead
 * socket — the plugin runs the call itself; a server that hangs up mid-call gets code 11 and no second,
 * local attempt; and bad clients cannot stop the server.
 */
import assert from "node:assert/strict";
import { Netlink, netnsCreate, netnsDelete } from "../ffi/mod.ts";
import { addIP, formatIP } from "../src/net/ip.ts";
import { startAgent, waitReady, waitSubnetEnv } from "./helpers/agent.ts";
import { cni, cniLab, flannelConf, loggedPid, nsExec, startCniServer, stopCniServer } from "./helpers/cni.ts";
import { haveEtcd, putNetworkConfig, startEtcd } from "./helpers/etcd.ts";
import { uniqueNetnsName } from "./helpers/names.ts";
import { createTopology, ROOT } from "./helpers/topology.ts";

const startServer = (ns: string, sock: string, wrap: string[] = []) => startCniServer(ns, sock, { wrap });
const stop = stopCniServer;

const base = (p: string) => p.slice(p.lastIndexOf("/") + 1);

Deno.test({
  name: "with the agent's CNI server up, ADD, CHECK and DEL are served by it and the pod works",
  ignore: !ROOT,
  async fn() {
    await using lab = await cniLab({ net: "10.244.36" });
    const server = await startServer(lab.node, `${lab.dir}/weft-cni.sock`);
    try {
      assert.equal((Deno.statSync(`${lab.dir}/weft-cni.sock`).mode ?? 0) & 0o777, 0o600, "root only");
      const pod = lab.pod();
      const env = { containerId: "thin", netns: pod, ifname: "eth0" };
      const add = await cni(lab.node, { command: "ADD", ...env }, lab.conf("1.1.0"));
      assert.equal(add.code, 0, add.stdout + add.stderr);
      assert.equal(loggedPid(add), server.pid, "the agent ran the ADD");
      const ip = (add.out!.ips as { address: string }[])[0]!.address;
      assert.deepEqual(lab.allocated(), [ip.split("/")[0]]);
      assert.equal((await nsExec(base(pod), ["ping", "-c", "1", "-W", "2", "10.244.36.1"])).code, 0);
      const check = await cni(lab.node, { command: "CHECK", ...env }, lab.conf("1.1.0"));
      assert.equal(check.code, 0, check.stdout + check.stderr);
      assert.equal(loggedPid(check), server.pid);
      const bad = await cni(
        lab.node,
        { command: "CHECK", ...env },
        lab.conf("1.1.0", { prevResult: { ips: [null] } }),
      );
      assert.equal(bad.out?.code, 7, "errors come back with their code");
      const del = await cni(lab.node, { command: "DEL", ...env }, lab.conf("1.1.0"));
      assert.equal(del.code, 0, del.stdout + del.stderr);
      assert.equal(loggedPid(del), server.pid);
      assert.deepEqual(lab.allocated(), []);
    } finally {
      await stop(server);
    }
    assert.throws(
      () => Deno.statSync(`${lab.dir}/weft-cni.sock`),
      Deno.errors.NotFound,
      "socket removed on stop",
    );
  },
});

Deno.test({
  name:
    "the plugin runs the call itself when the agent is in another network namespace, sees other files, or is gone",
  ignore: !ROOT,
  async fn(t) {
    await using lab = await cniLab({ net: "10.244.37" });
    const sock = `${lab.dir}/weft-cni.sock`;
    const addOnce = async (id: string) => {
      const add = await cni(
        lab.node,
        { command: "ADD", containerId: id, netns: lab.pod(), ifname: "eth0" },
        lab.conf("1.1.0"),
      );
      assert.equal(add.code, 0, add.stdout + add.stderr);
      return add;
    };
    await t.step("an agent in another network namespace", async () => {
      const other = uniqueNetnsName("cn");
      netnsCreate(other);
      const server = await startServer(other, sock);
      try {
        const add = await addOnce("netns-elsewhere");
        assert.notEqual(loggedPid(add), server.pid, "the plugin ran it");
        using nl = Netlink.open({ netns: other });
        assert.equal(nl.linkGet("cni0"), undefined, "nothing was made in the agent's namespace");
      } finally {
        await stop(server);
        netnsDelete(other);
      }
    });
    await t.step(
      "an agent that sees another IPAM store (a tmpfs over it in its own mount namespace)",
      async () => {
        Deno.mkdirSync(`${lab.dir}/networks`, { recursive: true });
        const server = await startServer(lab.node, sock, [
          "unshare",
          "-m",
          "--propagation",
          "private",
          "sh",
          "-c",
          `mount -t tmpfs tmpfs ${lab.dir}/networks && exec "$0" "$@"`,
        ]);
        try {
          const before = lab.allocated().length;
          const add = await addOnce("other-files");
          assert.notEqual(loggedPid(add), server.pid, "the plugin ran it");
          assert.equal(lab.allocated().length, before + 1, "allocated in the store the node really uses");
        } finally {
          await stop(server);
        }
      },
    );
    await t.step("a stale socket of a killed agent", async () => {
      const server = await startServer(lab.node, sock);
      server.kill("SIGKILL");
      await server.status;
      await server.stderr.cancel().catch(() => {});
      assert.ok(Deno.statSync(sock), "the socket file is still there");
      const add = await addOnce("stale");
      assert.notEqual(loggedPid(add), server.pid);
      Deno.removeSync(sock);
    });
  },
});

Deno.test({
  name: "an agent that hangs up mid-call gets code 11 and the plugin does not run the call a second time",
  ignore: !ROOT,
  async fn() {
    await using lab = await cniLab({ net: "10.244.38" });
    const listener = Deno.listen({ transport: "unix", path: `${lab.dir}/weft-cni.sock` });
    const hangUp = (async () => {
      const conn = await listener.accept();
      await conn.read(new Uint8Array(1 << 16));
      conn.close();
    })();
    try {
      const pod = lab.pod();
      const add = await cni(
        lab.node,
        { command: "ADD", containerId: "hung", netns: pod, ifname: "eth0" },
        lab.conf("1.0.0"),
      );
      assert.equal(add.out?.code, 11, add.stdout);
      assert.match(String(add.out?.msg), /closed the call without an answer/);
      assert.equal(add.out?.cniVersion, "1.0.0");
      assert.deepEqual(lab.allocated(), [], "no second, local ADD");
      using nl = Netlink.open({ netns: base(pod) });
      assert.equal(nl.linkGet("eth0"), undefined);
    } finally {
      await hangUp;
      listener.close();
    }
  },
});

Deno.test({
  name: "garbage, oversized and silent clients do not stop the agent's CNI server",
  ignore: !ROOT,
  async fn() {
    await using lab = await cniLab({ net: "10.244.39" });
    const sock = `${lab.dir}/weft-cni.sock`;
    const server = await startServer(lab.node, sock);
    const silent: Deno.Conn[] = [];
    try {
      for (const payload of ["not json\n", "{}\n", '{"env":null}\n', "x".repeat(2 << 20)]) {
        const c = await Deno.connect({ transport: "unix", path: sock });
        const data = new TextEncoder().encode(payload);
        try {
          for (let off = 0; off < data.length;) off += await c.write(data.subarray(off));
        } catch { /* the server hung up on an oversized request */ }
        await c.read(new Uint8Array(16)).catch(() => null);
        c.close();
      }
      for (let i = 0; i < 5; i++) silent.push(await Deno.connect({ transport: "unix", path: sock }));
      const add = await cni(lab.node, {
        command: "ADD",
        containerId: "after",
        netns: lab.pod(),
        ifname: "eth0",
      }, lab.conf("1.1.0"));
      assert.equal(add.code, 0, add.stdout + add.stderr);
      assert.equal(loggedPid(add), server.pid, "still serving, with silent clients connected");
    } finally {
      for (const c of silent) c.close();
      await stop(server);
    }
  },
});

Deno.test({
  name: "a running weft agent serves its node's CNI calls, and the plugin runs them itself once it stops",
  ignore: !ROOT || !haveEtcd(),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using topo = await createTopology({ nodes: 1 });
    const dir = await Deno.makeTempDir({ prefix: "weft-cni-agent-" });
    await using etcd = await startEtcd({ netns: topo.underlay, host: topo.underlayIP });
    await putNetworkConfig(etcd.endpoint, { Network: "10.244.0.0/16", Backend: { Type: "vxlan" } }, {
      netns: topo.underlay,
    });
    const node = topo.nodes[0]!;
    const agent = startAgent(node, { etcd: etcd.endpoint, dir });
    const pods: string[] = [];
    try {
      const env = await waitSubnetEnv(agent);
      await waitReady(agent);
      const conf = flannelConf("1.1.0", {
        subnetFile: agent.subnetFile,
        dataDir: `${dir}/flannel`,
        ipamDir: `${dir}/networks`,
      });
      const addPod = async (id: string) => {
        const ns = uniqueNetnsName("pod");
        netnsCreate(ns);
        pods.push(ns);
        const r = await cni(node.netns, {
          command: "ADD",
          containerId: id,
          netns: `/run/netns/${ns}`,
          ifname: "eth0",
        }, conf);
        assert.equal(r.code, 0, r.stdout + r.stderr);
        return { r, ns };
      };
      const served = await addPod("via-agent");
      assert.equal(loggedPid(served.r), agent.pid, "the agent ran the ADD");
      const gw = formatIP(addIP(env.subnet!.ip, 1));
      assert.equal(
        (await nsExec(served.ns, ["ping", "-c", "1", "-W", "2", gw])).code,
        0,
        "the pod reaches cni0",
      );
      await agent.stop();
      const local = await addPod("after-agent");
      assert.notEqual(loggedPid(local.r), agent.pid, "with the agent gone, the plugin ran it");
      assert.equal((await nsExec(local.ns, ["ping", "-c", "1", "-W", "2", gw])).code, 0);
    } finally {
      await agent.stop();
      for (const ns of pods) netnsDelete(ns);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});
