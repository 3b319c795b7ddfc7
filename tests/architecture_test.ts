/**
 * The layering of ARCHITECTURE.md holds: the `weft/layers` lint rule (tools/lint/) refuses the imports
 * the design forbids, and `deno lint` reports them on a real file.
 */
import assert from "node:assert/strict";
import { layerViolation, partOf } from "../tools/lint/layers.ts";

Deno.test("layerViolation() refuses backend → agent, datapath → etcd, agent → any store's own code", () => {
  assert.match(
    layerViolation("src/backend/vxlan/vxlan.ts", "../../agent/agent.ts")!,
    /src\/backend\/vxlan may not import/,
  );
  assert.match(
    layerViolation("src/datapath/reconciler.ts", "../lease/etcd/etcd_registry.ts")!,
    /may not import/,
  );
  assert.match(layerViolation("src/datapath/reconciler.ts", "../lease/etcd/manager.ts")!, /may not import/);
  assert.match(layerViolation("src/agent/agent.ts", "../lease/etcd/mod.ts")!, /may not import/);
  assert.match(layerViolation("src/agent/agent.ts", "../lease/kube/lease_source.ts")!, /may not import/);
  assert.match(layerViolation("src/backend/vxlan/vxlan.ts", "etcd3")!, /may not load etcd3/);
  assert.match(layerViolation("src/cni/add.ts", "commander")!, /commander/);
  assert.match(layerViolation("src/cni/main.ts", "@commander-js/extra-typings")!, /may not load/);
  assert.match(layerViolation("src/net/ip.ts", "../config/net_conf.ts")!, /may not import/);
  assert.match(layerViolation("ffi/links.ts", "../src/agent/agent.ts")!, /ffi may not import/);
  assert.match(layerViolation("ffi/addrs.ts", "../src/net/ip.ts")!, /ffi may not import/);
  // One backend never reaches into another; the agent sees the Backend seam, not a backend's folder.
  assert.match(layerViolation("src/backend/vxlan/vxlan.ts", "../udp/peers.ts")!, /may not import/);
  assert.match(layerViolation("src/agent/status.ts", "../backend/udp/forwarder.ts")!, /may not import/);
  // The shared lease code stays below both stores, and the stores apart from each other.
  assert.match(layerViolation("src/lease/lease.ts", "./etcd/manager.ts")!, /may not import/);
  assert.match(layerViolation("src/lease/etcd/manager.ts", "../kube/node_lease.ts")!, /may not import/);
});

Deno.test("layerViolation() allows the design's imports", () => {
  for (
    const [from, spec] of [
      ["src/agent/agent.ts", "../lease/source.ts"],
      ["src/agent/agent.ts", "../lease/lease.ts"],
      ["src/agent/agent.ts", "../backend/registry.ts"],
      ["src/backend/registry.ts", "./vxlan/vxlan.ts"],
      ["src/backend/hostgw/hostgw.ts", "../route_via.ts"],
      ["src/backend/vxlan/vxlan.ts", "../../datapath/reconciler.ts"],
      ["src/backend/vxlan/vxlan.ts", "../../../ffi/mod.ts"],
      ["src/datapath/reconciler.ts", "../lease/lease.ts"],
      ["src/lease/etcd/etcd_registry.ts", "etcd3"],
      ["src/lease/etcd/manager.ts", "../../async.ts"],
      ["src/lease/etcd/manager.ts", "../source.ts"],
      ["src/lease/kube/lease_source.ts", "../../kube/client.ts"],
      ["src/cli/agent.ts", "../lease/etcd/mod.ts"],
      ["src/cli/main.ts", "@commander-js/extra-typings"],
      ["main.ts", "./src/cni/main.ts"],
      ["src/net/ip.ts", "../../ffi/ip.ts"],
      ["src/backend/vxlan/vxlan_test.ts", "../../../tests/helpers/scratch_netns.ts"],
      ["tests/agent_e2e_test.ts", "../src/agent/agent.ts"],
    ]
  ) assert.equal(layerViolation(from!, spec!), undefined, `${from} → ${spec}`);
});

Deno.test("partOf() names folders, the base files and main.ts", () => {
  assert.equal(partOf("src/agent/agent.ts"), "src/agent");
  assert.equal(partOf("src/lease/etcd/manager.ts"), "src/lease/etcd");
  assert.equal(partOf("src/lease/lease.ts"), "src/lease");
  assert.equal(partOf("src/backend/vxlan/vxlan.ts"), "src/backend/vxlan");
  assert.equal(partOf("src/cli/doctor/checks.ts"), "src/cli");
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
