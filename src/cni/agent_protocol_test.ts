import assert from "node:assert/strict";
import { agentSocketBeside, agentSocketFor, DEFAULT_AGENT_SOCKET } from "./agent_protocol.ts";

Deno.test("agentSocketFor() finds the agent's socket beside the config's subnet.env, or where agentSocket says", () => {
  assert.equal(agentSocketFor(JSON.stringify({ type: "flannel" })), DEFAULT_AGENT_SOCKET);
  assert.equal(DEFAULT_AGENT_SOCKET, "/run/flannel/weft-cni.sock");
  assert.equal(agentSocketFor(JSON.stringify({ subnetFile: "/tmp/x/subnet.env" })), "/tmp/x/weft-cni.sock");
  assert.equal(
    agentSocketFor(JSON.stringify({ subnetFile: "/tmp/x/s.env", agentSocket: "/a.sock" })),
    "/a.sock",
  );
  assert.equal(agentSocketFor(JSON.stringify({ agentSocket: "" })), "", "off");
  assert.equal(agentSocketFor("{nope"), "", "bad JSON: the command reports it");
  assert.equal(agentSocketFor("null"), "");
  assert.equal(agentSocketBeside("subnet.env"), "./weft-cni.sock");
  assert.equal(agentSocketBeside("/subnet.env"), "/weft-cni.sock");
});

Deno.test("the thin call's default paths are the ones the CNI modules use", async () => {
  const { DEFAULT_PATHS } = await import("./agent_protocol.ts");
  const { DEFAULT_IPAM_DIR } = await import("../ipam/store.ts");
  const { DEFAULT_FLANNEL_DATA_DIR } = await import("./config.ts");
  const { DEFAULT_SUBNET_FILE } = await import("../config/subnet_env.ts");
  assert.deepEqual(DEFAULT_PATHS, [DEFAULT_IPAM_DIR, DEFAULT_FLANNEL_DATA_DIR, DEFAULT_SUBNET_FILE]);
});

Deno.test("pathIdentity() names the nearest existing ancestor with its inode, so two views of one file agree", async () => {
  const { pathIdentity, callPaths } = await import("./agent_protocol.ts");
  const dir = Deno.makeTempDirSync();
  try {
    const st = Deno.statSync(dir);
    assert.equal(pathIdentity(`${dir}/a/b/c`), `${dir}@${st.dev}:${st.ino}`);
    Deno.mkdirSync(`${dir}/a`);
    assert.notEqual(pathIdentity(`${dir}/a/b/c`), `${dir}@${st.dev}:${st.ino}`, "a new folder changes it");
    assert.equal(
      pathIdentity(`${dir}/a`, `/proc/${Deno.pid}/root`),
      pathIdentity(`${dir}/a`),
      "via /proc/<pid>/root",
    );
    const paths = callPaths(
      JSON.stringify({ subnetFile: `${dir}/s.env`, delegate: { ipam: { dataDir: `${dir}/n` } } }),
      "/x",
    );
    for (const p of [`${dir}/s.env`, `${dir}/n`, "/x", "/var/lib/cni/networks"]) {
      assert.ok(paths.includes(p), p);
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
