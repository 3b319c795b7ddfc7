/**
 * The layering of ARCHITECTURE.md holds: the `weft/layers` lint rule (tools/lint/) refuses the imports
 * the design forbids, and `deno lint` reports them on a real file.
 */
import assert from "node:assert/strict";
import { layerViolation, partOf } from "../tools/lint/layers.ts";

Deno.test("layerViolation() refuses backend → agent, datapath → etcd, agent → any etcd code", () => {
  assert.match(layerViolation("src/backend/vxlan.ts", "../agent/agent.ts")!, /src\/backend may not import/);
  assert.match(layerViolation("src/datapath/reconciler.ts", "../subnet/etcd_registry.ts")!, /may not import/);
  assert.match(layerViolation("src/datapath/reconciler.ts", "../subnet/manager.ts")!, /may not import/);
  assert.match(layerViolation("src/agent/agent.ts", "../subnet/mod.ts")!, /may not import/);
  assert.match(layerViolation("src/agent/agent.ts", "../subnet/etcd_registry.ts")!, /may not import/);
  assert.match(layerViolation("src/backend/vxlan.ts", "etcd3")!, /may not load etcd3/);
  assert.match(layerViolation("src/cni/add.ts", "commander")!, /commander/);
  assert.match(layerViolation("src/cni/main.ts", "@commander-js/extra-typings")!, /may not load/);
  assert.match(layerViolation("src/net/ip.ts", "../config/net_conf.ts")!, /may not import/);
  assert.match(layerViolation("ffi/links.ts", "../src/agent/agent.ts")!, /ffi may not import/);
});

Deno.test("layerViolation() allows the design's imports", () => {
  for (
    const [from, spec] of [
      ["src/agent/agent.ts", "../subnet/source.ts"],
      ["src/agent/agent.ts", "../subnet/lease.ts"],
      ["src/agent/agent.ts", "../backend/registry.ts"],
      ["src/backend/vxlan.ts", "../datapath/reconciler.ts"],
      ["src/backend/vxlan.ts", "../../ffi/mod.ts"],
      ["src/datapath/reconciler.ts", "../subnet/lease.ts"],
      ["src/subnet/etcd_registry.ts", "etcd3"],
      ["src/subnet/manager.ts", "../async.ts"],
      ["src/cli/agent.ts", "../subnet/mod.ts"],
      ["src/cli/main.ts", "@commander-js/extra-typings"],
      ["main.ts", "./src/cni/main.ts"],
      ["ffi/addrs.ts", "../src/net/ip.ts"],
      ["src/backend/vxlan_test.ts", "../../tests/helpers/scratch_netns.ts"],
      ["tests/agent_e2e_test.ts", "../src/agent/agent.ts"],
    ]
  ) assert.equal(layerViolation(from!, spec!), undefined, `${from} → ${spec}`);
});

Deno.test("partOf() names folders, the base files and main.ts", () => {
  assert.equal(partOf("src/agent/agent.ts"), "src/agent");
  assert.equal(partOf("src/log.ts"), "src/base");
  assert.equal(partOf("src/self_command.ts"), "src/self_command.ts");
  assert.equal(partOf("main.ts"), "main.ts");
  assert.equal(partOf("ffi/mod.ts"), "ffi");
  assert.equal(partOf("tests/helpers/etcd.ts"), undefined);
});

Deno.test("deno lint reports a forbidden import and an 80+ line function through weft's plugin", async () => {
  const dir = await Deno.makeTempDir({ prefix: "weft-arch-" });
  try {
    const plugin = new URL("../tools/lint/plugin.ts", import.meta.url).href;
    await Deno.writeTextFile(`${dir}/deno.json`, JSON.stringify({ lint: { plugins: [plugin] } }));
    await Deno.mkdir(`${dir}/src/backend`, { recursive: true });
    await Deno.mkdir(`${dir}/src/agent`, { recursive: true });
    await Deno.writeTextFile(`${dir}/src/agent/agent.ts`, "export const x = 1;\n");
    const long = Array.from({ length: 85 }, (_, i) => `  const v${i} = ${i};\n  void v${i};`).join("\n");
    await Deno.writeTextFile(
      `${dir}/src/backend/bad.ts`,
      `import { x } from "../agent/agent.ts";\nexport function f(): number {\n${long}\n  return x;\n}\n`,
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["lint", "--json", "src/backend/bad.ts"],
      cwd: dir,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.notEqual(out.code, 0, "lint must fail");
    const codes = JSON.parse(new TextDecoder().decode(out.stdout)).diagnostics.map((d: { code: string }) =>
      d.code
    );
    assert.ok(codes.includes("weft/layers"), codes.join());
    assert.ok(codes.includes("weft/max-function-lines"), codes.join());
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
