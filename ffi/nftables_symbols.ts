/**
 * Symbol table for libnftables.so.1 (Debian's libnftables1): run nft scripts without a subprocess.
 *
 * @module
 */

/** libnftables symbols. */
export const LIBNFTABLES_SYMBOLS = {
  // struct nft_ctx *nft_ctx_new(uint32_t flags);
  nft_ctx_new: { parameters: ["u32"], result: "pointer" },
  // void nft_ctx_free(struct nft_ctx *ctx);
  nft_ctx_free: { parameters: ["pointer"], result: "void" },
  // int nft_ctx_buffer_output(struct nft_ctx *ctx);
  nft_ctx_buffer_output: { parameters: ["pointer"], result: "i32" },
  // int nft_ctx_buffer_error(struct nft_ctx *ctx);
  nft_ctx_buffer_error: { parameters: ["pointer"], result: "i32" },
  // const char *nft_ctx_get_output_buffer(struct nft_ctx *ctx);
  nft_ctx_get_output_buffer: { parameters: ["pointer"], result: "pointer" },
  // const char *nft_ctx_get_error_buffer(struct nft_ctx *ctx);
  nft_ctx_get_error_buffer: { parameters: ["pointer"], result: "pointer" },
  // void nft_ctx_output_set_flags(struct nft_ctx *ctx, unsigned int flags);
  nft_ctx_output_set_flags: { parameters: ["pointer", "u32"], result: "void" },
  // int nft_run_cmd_from_buffer(struct nft_ctx *nft, const char *buf);
  nft_run_cmd_from_buffer: { parameters: ["pointer", "buffer"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;
