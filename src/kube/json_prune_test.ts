import assert from "node:assert/strict";
import { realisticNode } from "../../tests/helpers/kube_nodes.ts";
import { pruneJson } from "./json_prune.ts";
import { mulberry32 } from "../../tests/helpers/prng.ts";

const PATHS = [["metadata", "managedFields"], ["status", "images"]];

Deno.test("pruneJson drops the bulk of a real Node and keeps everything else exactly", () => {
  const node = realisticNode({
    name: "n1",
    podCIDR: "10.244.1.0/24",
    internalIP: "10.0.0.1",
    flannel: { publicIP: "10.0.0.1", vtepMac: "0a:00:00:00:00:01" },
  }) as { metadata: Record<string, unknown>; status: Record<string, unknown> };
  const text = JSON.stringify(node);
  const pruned = pruneJson(text, PATHS);
  assert.ok(pruned.length < text.length / 4, `${pruned.length} of ${text.length} characters kept`);
  const want = structuredClone(node);
  want.metadata.managedFields = 0;
  want.status.images = 0;
  assert.deepEqual(JSON.parse(pruned), want);
  // In a watch event the object is one level down.
  const line = JSON.stringify({ type: "MODIFIED", object: node });
  assert.deepEqual(JSON.parse(pruneJson(line, PATHS.map((p) => ["object", ...p]))), {
    type: "MODIFIED",
    object: want,
  });
});

Deno.test("pruneJson is not fooled by brackets, quotes and escapes inside strings, or by spacing", () => {
  const o = {
    'a"{': "}]\\",
    metadata: { name: 'x"}', managedFields: [{ "f:x": { "}": "{[" } }], z: [1, { y: "]" }] },
    status: { images: [{ names: ['a\\"]'] }], n: -1.5e3, t: true, f: null },
  };
  const spaced = JSON.stringify(o, null, 2);
  assert.deepEqual(JSON.parse(pruneJson(spaced, PATHS)), {
    ...o,
    metadata: { ...o.metadata, managedFields: 0 },
    status: { ...o.status, images: 0 },
  });
  assert.equal(pruneJson('{"metadata":{"name":"a"}}', PATHS), '{"metadata":{"name":"a"}}', "nothing to drop");
  assert.equal(pruneJson('{"status":"x"}', PATHS), '{"status":"x"}', "a path through a non-object");
  assert.throws(() => pruneJson('{"metadata":{"managedFields":[1,', PATHS), SyntaxError);
});

Deno.test("pruneJson: random objects with escapes and multi-byte characters lose exactly the paths, nothing else", () => {
  const r = mulberry32(0x9e37);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(r() * xs.length)]!;
  const KEYS = ["metadata", "managedFields", "status", "images", "name", "ü€", '"}', "\\", "k"];
  const STRS = ["", "a", '"', "\\", "}]{[", "😀", "ключ", 'x\\"y', "\u0000\u001f"];
  const value = (depth: number): unknown => {
    const k = r();
    if (depth > 3 || k < 0.3) return pick([...STRS, 1, -2.5e-3, true, false, null]);
    if (k < 0.5) return Array.from({ length: Math.floor(r() * 3) }, () => value(depth + 1));
    return Object.fromEntries(
      Array.from({ length: Math.floor(r() * 5) }, () => [pick(KEYS), value(depth + 1)]),
    );
  };
  for (let n = 0; n < 500; n++) {
    const o = { metadata: value(1), status: value(1), [pick(KEYS)]: value(1) } as Record<string, unknown>;
    const want = structuredClone(o);
    for (const [a, b] of PATHS) {
      const parent = want[a!];
      if (parent && typeof parent === "object" && !Array.isArray(parent) && b! in parent) {
        (parent as Record<string, unknown>)[b!] = 0;
      }
    }
    const text = JSON.stringify(o, null, n % 2 ? 1 : undefined);
    assert.deepEqual(JSON.parse(pruneJson(text, PATHS)), want, text);
  }
});
