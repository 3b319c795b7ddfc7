/**
 * The newcomer's path: `weft demo up` (what `./dev demo` runs) ends with an all-✓ ping matrix for 3 nodes
 * × 2 pods and prints the commands to look inside, which are the README's (its `docs-check: demo` blocks),
 * and which work as written (`./dev weft …` from the checkout); `weft demo down` leaves no namespace,
 * process or file behind.
 *
 * The demo uses fixed names (`weft-demo-*`, /run/weft-demo): this test removes a running demo.
 */
import assert from "node:assert/strict";
import { netnsList } from "../ffi/mod.ts";
import { alive } from "../src/lab/lab.ts";
import { DEMO_DIR, loadState } from "../src/lab/demo_cluster.ts";
import { allDocBlocks, REPO } from "./helpers/docs.ts";
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

/** What each command of the README's demo block must show (keyed by the weft subcommand). */
const EXPECT: Record<string, (out: string) => void> = {
  status: (out) => assert.match(out, /ready\s+yes\n(.|\n)*peers\s+2 programmed \/ 2 leases known/),
  doctor: (out) => {
    assert.match(out, /✓ subnet_env .*\/run\/weft-demo\/n1\/subnet\.env/);
    assert.match(out, /✓ etcd {9}etcd answers at http:\/\/192\.168\.100\.1:2379/);
    assert.match(out, /\d+ ok, \d+ warnings, 0 failures/);
  },
  leases: (out) => {
    const rows = out.trim().split("\n").slice(1);
    assert.equal(rows.length, 3, out);
    for (const r of rows) assert.match(r, /^10\.244\.\d+\.0\/24 +192\.168\.100\.1[123] +vxlan .* ok$/);
    const third = rows.map((r) => Number(r.split(".")[2]));
    assert.deepEqual(third, [...third].sort((a, b) => a - b), "by address");
  },
};

/** The README's demo block: the demo printed exactly these lines, and each works and shows what it should. */
async function readmeCommands(demoOut: string): Promise<void> {
  const blocks = allDocBlocks().filter((b) => b.kind === "demo");
  assert.ok(blocks.length, "the README has a docs-check: demo block");
  for (const line of blocks.flatMap((b) => b.lines)) {
    assert.ok(demoOut.includes(`  ${line}\n`), `the demo printed: ${line}\n${demoOut}`);
    const out = await new Deno.Command("sh", {
      args: ["-c", line],
      cwd: REPO,
      stdout: "piped",
      stderr: "piped",
    })
      .output();
    const text = new TextDecoder().decode(out.stdout);
    assert.equal(out.code, 0, `${line}: ${text}${new TextDecoder().decode(out.stderr)}`);
    const sub = /\.\/dev weft (\w+)/.exec(line)?.[1] ?? "";
    assert.ok(EXPECT[sub], `a check for ${line}`);
    EXPECT[sub]!(text);
  }
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
      await readmeCommands(up.stdout);
    } finally {
      const down = await weft("demo", "down");
      assert.equal(down.code, 0, down.stderr);
    }
    assert.deepEqual(netnsList().filter((n) => n.startsWith("weft-demo-")), []);
    assert.deepEqual(pids.filter(alive), [], "no demo process is left running");
    assert.throws(() => Deno.statSync(DEMO_DIR), Deno.errors.NotFound);
  },
});
