import assert from "node:assert/strict";
import { BoundedRunner } from "./runner.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(ok: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error("timed out");
    await sleep(5);
  }
}

Deno.test("BoundedRunner: runs never overlap, start at least the interval apart, and serve every kick", async () => {
  const starts: number[] = [];
  let running = 0, overlap = false, served = 0;
  let kicks = 0;
  const r = new BoundedRunner(async () => {
    if (running++) overlap = true;
    starts.push(performance.now());
    const seen = kicks;
    await sleep(3);
    served = seen;
    running--;
  }, { minIntervalMs: 50 });
  for (let i = 0; i < 40; i++) {
    kicks++;
    r.kick();
    await sleep(2);
  }
  await until(() => served === kicks && running === 0);
  assert.equal(overlap, false);
  for (let i = 1; i < starts.length; i++) {
    assert.ok(starts[i]! - starts[i - 1]! >= 49, `${starts[i]! - starts[i - 1]!} ms`);
  }
  assert.ok(starts.length < 40, `${starts.length} runs for 40 kicks`);
  r.stop();
});

Deno.test("BoundedRunner: next() resolves after a run that starts later; a kick waits for the interval", async () => {
  const starts: number[] = [];
  const r = new BoundedRunner(async () => {
    starts.push(performance.now());
    await sleep(1);
  }, { minIntervalMs: 200 });
  r.kick();
  await until(() => starts.length === 1);
  const next = r.next();
  r.kick();
  await next;
  assert.equal(starts.length, 2);
  assert.ok(starts[1]! - starts[0]! >= 199, "the second run waited for the interval");
  r.stop();
});

Deno.test("BoundedRunner: retries coalesce into one pending timer", async () => {
  let runs = 0;
  const r = new BoundedRunner(() => (runs++, Promise.resolve()), { minIntervalMs: 0 });
  for (let i = 0; i < 10; i++) r.retry(30);
  assert.equal(r.retryPending, true);
  await until(() => runs === 1);
  await sleep(80);
  assert.equal(runs, 1, "ten failures asked, one retry ran");
  assert.equal(r.retryPending, false);
  r.stop();
});
