import assert from "node:assert/strict";
import { askAgent } from "./agent_client.ts";
import { PROTOCOL_VERSION } from "./agent_protocol.ts";
import { serveCni } from "./agent_server.ts";

/** A server on a socket in a fresh temp dir, removed afterwards. */
async function withServer(
  opts: Parameters<typeof serveCni>[1],
  fn: (sock: string, server: ReturnType<typeof serveCni>) => Promise<void>,
): Promise<void> {
  const dir = Deno.makeTempDirSync();
  const server = serveCni(`${dir}/weft-cni.sock`, opts);
  try {
    await fn(server.path, server);
  } finally {
    await server.close();
    Deno.removeSync(dir, { recursive: true });
  }
}

Deno.test("the CNI server answers a kind it does not serve with 'unsupported', naming the kinds it does", async () => {
  await withServer({}, async (sock, server) => {
    const a = await askAgent(sock, "pod-register", { pod: "x/a" });
    assert.equal(a.status, "unsupported");
    if (a.status !== "unsupported") return;
    assert.equal(a.v, PROTOCOL_VERSION);
    assert.match(a.why, /"pod-register" is not supported by this agent \(protocol \d+, serves cni\)/);
    assert.equal(server.counts.unsupported, 1);
    assert.deepEqual(server.counts.byVersion, { [`v${PROTOCOL_VERSION}`]: 1 });
  });
});

Deno.test("a registered kind is answered by its handler, with the agent's version added", async () => {
  const seen: unknown[] = [];
  await withServer({
    kinds: {
      "pod-register": (req) => {
        seen.push(req.pod);
        return Promise.resolve({ ok: true });
      },
    },
  }, async (sock) => {
    const a = await askAgent(sock, "pod-register", { pod: "x/a" });
    assert.deepEqual(a, {
      status: "answered",
      reply: { ok: true, v: PROTOCOL_VERSION },
      v: PROTOCOL_VERSION,
    });
    assert.deepEqual(seen, ["x/a"]);
    const other = await askAgent(sock, "other", {});
    assert.match(other.status === "unsupported" ? other.why : "", /serves cni, pod-register/);
  });
});

Deno.test("a CNI call from a later protocol version, with fields this agent does not know, is still served", async () => {
  await withServer({}, async (sock, server) => {
    const a = await askAgent(sock, "cni", {
      env: { CNI_COMMAND: "NOPE" },
      stdin: JSON.stringify({ cniVersion: "1.0.0", name: "n", type: "flannel" }),
      v: PROTOCOL_VERSION + 1,
      somethingNew: { x: 1 },
    });
    assert.equal(a.status, "answered");
    const reply = a.status === "answered" ? a.reply : {};
    assert.equal(typeof reply.code, "number", "the call ran: its outcome came back");
    assert.match(String(reply.stdout), /"code":4/, "CNI_COMMAND NOPE is the call's own error");
    assert.equal(server.counts.served, 1);
    assert.deepEqual(server.counts.byVersion, { [`v${PROTOCOL_VERSION + 1}`]: 1 });
  });
});

Deno.test("a request of another kind may not carry env or stdin (a version 0 agent would run it as CNI)", async () => {
  await assert.rejects(
    askAgent("/nonexistent.sock", "pod-register", { env: {} }),
    /must not carry env or stdin/,
  );
  assert.deepEqual(await askAgent("/nonexistent.sock", "pod-register", {}), { status: "unreachable" });
});
