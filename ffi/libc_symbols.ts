/**
 * The few libc calls weft needs around netlink: switching the calling thread's network namespace.
 *
 * None of these may be `nonblocking`: setns(2) must run on the JS thread itself, so that a netlink
 * socket opened right after it lives in the target namespace.
 *
 * @module
 */

/** libc.so.6 symbols. */
export const LIBC_SYMBOLS = {
  // int open(const char *pathname, int flags);
  open: { parameters: ["buffer", "i32"], result: "i32" },
  // int close(int fd);
  close: { parameters: ["i32"], result: "i32" },
  // int setns(int fd, int nstype);
  setns: { parameters: ["i32", "i32"], result: "i32" },
  // int *__errno_location(void);
  __errno_location: { parameters: [], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;
