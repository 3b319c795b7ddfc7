/**
 * The newcomer's path: `weft demo up` (what `./dev demo` runs) ends with an all-✓ ping matrix for 3 nodes
 * × 2 pods, and `weft demo down` leaves no namespace, process or file behind.
 *
 * The demo uses fixed names (`weft-demo-*`, /run/weft-demo): this test removes a running demo.
 */
import assert from "node:assert/strict";
import { netnsList } from "../ffi/mod.ts";
import { alive } from "../src/lab/lab.ts";
import { DEMO_DIR, loadState } from "../src/lab/demo_cluster.ts";
import { ROOT } from "./helpers/topology.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

async function weft(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--no-check", MAIN, ...args],
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

Deno.test({
  name:
    "weft demo up shows an all-✓ ping matrix for 3 nodes × 2 pods, and weft demo down leaves nothing behind",
  ignore: !ROOT,
  async fn() {
    let pids: number[] = [];
    try {
      const up = await weft("demo", "up", "--nodes", "3", "--pods", "2");
      assert.equal(up.code, 0, up.stdout + up.stderr);
      const m = up.stdout.match(/ping matrix: (\d+)\/(\d+) ✓/);
      assert.ok(m, up.stdout);
      assert.equal(m[1], "30");
      assert.equal(m[2], "30");
      assert.ok(!up.stdout.includes("✗"), up.stdout);
      assert.match(up.stdout, /n3\s+192\.168\.100\.13\s+10\.244\.\d+\.0\/24\s+vxlan\s+ready/);
      pids = loadState()?.pids.map((p) => p.pid) ?? [];
      assert.equal(pids.length, 4, "etcd and three agents");
    } finally {
      const down = await weft("demo", "down");
      assert.equal(down.code, 0, down.stderr);
    }
    assert.deepEqual(netnsList().filter((n) => n.startsWith("weft-demo-")), []);
    assert.deepEqual(pids.filter(alive), [], "no demo process is left running");
    assert.throws(() => Deno.statSync(DEMO_DIR), Deno.errors.NotFound);
  },
});
