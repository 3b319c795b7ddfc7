import assert from "node:assert/strict";
import { SystemdNotifier } from "./systemd_notify.ts";

function recorder() {
  const sent: string[] = [];
  const send = (name: string, data: Uint8Array) => sent.push(`${name} ${new TextDecoder().decode(data)}`);
  return { sent, send };
}

Deno.test("READY=1 goes once readiness holds, with a STATUS line; STOPPING=1 on stop", async () => {
  const { sent, send } = recorder();
  const n = new SystemdNotifier("@notify", send);
  let ready = false;
  const done = n.readyWhen(
    () => ready,
    () => "ready: lease 10.244.3.0/24\n(x)",
    new AbortController().signal,
  );
  await new Promise((r) => setTimeout(r, 250));
  assert.deepEqual(sent, [], "nothing before ready");
  ready = true;
  await done;
  assert.deepEqual(sent, ["@notify READY=1\nSTATUS=ready: lease 10.244.3.0/24 (x)"]);
  n.stopping();
  assert.match(sent[1]!, /^@notify STOPPING=1\nSTATUS=/);
});

Deno.test("without NOTIFY_SOCKET nothing is sent; a failing socket is reported once and never throws", async () => {
  const { sent, send } = recorder();
  const off = new SystemdNotifier(undefined, send);
  await off.readyWhen(() => true, () => "", new AbortController().signal);
  off.stopping();
  assert.deepEqual(sent, []);
  let calls = 0;
  const broken = new SystemdNotifier("@gone", () => {
    calls++;
    throw new Error("sendto @gone: ECONNREFUSED");
  });
  assert.equal(broken.notify({ READY: "1" }), false);
  broken.stopping();
  assert.equal(calls, 2);
});

Deno.test("an abort before readiness sends nothing", async () => {
  const { sent, send } = recorder();
  const stop = new AbortController();
  const done = new SystemdNotifier("@n", send).readyWhen(() => false, () => "", stop.signal);
  stop.abort();
  await done;
  assert.deepEqual(sent, []);
});
