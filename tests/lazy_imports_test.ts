/**
 * The stores' clients are loaded only by the mode that uses them: the modules the CLI and the CNI plugin
 * load when they start (their static import closure, from `deno info`) hold no Kubernetes client code
 * (src/kube, src/lease/kube) and no etcd client (npm:etcd3); kube mode's entry holds them but not etcd3.
 */
import assert from "node:assert/strict";

interface Dep {
  code?: { specifier: string };
  isDynamic?: boolean;
}

/** The modules loaded at start by `entry`: its imports that run (not type-only, not dynamic), transitively. */
async function startupClosure(entry: string): Promise<string[]> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["info", "--json", new URL(entry, import.meta.url).pathname],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.ok(out.success, new TextDecoder().decode(out.stderr));
  const info = JSON.parse(new TextDecoder().decode(out.stdout)) as {
    roots: string[];
    modules: { specifier: string; dependencies?: Dep[] }[];
    npmPackages?: Record<string, unknown>;
  };
  const deps = new Map(info.modules.map((m) => [m.specifier, m.dependencies ?? []]));
  const seen = new Set<string>();
  const stack = [...info.roots];
  while (stack.length) {
    const s = stack.pop()!;
    if (seen.has(s)) continue;
    seen.add(s);
    for (const d of deps.get(s) ?? []) if (d.code && !d.isDynamic) stack.push(d.code.specifier);
  }
  return [...seen];
}

const kube = (mods: string[]) => mods.filter((m) => /\/src\/(lease\/)?kube\//.test(m));
const etcd = (mods: string[]) => mods.filter((m) => /etcd3|etcd_registry/.test(m));

Deno.test("the CLI and CNI mode load no Kubernetes or etcd client at start-up", async () => {
  for (const entry of ["../src/cli/main.ts", "../src/cni/main.ts", "../main.ts"]) {
    const mods = await startupClosure(entry);
    assert.deepEqual(kube(mods), [], `${entry} loads src/kube`);
    assert.deepEqual(etcd(mods), [], `${entry} loads etcd3`);
  }
});

Deno.test("kube mode's opener loads src/kube and no etcd client", async () => {
  const mods = await startupClosure("../src/cli/kube_agent.ts");
  assert.ok(mods.some((m) => m.endsWith("/src/lease/kube/lease_source.ts")));
  assert.ok(kube(mods).some((m) => m.endsWith("/src/kube/client.ts")));
  assert.deepEqual(etcd(mods), []);
});

Deno.test("the CNI commands bind no libnl: their netlink is ffi/rtnl over the one codec and constants table", async () => {
  const libnl = (mods: string[]) =>
    mods.filter((m) =>
      /\/ffi\/(loader|libnl_symbols|netlink|socket|links|routes|neighs|addrs|genl)\.ts$/.test(m)
    );
  for (
    const entry of ["../src/cni/add.ts", "../src/cni/del.ts", "../src/cni/check.ts", "../src/cni/main.ts"]
  ) {
    const mods = await startupClosure(entry);
    assert.deepEqual(libnl(mods), [], `${entry} loads libnl's wrappers`);
    if (!entry.endsWith("main.ts")) {
      assert.ok(mods.some((m) => m.endsWith("/ffi/nl_codec.ts")), `${entry} uses the one codec`);
    }
  }
});

Deno.test("`weft agent` loads no commander, no policy compiler, no backend but its own, no etcd lease code", async () => {
  // main.ts → src/cli/main.ts → (dynamic) src/cli/agent.ts → (dynamic) src/agent/agent.ts: what each
  // loads at start. Each of these was measured at 1-5 MB of an agent's memory (BENCHMARKS.md).
  const mods = [
    ...await startupClosure("../src/cli/main.ts"),
    ...await startupClosure("../src/cli/agent.ts"),
    ...await startupClosure("../src/agent/agent.ts"),
  ];
  const loaded = (re: RegExp) => [...new Set(mods.filter((m) => re.test(m)))];
  assert.ok(
    mods.some((m) => m.endsWith("/src/agent/agent.ts")) && mods.some((m) => m.endsWith("/ffi/mod.ts")),
  );
  assert.deepEqual(loaded(/commander/), [], "commander (and Node's compat layer under it)");
  assert.deepEqual(loaded(/\/src\/policy\/(?!table_ref\.ts$)/), [], "policy beyond the table's name");
  assert.deepEqual(loaded(/\/src\/backend\/[a-z]+\/(?!options\.ts$|key_codec\.ts$)/), [], "a backend");
  assert.deepEqual(loaded(/\/src\/lease\/etcd\/(manager|keeper|watch|allocation)\.ts$/), [], "etcd leases");
  assert.deepEqual(loaded(/\/src\/cli\/(program|demo|cleanup|leases|config|status)\.ts$|\/doctor\//), []);
});
