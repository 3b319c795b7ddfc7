import assert from "node:assert/strict";
import { KubeApiError, type ListOptions, type WatchEvent, type WatchOptions } from "./client.ts";
import { Reflector, type ReflectorClient, type ReflectorHealth } from "./reflector.ts";

type Obj = { metadata: { name: string; resourceVersion?: string } };
type WatchStep = (
  opts: WatchOptions,
  emit: (ev: WatchEvent<Record<string, unknown>>) => void,
) => Promise<void>;

/** A client playing scripted answers: each list and watch call takes the next step. */
function scripted(
  lists: (() => Promise<{ items: unknown[]; resourceVersion: string }>)[],
  watches: WatchStep[],
) {
  const calls: string[] = [];
  const client: ReflectorClient = {
    list(path: string, opts: ListOptions) {
      calls.push(`list ${path} rv=${opts.resourceVersion}`);
      const step = lists.shift();
      if (!step) return new Promise(() => {});
      return step();
    },
    watch(path: string, opts: WatchOptions, onEvent: (ev: WatchEvent<Record<string, unknown>>) => void) {
      calls.push(
        `watch ${path} rv=${opts.resourceVersion} bookmarks=${opts.allowWatchBookmarks} idle=${opts.idleMs}`,
      );
      const step = watches.shift();
      if (!step) {
        return new Promise<void>((r) => opts.signal.addEventListener("abort", () => r(), { once: true }));
      }
      return step(opts, onEvent);
    },
  };
  return { client, calls };
}

const node = (name: string, rv: string) => ({ metadata: { name, resourceVersion: rv } });
const open: WatchStep = (o) => Promise.resolve(o.onOpen?.());
const fail = (err: Error): WatchStep => () => Promise.reject(err);

async function until(what: string, pred: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

Deno.test("the reflector lists from the watch cache once, then only resumes from the last resourceVersion", async () => {
  const { client, calls } = scripted([
    () => Promise.resolve({ items: [node("a", "5")], resourceVersion: "10" }),
  ], [
    async (o, emit) => { // events and a bookmark, then the server ends the watch
      o.onOpen?.();
      emit({ type: "ADDED", object: node("b", "11") });
      emit({ type: "BOOKMARK", object: { metadata: { resourceVersion: "15" } } });
      await Promise.resolve();
    },
    async (o, emit) => {
      o.onOpen?.();
      emit({ type: "DELETED", object: node("a", "16") });
      await Promise.resolve();
      throw new Error("connection reset");
    },
  ]);
  const seen: string[] = [];
  const stop = new AbortController();
  const r = new Reflector<Obj>(
    client,
    { path: "/api/v1/nodes", bookmarkIntervalMs: 1000, backoffMs: [1, 2] },
    {
      onList: (items, rv) => seen.push(`list ${items.map((i) => i.metadata.name)} @${rv}`),
      onEvent: (type, o) => seen.push(`${type} ${o.metadata.name}`),
    },
  );
  const running = r.run(stop.signal);
  await until("three watches", () => calls.length >= 4);
  stop.abort();
  await running;
  assert.deepEqual(calls, [
    "list /api/v1/nodes rv=0",
    "watch /api/v1/nodes rv=10 bookmarks=true idle=2000",
    "watch /api/v1/nodes rv=15 bookmarks=true idle=2000", // the bookmark moved the resume point
    "watch /api/v1/nodes rv=16 bookmarks=true idle=2000", // a broken stream resumes too: no list
  ]);
  assert.deepEqual(seen, ["list a @10", "ADDED b", "DELETED a"]);
  assert.deepEqual(r.stats, { lists: 1, watches: 2, events: 2, bookmarks: 1, failures: 1 });
});

Deno.test("410 Expired lists again (from the cache); nothing else does", async () => {
  const { client, calls } = scripted([
    () => Promise.resolve({ items: [node("a", "1")], resourceVersion: "10" }),
    () => Promise.resolve({ items: [node("b", "20")], resourceVersion: "30" }),
  ], [fail(new KubeApiError(410, "Expired", "too old resource version: 10 (25)"))]);
  const lists: string[] = [];
  const stop = new AbortController();
  const r = new Reflector<Obj>(client, { path: "/p", backoffMs: [1, 2] }, {
    onList: (items, rv) => lists.push(`${items.map((i) => i.metadata.name)}@${rv}`),
    onEvent: () => {},
  });
  const running = r.run(stop.signal);
  await until("second watch", () => calls.length >= 4);
  stop.abort();
  await running;
  assert.deepEqual(calls.map((c) => c.split(" bookmarks")[0]), [
    "list /p rv=0",
    "watch /p rv=10",
    "list /p rv=0",
    "watch /p rv=30",
  ]);
  assert.deepEqual(lists, ["a@10", "b@30"]);
  assert.equal(r.stats.failures, 0, "410 is no failure: the server answered");
});

Deno.test("failures back off with full jitter up to the ceiling, never below Retry-After; health says why", async () => {
  const down = new Error("connect ECONNREFUSED");
  const { client } = scripted([() => Promise.resolve({ items: [], resourceVersion: "1" })], [
    fail(down),
    fail(down),
    fail(down),
    fail(down),
    fail(down),
    fail(new KubeApiError(429, "TooManyRequests", "slow down", 120)),
    fail(new KubeApiError(401, "Unauthorized", "Unauthorized")),
    open,
  ]);
  const delays: number[] = [];
  const health: ReflectorHealth[] = [];
  const stop = new AbortController();
  // random() just below 1: each delay is its ceiling (full jitter draws from [0, ceiling]).
  const r = new Reflector<Obj>(client, { path: "/p", backoffMs: [4, 32], random: () => 0.9999 }, {
    onList: () => {},
    onEvent: () => {},
    onHealth: (h) => health.push(h),
    onRetry: (ms) => delays.push(ms),
  });
  const running = r.run(stop.signal);
  await until("up again", () => health.at(-1)?.up === true && delays.length === 7);
  stop.abort();
  await running;
  assert.deepEqual(delays.slice(0, 5), [4, 8, 16, 32, 32], "doubling up to the ceiling");
  assert.equal(delays[5], 120, "Retry-After is the floor");
  assert.deepEqual(health.map((h) => [h.up, h.refused?.code]), [
    [true, undefined], // listed
    [false, undefined], // ECONNREFUSED …
    [false, undefined], // 429 (another reason)
    [false, 401], // refused: no retry fixes that alone
    [true, undefined],
  ]);
  assert.match(health[1]!.why!, /ECONNREFUSED/);
});

Deno.test("with random draws, retry delays spread over the whole window (full jitter)", async () => {
  const { client } = scripted(
    [() => Promise.resolve({ items: [], resourceVersion: "1" })],
    Array(40).fill(fail(new Error("down"))),
  );
  const delays: number[] = [];
  const stop = new AbortController();
  let seed = 42;
  const random = () => (seed = (seed * 16807) % 2147483647) / 2147483647; // reproducible draws
  const r = new Reflector<Obj>(client, { path: "/p", backoffMs: [1, 8], random }, {
    onList: () => {},
    onEvent: () => {},
    onRetry: (ms) => delays.push(ms),
  });
  const running = r.run(stop.signal);
  await until("40 retries", () => delays.length >= 40);
  stop.abort();
  await running;
  const capped = delays.slice(4);
  assert.ok(capped.every((d) => d >= 0 && d <= 8), `${capped}`);
  assert.ok(new Set(capped).size >= 5, `drawn, not fixed: ${capped}`);
});
