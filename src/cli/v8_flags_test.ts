import assert from "node:assert/strict";
import { missingV8Flags, REEXEC_MARK, v8FlagsGiven, withDenoSwitches } from "./v8_flags.ts";
import { V8_FLAGS } from "../self_command.ts";

const ROOT = new URL("../..", import.meta.url).pathname;
const MODULE = new URL("./v8_flags.ts", import.meta.url).href;

Deno.test("flags count from deno's --v8-flags and DENO_V8_FLAGS, not from arguments after the script", () => {
  const given = v8FlagsGiven(
    [
      "deno",
      "run",
      "-A",
      "--v8-flags=--max-semi-space-size=4,--trace_gc",
      "main.ts",
      "agent",
      "--v8-flags=--x",
    ],
    "--optimize-for-size",
  );
  assert.deepEqual([...given].sort(), ["--max-semi-space-size", "--optimize-for-size", "--trace-gc"]);
});

Deno.test("a flag the user set to another value is not missing; an absent one is", () => {
  assert.deepEqual(
    missingV8Flags(["deno", "run", "-A", "--v8-flags=--max-semi-space-size=8", "main.ts"], undefined),
    V8_FLAGS.filter((f) => !f.startsWith("--max-semi-space-size=")),
  );
  assert.deepEqual(missingV8Flags(["deno", "run", "-A", "main.ts", "agent"], undefined), [...V8_FLAGS]);
  assert.deepEqual(missingV8Flags(["deno", "run", "main.ts"], V8_FLAGS.join(",")), []);
});

Deno.test("the re-executed `deno run` gets --no-code-cache among deno's options, once; weft's own arguments stay", () => {
  assert.deepEqual(withDenoSwitches(["deno", "run", "-A", "main.ts", "agent", "--no-code-cache"]), [
    "deno",
    "run",
    "--no-code-cache",
    "-A",
    "main.ts",
    "agent",
    "--no-code-cache",
  ]);
  const given = ["deno", "run", "-A", "--no-code-cache", "main.ts", "agent"];
  assert.deepEqual(withDenoSwitches(given), given);
  const evaluated = ["deno", "eval", "1"];
  assert.deepEqual(withDenoSwitches(evaluated), evaluated, "only deno run is changed");
});

/** Starts `args` (a deno command line), waits for `ready` on stderr, returns pid, environment and stderr so far. */
async function startAndInspect(args: string[], ready: RegExp, env: Record<string, string> = {}) {
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: ROOT,
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let err = "";
  const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
  const deadline = Date.now() + 30_000;
  while (!ready.test(err) && Date.now() < deadline) {
    const r = await reader.read();
    if (r.done) break;
    err += r.value;
  }
  const environ = Deno.readTextFileSync(`/proc/${child.pid}/environ`).split("\0");
  const cmdline = Deno.readTextFileSync(`/proc/${child.pid}/cmdline`).split("\0").slice(0, -1);
  const flags = environ.find((e) => e.startsWith("DENO_V8_FLAGS="))?.slice("DENO_V8_FLAGS=".length);
  child.kill("SIGKILL");
  await child.status;
  reader.releaseLock();
  await child.stdout.cancel();
  await child.stderr.cancel().catch(() => {});
  return { pid: child.pid, flags, cmdline, stderr: err };
}

Deno.test("`deno run -A main.ts agent`, as the README runs it, carries weft's V8 flags in its own pid", async () => {
  // etcd is unreachable, so the agent keeps retrying its first read: long enough to look at it.
  const dir = await Deno.makeTempDir();
  try {
    const r = await startAndInspect(
      [
        "run",
        "-A",
        "main.ts",
        "agent",
        "--etcd-endpoints=http://127.0.0.1:9",
        `--subnet-file=${dir}/subnet.env`,
      ],
      /retrying|failed/,
    );
    assert.match(r.stderr, /reading the network config: etcd is unreachable at http:\/\/127\.0\.0\.1:9/);
    assert.equal(r.flags, V8_FLAGS.join(","));
    assert.deepEqual(
      r.cmdline.slice(1, 4),
      ["run", "--no-code-cache", "-A"],
      "and without Deno's code cache",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("the re-executed process really runs with the flags: V8's young generation stays capped", async () => {
  const code = `
    import v8 from "node:v8";
    console.error("start", Deno.pid);
    const { ensureV8Flags } = await import("${MODULE}");
    ensureV8Flags();
    let keep = [];
    for (let i = 0; i < 1_000_000; i++) { keep.push({ i, s: "x" + i }); if (keep.length > 50000) keep = []; }
    const ns = v8.getHeapSpaceStatistics().find((s) => s.space_name === "new_space");
    console.error("new_space", ns.space_size);
    setInterval(() => {}, 1000);`;
  const r = await startAndInspect(["eval", code], /new_space \d+/);
  const starts = [...r.stderr.matchAll(/start (\d+)/g)].map((m) => Number(m[1]));
  assert.deepEqual(starts, [r.pid, r.pid], "ran twice, in the same process");
  const size = Number(r.stderr.match(/new_space (\d+)/)![1]);
  // --max-semi-space-size=1: two 1 MB semi-spaces, which V8 reports as 2-2.5 MB (a page or two over,
  // depending on when its scavenges ran); without the flag this loop grows the young generation to
  // ~32 MB (both measured). A quarter of that tells the two apart on any machine.
  assert.ok(size <= 8 * 1024 * 1024, `new space ${size} bytes`);
});

Deno.test("flags the user gave on the command line are kept and nothing is re-executed", async () => {
  const code = `
    console.error("start", Deno.pid);
    const { ensureV8Flags } = await import("${MODULE}");
    ensureV8Flags();
    console.error("after");
    setInterval(() => {}, 1000);`;
  // Every flag weft wants, each with a value of the user's own (a switch, as it is).
  const own = V8_FLAGS.map((f) => f.includes("=") ? `${f.split("=")[0]}=4` : f).join(",");
  const r = await startAndInspect(["eval", `--v8-flags=${own}`, code], /after/);
  assert.equal([...r.stderr.matchAll(/start/g)].length, 1);
  assert.equal(r.flags, undefined);
});

Deno.test("a process that was re-executed once is never re-executed again, even if the flags look missing", async () => {
  const code = `
    console.error("start", Deno.pid);
    const { ensureV8Flags } = await import("${MODULE}");
    ensureV8Flags();
    console.error("after");
    setInterval(() => {}, 1000);`;
  const r = await startAndInspect(["eval", code], /after/, { [REEXEC_MARK]: "1" });
  assert.equal([...r.stderr.matchAll(/start/g)].length, 1);
  assert.equal(r.flags, undefined);
});
