import assert from "node:assert/strict";

Deno.test("importing src/lease/etcd/mod.ts does not load npm:etcd3; openEtcdRegistry() does", async () => {
  // Run a child whose import map points etcd3 at a module that throws when it is evaluated.
  const dir = await Deno.makeTempDir({ prefix: "weft-lazy-" });
  try {
    const config = JSON.parse(await Deno.readTextFile(new URL("../../../deno.json", import.meta.url)));
    const imports = { ...config.imports, etcd3: `${dir}/etcd3_trap.ts` };
    await Deno.writeTextFile(`${dir}/etcd3_trap.ts`, 'throw new Error("etcd3 was imported");\n');
    await Deno.writeTextFile(`${dir}/map.json`, JSON.stringify({ imports }));
    const mod = new URL("./mod.ts", import.meta.url).href;
    await Deno.writeTextFile(
      `${dir}/probe.ts`,
      `const m = await import(${JSON.stringify(mod)});
console.log("imported", typeof m.SubnetManager, typeof m.parseSubnetKey);
try {
  await m.openEtcdRegistry({ endpoints: ["http://127.0.0.1:1"], prefix: "/x" });
  console.log("opened without etcd3?");
} catch (e) {
  console.log("open:", e.message);
}
`,
    );
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--no-check", `--import-map=${dir}/map.json`, `${dir}/probe.ts`],
      cwd: new URL("../../..", import.meta.url).pathname,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
    assert.match(text, /^imported function function$/m, "the module loads without etcd3");
    assert.match(text, /^open: etcd3 was imported$/m, "etcd3 is imported when the registry is opened");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
