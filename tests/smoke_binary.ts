/**
 * Smoke test of the single weft executable, everything through it and nothing through `deno run`:
 * `weft --version` and `weft agent --version`, the CNI plugin's `VERSION`, and one agent + CNI run in
 * network namespaces (etcd in the underlay, the binary's agent on a node, an ADD that its CNI server
 * serves, the pod pinging its gateway, DEL). CI runs it on the x86_64 binary `deno task compile` built
 * (.github/workflows/ci.yml, `./dev ci`).
 *
 *     deno run -A tests/smoke_binary.ts dist/weft-x86_64-linux
 *     deno run -A tests/smoke_binary.ts      # no binary: `deno run -A main.ts` stands in (proves the script)
 *
 * Needs root and etcd (`./dev setup` installs it). Exits 0 when every check passed.
 *
 * @module
 */
import assert from "node:assert/strict";
import { netnsCreate, netnsDelete } from "../ffi/mod.ts";
import { runIn } from "../src/lab/lab.ts";
import { addIP, formatIP } from "../src/net/ip.ts";
import { selfCommand } from "../src/self_command.ts";
import { WEFT_VERSION } from "../src/version.ts";
import { startAgent, waitReady, waitSubnetEnv } from "./helpers/agent.ts";
import { cni, flannelConf, nsExec } from "./helpers/cni.ts";
import { haveEtcd, putNetworkConfig, startEtcd } from "./helpers/etcd.ts";
import { uniqueNetnsName } from "./helpers/names.ts";
import { ROOT } from "./helpers/skip.ts";
import { createTopology } from "./helpers/topology.ts";

/** How to run weft: the binary given, else `deno run` of this checkout's main.ts. */
function weftCommand(binary: string | undefined): string[] {
  if (!binary) return selfCommand();
  const path = Deno.realPathSync(binary);
  assert.ok(
    Deno.statSync(path).isFile && ((Deno.statSync(path).mode ?? 0) & 0o111),
    `${path}: not an executable`,
  );
  return [path];
}

function step(what: string): void {
  console.log(`smoke: ${what}`);
}

async function versions(weft: string[]): Promise<void> {
  step(`${weft.join(" ")} --version`);
  const v = await runIn(undefined, [...weft, "--version"]);
  assert.equal(v.code, 0, v.stderr);
  assert.equal(v.stdout.trim(), WEFT_VERSION);
  step("weft agent --version");
  const a = await runIn(undefined, [...weft, "agent", "--version"]);
  assert.equal(a.code, 0, `weft agent --version: ${a.stderr}`);
  assert.match(a.stdout, new RegExp(WEFT_VERSION.replaceAll(".", "\\.")));
  step("CNI_COMMAND=VERSION");
  const c = await runIn(undefined, weft, {
    env: { CNI_COMMAND: "VERSION" },
    stdin: '{"cniVersion":"1.1.0"}',
  });
  assert.equal(c.code, 0, c.stderr);
  const out = JSON.parse(c.stdout) as { cniVersion: string; supportedVersions: string[] };
  assert.equal(out.cniVersion, "1.1.0");
  for (const s of ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"]) {
    assert.ok(out.supportedVersions.includes(s), s);
  }
}

/** One node, etcd in the underlay, the binary's agent; one pod added through its CNI server, then deleted. */
async function agentAndCni(weft: string[]): Promise<void> {
  step("weft agent in a node namespace, with etcd in the underlay");
  await using topo = await createTopology({ nodes: 1 });
  const dir = await Deno.makeTempDir({ prefix: "weft-smoke-" });
  await using etcd = await startEtcd({ netns: topo.underlay, host: topo.underlayIP });
  await putNetworkConfig(etcd.endpoint, { Network: "10.244.0.0/16", Backend: { Type: "vxlan" } }, {
    netns: topo.underlay,
  });
  const node = topo.nodes[0]!;
  const agent = startAgent(node, { etcd: etcd.endpoint, dir, exe: weft });
  const pod = uniqueNetnsName("pod");
  netnsCreate(pod);
  try {
    const env = await waitSubnetEnv(agent);
    await waitReady(agent);
    const conf = flannelConf("1.1.0", {
      subnetFile: agent.subnetFile,
      dataDir: `${dir}/flannel`,
      ipamDir: `${dir}/networks`,
    });
    const call = { containerId: "smoke", netns: `/run/netns/${pod}`, ifname: "eth0" };
    step("CNI ADD through the binary, served by the agent's CNI server");
    const add = await cni(node.netns, { command: "ADD", ...call }, conf, weft);
    assert.equal(add.code, 0, add.stdout + add.stderr);
    assert.match(
      add.stderr,
      new RegExp(`weft-cni\\[${agent.pid}\\]`),
      `the agent served the ADD: ${add.stderr}`,
    );
    const gw = formatIP(addIP(env.subnet!.ip, 1));
    step(`the pod pings its gateway ${gw}`);
    assert.equal((await nsExec(pod, ["ping", "-c", "1", "-W", "5", gw])).code, 0, "the pod reaches cni0");
    step("CNI DEL");
    const del = await cni(node.netns, { command: "DEL", ...call }, conf, weft);
    assert.equal(del.code, 0, del.stdout + del.stderr);
  } finally {
    await agent.stop();
    netnsDelete(pod);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) {
  if (!ROOT || !haveEtcd()) {
    console.error("smoke: needs root and etcd (./dev setup installs it)");
    Deno.exit(2);
  }
  const binary = Deno.args[0];
  const weft = weftCommand(binary);
  console.log(
    binary ? `smoke: the binary ${weft[0]}` : "smoke: no binary given: `deno run -A main.ts` stands in",
  );
  try {
    await versions(weft);
    await agentAndCni(weft);
  } catch (err) {
    console.error(`smoke: FAILED: ${err instanceof Error ? err.stack ?? err.message : err}`);
    Deno.exit(1);
  }
  console.log("smoke: ok");
}
