import assert from "node:assert/strict";
import { compileSelector, formatSelector, SelectorError } from "./selector.ts";

Deno.test("an empty selector matches every label set, the empty one too", () => {
  const m = compileSelector({});
  assert.equal(m({}), true);
  assert.equal(m({ a: "b" }), true);
});

Deno.test("matchLabels needs every key with the exact value", () => {
  const m = compileSelector({ matchLabels: { app: "web", tier: "front" } });
  assert.equal(m({ app: "web", tier: "front", extra: "x" }), true);
  assert.equal(m({ app: "web" }), false);
  assert.equal(m({ app: "web", tier: "back" }), false);
});

Deno.test("In, NotIn, Exists and DoesNotExist behave as apimachinery's", () => {
  const inM = compileSelector({ matchExpressions: [{ key: "env", operator: "In", values: ["a", "b"] }] });
  assert.deepEqual([inM({ env: "a" }), inM({ env: "c" }), inM({})], [true, false, false]);
  const notIn = compileSelector({ matchExpressions: [{ key: "env", operator: "NotIn", values: ["a"] }] });
  // NotIn also matches when the label is absent.
  assert.deepEqual([notIn({ env: "a" }), notIn({ env: "c" }), notIn({})], [false, true, true]);
  const ex = compileSelector({ matchExpressions: [{ key: "env", operator: "Exists" }] });
  assert.deepEqual([ex({ env: "" }), ex({})], [true, false]);
  const dne = compileSelector({ matchExpressions: [{ key: "env", operator: "DoesNotExist" }] });
  assert.deepEqual([dne({ env: "" }), dne({})], [false, true]);
});

Deno.test("matchLabels and matchExpressions are ANDed", () => {
  const m = compileSelector({
    matchLabels: { app: "web" },
    matchExpressions: [{ key: "env", operator: "NotIn", values: ["prod"] }],
  });
  assert.equal(m({ app: "web", env: "dev" }), true);
  assert.equal(m({ app: "web", env: "prod" }), false);
  assert.equal(m({ app: "db", env: "dev" }), false);
});

Deno.test("a label called like an Object.prototype member is not mistaken for a present label", () => {
  const m = compileSelector({ matchExpressions: [{ key: "constructor", operator: "Exists" }] });
  assert.equal(m({}), false);
});

Deno.test("compileSelector() rejects what the API rejects, naming the requirement", () => {
  assert.throws(
    () => compileSelector({ matchExpressions: [{ key: "a", operator: "Equals", values: ["x"] }] }),
    (e: unknown) =>
      e instanceof SelectorError && /matchExpressions\[0\].*unknown operator "Equals"/.test(e.message),
  );
  assert.throws(
    () => compileSelector({ matchExpressions: [{ key: "a", operator: "In", values: [] }] }),
    SelectorError,
  );
  assert.throws(
    () => compileSelector({ matchExpressions: [{ key: "a", operator: "Exists", values: ["x"] }] }),
    SelectorError,
  );
});

Deno.test("formatSelector() renders kubectl's syntax", () => {
  assert.equal(formatSelector({}), "<all>");
  assert.equal(
    formatSelector({
      matchLabels: { app: "web" },
      matchExpressions: [
        { key: "env", operator: "In", values: ["a", "b"] },
        { key: "old", operator: "DoesNotExist" },
      ],
    }),
    "app=web,env in (a,b),!old",
  );
});
