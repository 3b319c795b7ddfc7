import assert from "node:assert/strict";
import { Backoff } from "./async.ts";

/** A fixed sequence standing in for Math.random. */
function seq(...xs: number[]): () => number {
  let i = 0;
  return () => xs[i++ % xs.length]!;
}

Deno.test("Backoff without jitter doubles from first to max, and reset() starts again", () => {
  const b = new Backoff(100, 1000, { jitter: "none" });
  assert.deepEqual([b.next(), b.next(), b.next(), b.next(), b.next(), b.next()], [
    100,
    200,
    400,
    800,
    1000,
    1000,
  ]);
  b.reset();
  assert.equal(b.next(), 100);
});

Deno.test("Backoff with full jitter draws each delay from [0, ceiling]", () => {
  const b = new Backoff(800, 30_000, { random: seq(0.5, 0, 0.999) });
  assert.deepEqual([b.next(), b.next(), b.next()], [400, 0, 3197]);
});

Deno.test("Backoff with equal jitter never goes below half the ceiling", () => {
  const b = new Backoff(1000, 8000, { jitter: "equal", random: seq(0, 0.5) });
  assert.deepEqual([b.next(), b.next()], [500, 1500]);
});

Deno.test("Backoff.next(floor) honours a server's Retry-After over a shorter jittered delay", () => {
  const b = new Backoff(800, 30_000, { random: seq(0.1) });
  assert.equal(b.next(5000), 5000);
  assert.equal(b.next(0), 160);
});

Deno.test("1000 full-jitter back-offs after one outage spread over the window instead of in lock-step", () => {
  const first = Array.from({ length: 1000 }, () => new Backoff(800, 30_000).next());
  const buckets = new Array(8).fill(0);
  for (const d of first) buckets[Math.min(7, Math.floor(d / 100))]++;
  // Uniform over [0, 800]: every 100 ms bucket holds about 125; lock-step would put all 1000 in one.
  assert.ok(Math.max(...buckets) < 250, `buckets ${buckets.join(",")}`);
  assert.ok(Math.min(...buckets) > 50, `buckets ${buckets.join(",")}`);
});
