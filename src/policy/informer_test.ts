import assert from "node:assert/strict";
import { Informer, type ListWatchClient, objectKey, type WatchEvent } from "./informer.ts";

interface Obj {
  metadata: { name: string; namespace?: string; resourceVersion?: string };
}

const obj = (name: string, rv: string, namespace = "x"): Obj => ({
  metadata: { name, namespace, resourceVersion: rv },
});

/**
 * A scripted API: each list() answers the next entry of `lists`, each watch() plays the next script
 * (events, then how it ends) and records the resourceVersion it was asked to start from.
 */
class FakeApi implements ListWatchClient {
  watchedFrom: (string | undefined)[] = [];
  listCalls = 0;
  constructor(
    readonly lists: (() => { items: Obj[]; resourceVersion: string })[],
    readonly watches: { events: WatchEvent<Obj>[]; end: "close" | "gone" | "break" | "hang" }[],
  ) {}

  list<T>(): Promise<{ items: T[]; resourceVersion: string }> {
    const next = this.lists[this.listCalls++];
    if (!next) return Promise.reject(new Error("no more lists"));
    try {
      return Promise.resolve(next() as unknown as { items: T[]; resourceVersion: string });
    } catch (err) {
      return Promise.reject(err);
    }
  }

  async watch<T>(
    _path: string,
    opts: { resourceVersion?: string; signal: AbortSignal },
    onEvent: (ev: WatchEvent<T>) => void,
  ): Promise<void> {
    this.watchedFrom.push(opts.resourceVersion);
    const w = this.watches.shift();
    if (!w) {
      await new Promise((res) => opts.signal.addEventListener("abort", res, { once: true }));
      return;
    }
    for (const ev of w.events) onEvent(ev as unknown as WatchEvent<T>);
    await Promise.resolve();
    if (w.end === "gone") throw Object.assign(new Error("too old resource version"), { code: 410 });
    if (w.end === "break") throw new Error("connection reset");
    if (w.end === "hang") {
      await new Promise((res) => opts.signal.addEventListener("abort", res, { once: true }));
    }
  }
}

async function until(what: string, ok: () => boolean): Promise<void> {
  const end = Date.now() + 30_000;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

Deno.test("objectKey() is namespace/name, or the name of a cluster-scoped object", () => {
  assert.equal(objectKey(obj("a", "1")), "x/a");
  assert.equal(objectKey({ metadata: { name: "x" } }), "x");
});

Deno.test("the informer lists, applies watch events, and resumes the watch from the last version", async () => {
  const api = new FakeApi([() => ({ items: [obj("a", "5"), obj("b", "6")], resourceVersion: "10" })], [
    {
      events: [
        { type: "ADDED", object: obj("c", "11") },
        { type: "MODIFIED", object: obj("a", "12") },
        { type: "BOOKMARK", object: { metadata: { name: "", resourceVersion: "15" } } },
      ],
      end: "close",
    },
    { events: [{ type: "DELETED", object: obj("b", "16") }], end: "break" },
  ]);
  let changes = 0;
  const inf = new Informer<Obj>(api, "/p", { onChange: () => changes++, backoffMs: [1, 1] });
  const ctl = new AbortController();
  const done = inf.run(ctl.signal);
  await until("three watches", () => api.watchedFrom.length === 3);
  ctl.abort();
  await done;
  assert.equal(api.listCalls, 1, "a closed or broken watch is resumed, not re-listed");
  assert.deepEqual(
    api.watchedFrom,
    ["10", "15", "16"],
    "resumed from the bookmark, then from the last event",
  );
  assert.deepEqual([...inf.store.keys()].sort(), ["x/a", "x/c"]);
  assert.equal(inf.store.get("x/a")!.metadata.resourceVersion, "12");
  assert.equal(changes, 4, "the list, c added, a modified, b deleted (the bookmark changes nothing)");
  assert.equal(inf.synced, true);
});

Deno.test("410 Gone re-lists and replaces the store by a diff: deletions made meanwhile are seen", async () => {
  const api = new FakeApi([
    () => ({ items: [obj("a", "1"), obj("b", "2")], resourceVersion: "2" }),
    () => ({ items: [obj("a", "1")], resourceVersion: "40" }),
    () => ({ items: [obj("a", "1")], resourceVersion: "41" }),
  ], [{ events: [], end: "gone" }, { events: [], end: "gone" }]);
  let changes = 0;
  const inf = new Informer<Obj>(api, "/p", { onChange: () => changes++, backoffMs: [1, 1] });
  const ctl = new AbortController();
  const done = inf.run(ctl.signal);
  await until("the third watch", () => api.watchedFrom.length === 3);
  ctl.abort();
  await done;
  assert.equal(api.listCalls, 3);
  assert.deepEqual(api.watchedFrom, ["2", "40", "41"]);
  assert.deepEqual([...inf.store.keys()], ["x/a"]);
  assert.equal(changes, 2, "the first list and the one that lost b; the identical re-list is silent");
});

Deno.test("an unreachable API keeps the last store, backs off, and reports the recovery", async () => {
  let down = false;
  const api = new FakeApi([
    () => ({ items: [obj("a", "1")], resourceVersion: "1" }),
    () => {
      throw new Error("connection refused");
    },
    () => {
      throw new Error("connection refused");
    },
    () => ({ items: [obj("a", "1"), obj("z", "9")], resourceVersion: "9" }),
  ], [{ events: [], end: "gone" }, { events: [], end: "hang" }]);
  const errors: string[] = [];
  let recovered = 0;
  const inf = new Informer<Obj>(api, "/p", {
    onChange: () => {},
    onError: (e) => {
      errors.push((e as Error).message);
      down = true;
      assert.deepEqual([...inf.store.keys()], ["x/a"], "the store is kept while the API is away");
    },
    onRecover: () => recovered++,
    backoffMs: [5, 20],
  });
  const ctl = new AbortController();
  const done = inf.run(ctl.signal);
  await until("recovery", () => recovered === 1);
  assert.ok(down);
  assert.equal(inf.connected, true);
  assert.deepEqual(errors, ["connection refused", "connection refused"]);
  assert.deepEqual([...inf.store.keys()], ["x/a", "x/z"]);
  ctl.abort();
  await done;
});
