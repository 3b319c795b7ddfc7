/**
 * Runs the whole test suite (`deno test`) and closes with one plain summary line,
 * `tests: N passed, N failed, N skipped`, then checks that no test left a weft namespace behind.
 *
 * @module
 */
import { TEST_PREFIX_ROOT } from "./helpers/names.ts";

// One run id for every test of this run: leftovers are looked for under exactly this run's prefix (other
// runs on the same machine have their own).
const runId = Math.floor(Math.random() * 36 ** 4).toString(36).padStart(4, "0");
const runPrefix = `${TEST_PREFIX_ROOT}${runId}-`;
const args = ["test", "-A", "--no-check=remote", ...Deno.args];
const child = new Deno.Command(Deno.execPath(), {
  args,
  env: { WEFT_TEST_RUN: runId },
  stdout: "piped",
  stderr: "inherit",
}).spawn();

// Echo deno's output as it comes and keep the tail to read its closing line.
let tail = "";
const decoder = new TextDecoder();
for await (const chunk of child.stdout) {
  await Deno.stdout.write(chunk);
  tail = (tail + decoder.decode(chunk, { stream: true })).slice(-4000);
}
const { code } = await child.status;

// deno test closes with e.g. "ok | 12 passed (3 steps) | 0 failed | 2 ignored (4s)".
// deno-lint-ignore no-control-regex -- strip ANSI colour codes
const plain = tail.replace(/\x1b\[[0-9;]*m/g, "");
const m = plain.match(/(ok|FAILED) \| (\d+) passed[^|]*\| (\d+) failed(?:[^|]*\| (\d+) ignored)?/);

const leftovers = new TextDecoder().decode(
  (await new Deno.Command("ip", { args: ["netns", "list"], stdout: "piped", stderr: "null" }).output())
    .stdout,
).split("\n").filter((l) => l.startsWith(runPrefix));

if (m) {
  console.log(`tests: ${m[2]} passed, ${m[3]} failed, ${m[4] ?? 0} skipped`);
} else {
  console.log(`tests: could not read deno test's summary (exit ${code})`);
}
if (leftovers.length) {
  console.log(`leftover test namespaces: ${leftovers.join(" ")}`);
  Deno.exit(1);
}
Deno.exit(code !== 0 ? code : m ? 0 : 1);
