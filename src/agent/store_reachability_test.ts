import assert from "node:assert/strict";
import type { LeaseSource } from "../lease/source.ts";
import { AgentStatus } from "./status.ts";
import { StoreReachability } from "./store_reachability.ts";

function setup() {
  const status = new AgentStatus("kube");
  status.storeUp = true;
  const h = new StoreReachability({ kind: "kube" } as LeaseSource, status);
  const calls: string[] = [];
  h.onBack = () => calls.push("back");
  h.kick = () => calls.push("kick");
  return { status, h, calls };
}

Deno.test("while the watch fails, another witness's answer only kicks the watch; the watch's success says back", () => {
  const { status, h, calls } = setup();
  h.watchSaw(false);
  assert.equal(status.storeUp, false);
  h.set(true); // kube mode's probe read the config file: the API may still be down
  assert.equal(status.storeUp, false, "not 'reachable again' on the probe's word");
  assert.deepEqual(calls, ["kick"]);
  h.watchSaw(true);
  assert.equal(status.storeUp, true);
  assert.deepEqual(calls, ["kick", "back"]);
});

Deno.test("when only the probe saw the outage, its answer is enough; a failure from any witness counts", () => {
  const { status, h, calls } = setup();
  h.set(false, "probe timed out");
  assert.equal(status.storeUp, false);
  h.set(true);
  assert.equal(status.storeUp, true);
  assert.deepEqual(calls, ["back"]);
  h.watchSaw(true);
  h.set(false, "keeper: renewal failed");
  assert.equal(status.storeUp, false);
});
