/**
 * Plugin/agent version skew during a rolling upgrade (src/cni/agent_protocol.ts, "Versions"): the CNI
 * plugin on a node's disk and the agent running there are different builds for a while, in either
 * order. The protocol-0 side is weft's code from before versioning, frozen byte for byte in
 * tests/testdata/cni_protocol_v0 (CI checks out one commit, so it cannot be fetched from git there;
 * where the history is present, the copies are checked against it).
 */
import assert from "node:assert/strict";
import { askAgent } from "../src/cni/agent_client.ts";
import { PROTOCOL_VERSION } from "../src/cni/agent_protocol.ts";
import { cni, cniLab, loggedPid, nsExec, startCniServer, stopCniServer } from "./helpers/cni.ts";
import { ROOT } from "./helpers/topology.ts";

const V0 = new URL("./testdata/cni_protocol_v0/", import.meta.url).pathname;
const V0_COMMIT = "cf18b7d7de0e864b26646421dea731d160da9c46";
const V0_PLUGIN = [Deno.execPath(), "run", "-A", `${V0}plugin.ts`];
const REPO = new URL("../", import.meta.url).pathname;

const base = (p: string) => p.slice(p.lastIndexOf("/") + 1);

/** ADD, a ping to cni0 from the pod, DEL, through `plugin` (default: this build's); who served each. */
async function addPingDel(
  lab: Awaited<ReturnType<typeof cniLab>>,
  id: string,
  plugin?: string[],
): Promise<{ add: number; del: number }> {
  const pod = lab.pod();
  const env = { containerId: id, netns: pod, ifname: "eth0" };
  const add = await cni(lab.node, { command: "ADD", ...env }, lab.conf("1.0.0"), plugin);
  assert.equal(add.code, 0, add.stdout + add.stderr);
  const ip = (add.out!.ips as { address: string }[])[0]!.address.split("/")[0]!;
  assert.deepEqual(lab.allocated(), [ip]);
  assert.equal((await nsExec(base(pod), ["ping", "-c", "1", "-W", "2", `${lab.net}.1`])).code, 0, "pod up");
  const del = await cni(lab.node, { command: "DEL", ...env }, lab.conf("1.0.0"), plugin);
  assert.equal(del.code, 0, del.stdout + del.stderr);
  assert.deepEqual(lab.allocated(), [], "DEL freed the IP");
  return { add: loggedPid(add), del: loggedPid(del) };
}

Deno.test("the frozen protocol-0 files are weft's files of that commit, byte for byte", async (t) => {
  const has = await new Deno.Command("git", {
    args: ["-C", REPO, "cat-file", "-e", `${V0_COMMIT}^{commit}`],
    stdout: "null",
    stderr: "null",
  }).output().catch(() => ({ code: 1 }));
  if (has.code !== 0) {
    // A shallow clone (CI's checkout) has no history: nothing to compare with, said rather than faked.
    await t.step({
      name: `skipped: commit ${V0_COMMIT.slice(0, 7)} is not in this clone`,
      ignore: true,
      fn() {},
    });
    return;
  }
  for (const f of ["agent_protocol.ts", "agent_client.ts", "agent_server.ts", "main.ts"]) {
    const out = await new Deno.Command("git", {
      args: ["-C", REPO, "show", `${V0_COMMIT}:src/cni/${f}`],
      stdout: "piped",
    }).output();
    assert.equal(out.code, 0);
    assert.equal(Deno.readTextFileSync(`${V0}${f}`), new TextDecoder().decode(out.stdout), f);
  }
});

Deno.test({
  name: "an old plugin (protocol 0) is served by a new agent, and a new plugin by an old agent",
  ignore: !ROOT,
  async fn(t) {
    await using lab = await cniLab({ net: "10.244.46" });
    const sock = `${lab.dir}/weft-cni.sock`;
    await t.step("old plugin → new agent", async () => {
      const server = await startCniServer(lab.node, sock);
      try {
        const by = await addPingDel(lab, "old-plugin", V0_PLUGIN);
        assert.deepEqual(by, { add: server.pid, del: server.pid }, "the new agent ran ADD and DEL");
      } finally {
        await stopCniServer(server);
      }
    });
    await t.step("new plugin → old agent", async () => {
      const server = await startCniServer(lab.node, sock, { server: `${V0}agent_server.ts` });
      try {
        const by = await addPingDel(lab, "new-plugin");
        assert.deepEqual(by, { add: server.pid, del: server.pid }, "the old agent ran ADD and DEL");
      } finally {
        await stopCniServer(server);
      }
    });
    await t.step("new plugin → new agent (the reference)", async () => {
      const server = await startCniServer(lab.node, sock);
      try {
        assert.deepEqual(await addPingDel(lab, "same"), { add: server.pid, del: server.pid });
      } finally {
        await stopCniServer(server);
      }
    });
  },
});

Deno.test({
  name: "a request kind the agent does not know: 'unsupported' from a new agent, 'lost' from an old one, " +
    "and either keeps serving CNI calls",
  ignore: !ROOT,
  async fn(t) {
    await using lab = await cniLab({ net: "10.244.47" });
    const sock = `${lab.dir}/weft-cni.sock`;
    const probe = { pod: { namespace: "x", name: "a" } };
    await t.step("new agent", async () => {
      const server = await startCniServer(lab.node, sock);
      try {
        const a = await askAgent(sock, "future-kind", probe);
        assert.equal(a.status, "unsupported");
        assert.ok(a.status === "unsupported" && a.v === PROTOCOL_VERSION);
        assert.match(a.status === "unsupported" ? a.why : "", /"future-kind" is not supported .*serves cni/);
        assert.equal((await addPingDel(lab, "after-unknown")).add, server.pid, "still serving");
      } finally {
        await stopCniServer(server);
      }
    });
    await t.step("old agent", async () => {
      const server = await startCniServer(lab.node, sock, { server: `${V0}agent_server.ts` });
      try {
        assert.deepEqual(await askAgent(sock, "future-kind", probe), { status: "lost" });
        await assert.rejects(
          askAgent(sock, "future-kind", { stdin: "{}" }),
          /must not carry env or stdin/,
          "a v0 agent would run it as a CNI call",
        );
        assert.equal((await addPingDel(lab, "after-unknown-v0")).add, server.pid, "still serving");
      } finally {
        await stopCniServer(server);
      }
    });
  },
});
