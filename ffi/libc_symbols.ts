/**
 * The few libc calls weft needs around netlink: switching the calling thread's network namespace, and
 * the ethtool ioctl that `weft doctor` uses to read offload settings.
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
  // int unshare(int flags);
  unshare: { parameters: ["i32"], result: "i32" },
  // int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const void *data);
  mount: { parameters: ["buffer", "buffer", "buffer", "u64", "pointer"], result: "i32" },
  // int umount2(const char *target, int flags);
  umount2: { parameters: ["buffer", "i32"], result: "i32" },
  // int socket(int domain, int type, int protocol);
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  // int ioctl(int fd, unsigned long request, void *arg);  (variadic in C; one pointer argument here)
  ioctl: { parameters: ["i32", "u64", "buffer"], result: "i32" },
  // int *__errno_location(void);
  __errno_location: { parameters: [], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;
