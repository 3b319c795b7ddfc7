import assert from "node:assert/strict";
import { ListScanner } from "./list_scanner.ts";

/** Feeds `text` in pieces of `size` characters; returns the items parsed and the metadata. */
function scan(text: string, size: number, batch = 0) {
  const s = new ListScanner();
  const items: unknown[] = [];
  const onItem = (j: string) => items.push(JSON.parse(j));
  for (let i = 0; i < text.length; i += size) s.feed(text.slice(i, i + size), onItem, batch);
  s.finish(onItem);
  return { items, metadata: s.metadata };
}

const tricky = [
  { metadata: { name: "a", annotations: { "x/y": 'quote " and \\ backslash', "z": "}]{[" } }, spec: {} },
  { metadata: { name: "b\\" }, status: { images: [{ names: ["r@sha256:1", "r:v1"], sizeBytes: 1 }] } },
  { metadata: { name: "c" }, spec: { podCIDRs: ["10.0.0.0/24"], n: [1, 2.5e3, -3, true, null] } },
  { metadata: { name: "ü€😀", annotations: { "ключ": 'значение " }', "\u0022": '"' } }, spec: {} },
];

Deno.test("ListScanner hands over every item of a list split at any byte, escaped quotes and all", () => {
  const text = JSON.stringify({
    kind: "NodeList",
    apiVersion: "v1",
    metadata: { resourceVersion: "4711", continue: "tok" },
    items: tricky,
  });
  for (const size of [1, 2, 3, 7, 64, text.length]) {
    for (const batch of [0, 50, 10_000]) {
      const { items, metadata } = scan(text, size, batch);
      assert.deepEqual(items, tricky, `chunks of ${size}, scanned every ${batch}`);
      assert.deepEqual(metadata, { resourceVersion: "4711", continue: "tok" });
    }
  }
});

Deno.test("ListScanner reads metadata after the items too, and an empty list", () => {
  const after = `{"items":[{"a":{"items":[1]}}],"metadata":{"resourceVersion":"9"},"kind":"X"}`;
  assert.deepEqual(scan(after, 5), { items: [{ a: { items: [1] } }], metadata: { resourceVersion: "9" } });
  assert.deepEqual(scan(`{"kind":"NodeList","metadata":{"resourceVersion":"1"},"items":[]}`, 4), {
    items: [],
    metadata: { resourceVersion: "1" },
  });
  assert.deepEqual(scan(`{"kind":"NodeList","metadata":{"resourceVersion":"1"},"items":null}`, 4).items, []);
});

Deno.test("ListScanner says so when the answer ends mid-list (a connection cut)", () => {
  const s = new ListScanner();
  const items: string[] = [];
  s.feed(`{"metadata":{"resourceVersion":"1"},"items":[{"a":1},{"b":`, (j) => items.push(j));
  assert.deepEqual(items, ['{"a":1}']);
  assert.throws(() => s.finish(), /ended early \(after 1 items\)/);
});

Deno.test("ListScanner keeps only the item being read, not the whole answer", () => {
  const s = new ListScanner();
  let n = 0;
  s.feed(`{"metadata":{},"items":[`, () => n++);
  const item = JSON.stringify({ pad: "x".repeat(10_000) });
  let most = 0;
  for (let i = 0; i < 200; i++) {
    // Each item in two pieces: half of it is pending between the feeds.
    s.feed(item.slice(0, 5000), () => n++);
    most = Math.max(most, s.buffered);
    s.feed(item.slice(5000) + ",", () => n++);
    most = Math.max(most, s.buffered);
  }
  s.feed(item + "]}", () => n++);
  s.finish();
  assert.equal(n, 201);
  // What the scanner holds between feeds is bounded by one item, not 2 MB of answer.
  assert.ok(most <= item.length + 1, `held ${most} characters`);
});

Deno.test("ListScanner cuts what it is told to from each item, whatever the chunking", () => {
  const items = [
    { metadata: { name: "a", managedFields: [{ "f:{": "}" }] }, status: { images: [{ n: ['"]'] }], x: 1 } },
    { metadata: { name: "b" }, status: { images: [] } },
  ];
  const text = JSON.stringify({ kind: "NodeList", metadata: { resourceVersion: "7" }, items });
  for (const size of [1, 2, 5, 17, text.length]) {
    const s = new ListScanner([["metadata", "managedFields"], ["status", "images"]]);
    const got: unknown[] = [];
    for (let i = 0; i < text.length; i += size) {
      s.feed(text.slice(i, i + size), (j) => got.push(JSON.parse(j)));
    }
    s.finish();
    assert.deepEqual(got, [
      { metadata: { name: "a", managedFields: 0 }, status: { images: 0, x: 1 } },
      { metadata: { name: "b" }, status: { images: 0 } },
    ], `chunks of ${size}`);
  }
});
