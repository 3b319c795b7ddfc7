/**
 * weft's V8 flags for an agent started from source the way a user types it (`deno run -A main.ts agent`).
 *
 * V8 reads heap-sizing flags only when the process starts, so they cannot be set from inside; the
 * compiled binary has them baked in (`deno compile --v8-flags`, tools/compile.ts) and children weft starts
 * itself get them on their command line (self_command.ts). For everything else main.ts calls
 * {@linkcode ensureV8Flags} first thing: when a flag is missing from both `--v8-flags` on the command
 * line and `DENO_V8_FLAGS`, the process replaces itself (`execve`: same pid, same arguments, nothing
 * loaded yet but main.ts) with `DENO_V8_FLAGS` carrying the missing flags, and `--no-code-cache` added to
 * `deno run`'s options when absent (Deno's other option weft runs with: self_command.ts `DENO_FLAGS`). A
 * flag the user set (to any value) is left as the user set it. This costs one Deno start-up (~30 ms) once.
 *
 * @module
 */
import { DENO_FLAGS, isCompiled, V8_FLAGS } from "../self_command.ts";

/** Set in the environment of the re-executed process (and so of its children): never re-execute twice. */
export const REEXEC_MARK = "WEFT_V8_FLAGS_APPLIED";

/** Flag names (`--max-semi-space-size`) set by `--v8-flags=` arguments and by `DENO_V8_FLAGS`. */
export function v8FlagsGiven(cmdline: string[], env: string | undefined): Set<string> {
  const names = new Set<string>();
  const add = (list: string) => {
    for (const f of list.split(",")) if (f.trim()) names.add(f.trim().split("=")[0]!.replace(/_/g, "-"));
  };
  // Only deno's own options count: after its subcommand (`run`, `eval`) and before the script; what
  // follows the script belongs to weft.
  for (const a of cmdline.slice(cmdline[1]?.startsWith("-") ? 1 : 2)) {
    if (a.startsWith("--v8-flags=")) add(a.slice("--v8-flags=".length));
    else if (!a.startsWith("-")) break;
  }
  if (env) add(env);
  return names;
}

/** The flags of {@linkcode V8_FLAGS} not given by the command line or the environment. */
export function missingV8Flags(cmdline: string[], env: string | undefined): string[] {
  const given = v8FlagsGiven(cmdline, env);
  return V8_FLAGS.filter((f) => !given.has(f.split("=")[0]!));
}

/** Deno's options in {@linkcode DENO_FLAGS} besides the V8 flags (`--no-code-cache`). */
const DENO_SWITCHES = DENO_FLAGS.filter((f) => !f.startsWith("--v8-flags="));

/**
 * `cmdline` with `deno run`'s options of {@linkcode DENO_SWITCHES} it lacks, placed right after `run`
 * (only `deno run` is changed: another subcommand may not take them).
 */
export function withDenoSwitches(cmdline: string[]): string[] {
  if (cmdline[1] !== "run") return cmdline;
  const options: string[] = [];
  for (const a of cmdline.slice(2)) {
    if (!a.startsWith("-")) break; // the script: what follows belongs to weft
    options.push(a);
  }
  const missing = DENO_SWITCHES.filter((s) => !options.includes(s));
  return [...cmdline.slice(0, 2), ...missing, ...cmdline.slice(2)];
}

/** NUL-terminated copies of `strings` and a NULL-terminated pointer array over them (kept alive by the caller). */
function cStrings(strings: string[]): { bufs: Uint8Array[]; ptrs: BigUint64Array } {
  const enc = new TextEncoder();
  const bufs = strings.map((s) => enc.encode(s + "\0"));
  const ptrs = new BigUint64Array(bufs.length + 1);
  bufs.forEach((b, i) => ptrs[i] = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(b))));
  return { bufs, ptrs };
}

/**
 * Re-executes this `deno run` process with weft's V8 flags when some are missing (see the module doc).
 * Returns only when nothing needs doing, or when `execve` failed (the agent then runs with V8's
 * defaults, as before this existed).
 */
export function ensureV8Flags(): void {
  // Once only: should a runtime ever ignore DENO_V8_FLAGS, the flags would look missing again and the
  // process would re-execute itself forever.
  if (isCompiled() || Deno.env.get(REEXEC_MARK)) return;
  let cmdline: string[];
  try {
    cmdline = Deno.readTextFileSync("/proc/self/cmdline").split("\0").slice(0, -1);
  } catch {
    return; // no procfs: cannot rebuild the command line
  }
  const env = Deno.env.get("DENO_V8_FLAGS");
  const missing = missingV8Flags(cmdline, env);
  if (!missing.length || !cmdline.length) return;
  const vars = {
    ...Deno.env.toObject(),
    DENO_V8_FLAGS: [env, ...missing].filter(Boolean).join(","),
    [REEXEC_MARK]: "1",
  };
  const argv = cStrings(withDenoSwitches(cmdline));
  const envp = cStrings(Object.entries(vars).map(([k, v]) => `${k}=${v}`));
  const path = new TextEncoder().encode(Deno.execPath() + "\0");
  let libc;
  try {
    libc = Deno.dlopen("libc.so.6", {
      execve: { parameters: ["buffer", "buffer", "buffer"], result: "i32" },
    });
  } catch {
    return; // no FFI permission or no glibc: run with V8's defaults
  }
  libc.symbols.execve(path, argv.ptrs, envp.ptrs);
  // Only reached when execve failed.
  libc.close();
  void argv.bufs;
  void envp.bufs;
}
