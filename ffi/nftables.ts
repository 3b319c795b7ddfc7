/**
 * nftables through libnftables over FFI: {@linkcode nftRun} applies a whole script atomically (one
 * transaction) and returns nft's output; failures throw {@linkcode NftError} with nft's own message.
 * {@linkcode nftRunAsync} does the same off the JS thread, for scripts whose parsing and commit take
 * longer than an event loop may stall (a policy table of thousands of pods).
 *
 * @module
 */
import { cstr, readCString } from "./cmem.ts";
import { LibraryNotFoundError } from "./loader.ts";
import { LIBNFTABLES_SYMBOLS } from "./nftables_symbols.ts";

/** A rejected nft script. */
export class NftError extends Error {
  /** Creates the error with nft's message. */
  constructor(message: string) {
    super(`nftables: ${message}`);
    this.name = "NftError";
  }
}

let handle: Deno.DynamicLibrary<typeof LIBNFTABLES_SYMBOLS> | undefined;
/** Calls running off the JS thread ({@linkcode nftRunAsync}): the library is never unloaded under one. */
let inFlight = 0;
/** When the last call ended (performance.now()). */
let lastUsed = 0;

/**
 * How long libnftables must have gone unused before {@linkcode unloadNftablesIfIdle} unloads it. An agent
 * uses it in bursts — its first rules passes, then only when nftables' ruleset changed (host_rules.ts) or a
 * policy is applied — and in between it and the five libraries it pulls in (libnftnl, libmnl, libgmp,
 * libjansson, libxtables) held ~1.5 MB of the agent's RSS for nothing (measured: BENCHMARKS.md). The next
 * call loads it again, in a few milliseconds. Two `--iptables-resync` periods at the default.
 */
export const NFTABLES_IDLE_UNLOAD_MS = 10_000;

function nft(): Deno.DynamicLibrary<typeof LIBNFTABLES_SYMBOLS>["symbols"] {
  if (handle) return handle.symbols;
  const arch = Deno.build.arch === "aarch64" ? "aarch64-linux-gnu" : "x86_64-linux-gnu";
  let last: unknown;
  for (const p of ["libnftables.so.1", `/usr/lib/${arch}/libnftables.so.1`]) {
    try {
      handle = Deno.dlopen(p, LIBNFTABLES_SYMBOLS);
      return handle.symbols;
    } catch (err) {
      last = err;
    }
  }
  throw new LibraryNotFoundError("libnftables.so.1", "libnftables1", { cause: last });
}

/** After a call. */
function released(): void {
  lastUsed = performance.now();
}

/**
 * Unloads libnftables when it is loaded, no call is running off the JS thread, and none ended in the last
 * `idleMs` (see {@linkcode NFTABLES_IDLE_UNLOAD_MS}); returns whether it did. The next call loads it again.
 * Called by whoever knows it is idle (a rules pass that read nothing), not by a timer: a CLI command or a
 * test never waits on one.
 */
export function unloadNftablesIfIdle(idleMs = NFTABLES_IDLE_UNLOAD_MS): boolean {
  if (!handle || inFlight > 0 || performance.now() - lastUsed < idleMs) return false;
  handle.close();
  handle = undefined;
  return true;
}

/** Whether libnftables is loaded now (for tests). */
export function nftablesLoaded(): boolean {
  return handle !== undefined;
}

/** Loads libnftables (for `weft doctor --preflight`); throws {@linkcode LibraryNotFoundError}. */
export function loadNftables(): Record<string, unknown> {
  const symbols = nft();
  released();
  return symbols;
}

/** NFT_CTX_OUTPUT_JSON: `list` commands answer in nft's JSON schema. */
const OUTPUT_JSON = 1 << 4;

/**
 * Runs an nft script (in the calling thread's network namespace) and returns its output; with `json`,
 * `list` commands answer in nft's JSON schema (as `nft -j`).
 */
export function nftRun(script: string, opts: { json?: boolean } = {}): string {
  const l = nft();
  const ctx = l.nft_ctx_new(0);
  if (ctx === null) {
    released();
    throw new NftError("nft_ctx_new failed");
  }
  try {
    if (opts.json) l.nft_ctx_output_set_flags(ctx, OUTPUT_JSON);
    l.nft_ctx_buffer_output(ctx);
    l.nft_ctx_buffer_error(ctx);
    const rc = l.nft_run_cmd_from_buffer(ctx, cstr(script));
    if (rc !== 0) throw new NftError(readCString(l.nft_ctx_get_error_buffer(ctx)).trim() || `rc ${rc}`);
    return readCString(l.nft_ctx_get_output_buffer(ctx));
  } finally {
    l.nft_ctx_free(ctx);
    released();
  }
}

/**
 * {@linkcode nftRun} on a thread of Deno's blocking pool: the JS thread keeps serving while nft parses
 * and the kernel commits. The context — and with it the netlink socket the script goes through — is
 * made inside `enter` (e.g. a function that switches into a network namespace and back), so the script
 * applies to the namespace `enter` chose, whichever thread runs it.
 */
export async function nftRunAsync(
  script: string,
  enter: <T>(fn: () => T) => T = (fn) => fn(),
): Promise<string> {
  const l = nft();
  inFlight++;
  let ctx: Deno.PointerValue = null;
  try {
    ctx = enter(() => l.nft_ctx_new(0));
    if (ctx === null) throw new NftError("nft_ctx_new failed");
    l.nft_ctx_buffer_output(ctx);
    l.nft_ctx_buffer_error(ctx);
    const buf = cstr(script); // referenced until the call returns
    const rc = await l.nft_run_cmd_from_buffer_nb(ctx, buf);
    if (rc !== 0) throw new NftError(readCString(l.nft_ctx_get_error_buffer(ctx)).trim() || `rc ${rc}`);
    return readCString(l.nft_ctx_get_output_buffer(ctx));
  } finally {
    if (ctx !== null) l.nft_ctx_free(ctx);
    inFlight--;
    released();
  }
}
