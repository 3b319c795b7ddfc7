import assert from "node:assert/strict";
import {
  applyJsonPatch,
  applyMergePatch,
  applyStrategicMergePatch,
  PatchError,
} from "./helpers/kube_patch.ts";

const KEYS = { "status.conditions": "type", "spec.podCIDRs": "", "metadata.finalizers": "" };

Deno.test("a merge patch merges maps, deletes keys set to null and replaces lists", () => {
  const out = applyMergePatch(
    { metadata: { annotations: { a: "1", b: "2" } }, spec: { podCIDRs: ["x"] } },
    { metadata: { annotations: { a: null, c: "3" } }, spec: { podCIDRs: ["y"] } },
  );
  assert.deepEqual(out, { metadata: { annotations: { b: "2", c: "3" } }, spec: { podCIDRs: ["y"] } });
});

Deno.test("a strategic merge patch merges conditions by type and scalar lists as sets", () => {
  const target = {
    spec: { podCIDRs: ["10.0.0.0/24"], taints: [{ key: "a" }] },
    status: { conditions: [{ type: "Ready", status: "True" }, { type: "MemoryPressure", status: "False" }] },
  };
  const out = applyStrategicMergePatch(target, {
    spec: { podCIDRs: ["fd00::/64"], taints: [{ key: "b" }] },
    status: { conditions: [{ type: "NetworkUnavailable", status: "False" }, { type: "Ready", reason: "r" }] },
  }, KEYS);
  assert.deepEqual(out, {
    spec: { podCIDRs: ["10.0.0.0/24", "fd00::/64"], taints: [{ key: "b" }] },
    status: {
      conditions: [
        { type: "Ready", status: "True", reason: "r" },
        { type: "MemoryPressure", status: "False" },
        { type: "NetworkUnavailable", status: "False" },
      ],
    },
  });
});

Deno.test("strategic merge directives: $patch delete/replace, $deleteFromPrimitiveList, $setElementOrder, $retainKeys", () => {
  const target = {
    metadata: { finalizers: ["a", "b", "c"], labels: { x: "1", y: "2" } },
    status: { conditions: [{ type: "A" }, { type: "B" }, { type: "C" }] },
  };
  const out = applyStrategicMergePatch(target, {
    metadata: { "$deleteFromPrimitiveList/finalizers": ["b"], labels: { $patch: "replace", z: "3" } },
    status: {
      conditions: [{ type: "B", $patch: "delete" }],
      "$setElementOrder/conditions": [{ type: "C" }, { type: "A" }],
    },
  }, KEYS);
  assert.deepEqual(out, {
    metadata: { finalizers: ["a", "c"], labels: { z: "3" } },
    status: { conditions: [{ type: "C" }, { type: "A" }] },
  });
  const kept = applyStrategicMergePatch({ spec: { a: 1, b: 2, c: 3 } }, {
    spec: { $retainKeys: ["a", "d"], d: 4 },
  }, KEYS);
  assert.deepEqual(kept, { spec: { a: 1, d: 4 } });
  assert.throws(
    () => applyStrategicMergePatch(target, { status: { conditions: [{ status: "x" }] } }, KEYS),
    PatchError,
  );
});

Deno.test("a JSON patch adds, removes, replaces, moves, copies and tests, failing on missing paths", () => {
  const doc = { metadata: { annotations: { "a/b": "1" } }, list: [1, 2] };
  const out = applyJsonPatch(doc, [
    { op: "add", path: "/metadata/annotations/c~1d", value: "2" },
    { op: "replace", path: "/metadata/annotations/a~1b", value: "3" },
    { op: "add", path: "/list/-", value: 3 },
    { op: "remove", path: "/list/0" },
    { op: "copy", from: "/list", path: "/copy" },
    { op: "move", from: "/copy", path: "/moved" },
    { op: "test", path: "/moved/1", value: 3 },
  ]);
  assert.deepEqual(out, {
    metadata: { annotations: { "a/b": "3", "c/d": "2" } },
    list: [2, 3],
    moved: [2, 3],
  });
  assert.deepEqual(doc.list, [1, 2], "the input is not changed");
  assert.throws(() => applyJsonPatch(doc, [{ op: "remove", path: "/nope" }]), /missing path/);
  assert.throws(() => applyJsonPatch(doc, [{ op: "test", path: "/list/0", value: 9 }]), /failed/);
});
