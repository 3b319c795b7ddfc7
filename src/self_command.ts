/**
 * How to run this same weft program again as a child (an agent, a CNI call): the compiled binary runs
 * itself; under `deno run` the child is `deno run -A <main.ts>`. Either way the child enters through
 * main.ts, the entry point the binary has.
 *
 * @module
 */

/**
 * V8 flags weft runs with: baked into the compiled binary by `deno compile --v8-flags`, passed to
 * `deno run` for children started from source, and applied by an early re-exec when a user starts the
 * agent from source without them (src/cli/v8_flags.ts). They only take effect at process start (V8
 * sizes its heap then; `node:v8` setFlagsFromString at run time was measured to change nothing).
 *
 * - `--max-semi-space-size=1` (MB): every resync pass reads thousands of kernel entries into
 *   short-lived objects, and V8 grows its young generation to absorb that churn and keeps it. Capping
 *   it cut the agent's RSS at 5000 peers from ~200 MB to ~135-155 MB with no measurable CPU cost per
 *   pass (bench/convergence.ts, BENCHMARKS.md).
 * - `--heap-growing-percent=30`: with a small young generation, a pass's garbage is promoted, and V8
 *   let the old generation grow to ~2.5x the live heap (17 MB live, ~45 MB reserved at 5000 peers)
 *   before collecting it. Growing by 30 % at most keeps it near the live size: median RSS over the
 *   resync cycle ~112 -> ~102 MB, peak ~120 -> ~105 MB, CPU per pass within noise
 *   (bench/agent_scale.ts, BENCHMARKS.md).
 * - `--expose-gc`: lets the agent collect once, fully, when start-up is over (src/agent/resync.ts). The
 *   start's garbage — the Node list's text and objects, tens of MB at 5000 Nodes — otherwise stays
 *   until V8's memory reducer runs, ~30 s later (bench/kube_scale.ts's RSS over the quiet window).
 * - `--no-opt`: no TurboFan, V8's top-tier compiler; Maglev, the tier below it, still compiles hot code.
 *   The agent's work is short bursts (a list, a pass, an event), and TurboFan cost more than it gave
 *   there: its own code pages, its compiled code and its compile work. Measured with and without it, same
 *   machine (BENCHMARKS.md, "V8's top compiler"): agent RSS −3 to −5 MB at 500–5000 Nodes or peers,
 *   start CPU at 5000 etcd peers 0.87 → 0.76 s; the price is the largest policy recompiles (5000 pods ×
 *   500 policies on one node: ~1.2–1.8× slower); at 100–1000 pods within the runs' noise, and the udp
 *   backend's packet loop, bound by its system calls, moves as many packets a second either way.
 */
export const V8_FLAGS: readonly string[] = [
  "--max-semi-space-size=1",
  "--heap-growing-percent=30",
  "--expose-gc",
  "--no-opt",
];

/** {@linkcode V8_FLAGS} as the one argument `deno run` and `deno compile` take. */
export const V8_FLAGS_ARG = `--v8-flags=${V8_FLAGS.join(",")}`;

/**
 * Deno's options for every weft process, as `deno run` and `deno compile` take them: the V8 flags and
 * `--no-code-cache`. With its code cache Deno stores V8's compiled form of each module after a run and
 * hands it back on the next start: V8 then holds, from the start, the bytecode of every function that
 * run had compiled (for the agent, much of what an earlier start-up, list or pass ran once), and Deno
 * reads the cache through SQLite. Without it V8 compiles a function when it first runs. Measured on
 * the agent in kube mode, alternating runs with and without (BENCHMARKS.md, "Deno's code cache"):
 * settled RSS at 5000 Nodes 73.7–74.2 MB against 75.3–80.9, start 0.99–1.33 s against 1.34–1.72;
 * malloc'd memory after start-up −1.2 to −1.6 MB. A CNI call, which starts often and runs little,
 * was not measurably slower (ADD medians within the runs' spread of ±5 ms either way).
 */
export const DENO_FLAGS: readonly string[] = ["--no-code-cache", V8_FLAGS_ARG];

const MAIN = new URL("../main.ts", import.meta.url);

/** True in the compiled binary: its modules live inside it and its execPath is weft itself. */
export function isCompiled(): boolean {
  return !MAIN.protocol.startsWith("file") || !/\/deno$/.test(Deno.execPath());
}

/** Returns `[executable, ...leading args]` for running weft with further arguments. */
export function selfCommand(): [string, ...string[]] {
  const exe = Deno.execPath();
  if (isCompiled()) return [exe];
  return [exe, "run", "-A", "--no-check", ...DENO_FLAGS, MAIN.pathname];
}
