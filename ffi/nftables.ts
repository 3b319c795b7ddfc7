/**
 * nftables through libnftables over FFI: {@linkcode nftRun} applies a whole script atomically (one
 * transaction) and returns nft's output; failures throw {@linkcode NftError} with nft's own message.
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

let lib: Deno.DynamicLibrary<typeof LIBNFTABLES_SYMBOLS>["symbols"] | undefined;

function nft(): Deno.DynamicLibrary<typeof LIBNFTABLES_SYMBOLS>["symbols"] {
  if (lib) return lib;
  const arch = Deno.build.arch === "aarch64" ? "aarch64-linux-gnu" : "x86_64-linux-gnu";
  let last: unknown;
  for (const p of ["libnftables.so.1", `/usr/lib/${arch}/libnftables.so.1`]) {
    try {
      return lib = Deno.dlopen(p, LIBNFTABLES_SYMBOLS).symbols;
    } catch (err) {
      last = err;
    }
  }
  throw new LibraryNotFoundError("libnftables.so.1", "libnftables1", { cause: last });
}

/** Loads libnftables (for `weft doctor --preflight`); throws {@linkcode LibraryNotFoundError}. */
export function loadNftables(): Record<string, unknown> {
  return nft();
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
  if (ctx === null) throw new NftError("nft_ctx_new failed");
  try {
    if (opts.json) l.nft_ctx_output_set_flags(ctx, OUTPUT_JSON);
    l.nft_ctx_buffer_output(ctx);
    l.nft_ctx_buffer_error(ctx);
    const rc = l.nft_run_cmd_from_buffer(ctx, cstr(script));
    if (rc !== 0) throw new NftError(readCString(l.nft_ctx_get_error_buffer(ctx)).trim() || `rc ${rc}`);
    return readCString(l.nft_ctx_get_output_buffer(ctx));
  } finally {
    l.nft_ctx_free(ctx);
  }
}
