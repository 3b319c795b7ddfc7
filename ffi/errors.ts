/**
 * Netlink errors as a typed {@linkcode NetlinkError}: the operation, the kernel's raw errno and its name.
 *
 * libnl turns the kernel's errno into its own `NLE_*` codes, losing detail (ESRCH and ENOENT both become
 * "object not found"). The socket's error callback (see netlink.ts) records the raw errno from the
 * kernel's NLMSG_ERROR before libnl maps it; where none was recorded, the NLE code is mapped back.
 *
 * @module
 */

/** errno numbers (Linux, x86_64 and aarch64 agree on these) to names. */
export const ERRNO_NAMES: Readonly<Record<number, string>> = {
  1: "EPERM",
  2: "ENOENT",
  3: "ESRCH",
  4: "EINTR",
  5: "EIO",
  6: "ENXIO",
  9: "EBADF",
  11: "EAGAIN",
  12: "ENOMEM",
  13: "EACCES",
  14: "EFAULT",
  16: "EBUSY",
  17: "EEXIST",
  19: "ENODEV",
  22: "EINVAL",
  28: "ENOSPC",
  34: "ERANGE",
  61: "ENODATA",
  75: "EOVERFLOW",
  77: "EBADFD",
  92: "ENOPROTOOPT",
  93: "EPROTONOSUPPORT",
  95: "EOPNOTSUPP",
  97: "EAFNOSUPPORT",
  98: "EADDRINUSE",
  99: "EADDRNOTAVAIL",
  100: "ENETDOWN",
  101: "ENETUNREACH",
  105: "ENOBUFS",
  110: "ETIMEDOUT",
  111: "ECONNREFUSED",
  113: "EHOSTUNREACH",
};

/** libnl's NLE_* codes mapped back to the most likely errno, for errors no callback saw. */
const NLE_TO_ERRNO: Readonly<Record<number, number>> = {
  3: 4, // NLE_INTR → EINTR
  4: 9, // NLE_BAD_SOCK → EBADF
  5: 11, // NLE_AGAIN → EAGAIN
  6: 12, // NLE_NOMEM → ENOMEM
  7: 17, // NLE_EXIST → EEXIST
  8: 22, // NLE_INVAL → EINVAL
  9: 34, // NLE_RANGE → ERANGE
  10: 90, // NLE_MSGSIZE → EMSGSIZE
  11: 95, // NLE_OPNOTSUPP → EOPNOTSUPP
  12: 97, // NLE_AF_NOSUPPORT → EAFNOSUPPORT
  13: 2, // NLE_OBJ_NOTFOUND → ENOENT
  14: 61, // NLE_NOATTR → ENODATA
  16: 75, // NLE_AF_MISMATCH → EOVERFLOW (closest)
  20: 99, // NLE_NOADDR → EADDRNOTAVAIL
  25: 16, // NLE_BUSY → EBUSY
  27: 13, // NLE_NOACCESS → EACCES
  28: 1, // NLE_PERM → EPERM
  31: 19, // NLE_NODEV → ENODEV
};

/** The NLE code for "object not found", which libnl reports for ENOENT and ESRCH alike. */
export const NLE_OBJ_NOTFOUND = 12;

/** A failed netlink (or namespace) operation. */
export class NetlinkError extends Error {
  /** The errno name, e.g. `"EEXIST"`, or `"E<n>"` for one not in {@linkcode ERRNO_NAMES}. */
  readonly code: string;

  /**
   * @param op what was being done, e.g. `"route replace 10.244.2.0/24"`
   * @param errno the kernel's (positive) errno
   * @param nlerr libnl's (positive) NLE code, 0 when the error did not come from libnl
   * @param detail libnl's or libc's message
   */
  constructor(readonly op: string, readonly errno: number, readonly nlerr: number, detail: string) {
    const code = ERRNO_NAMES[errno] ?? `E${errno}`;
    super(`${op}: ${detail} (${code})`);
    this.name = "NetlinkError";
    this.code = code;
  }

  /** True for "already exists". */
  get exists(): boolean {
    return this.errno === 17;
  }

  /** True for the errors that mean "no such object/device" (the caller may treat a delete as done). */
  get notFound(): boolean {
    return this.errno === 2 || this.errno === 3 || this.errno === 19 || this.errno === 99 ||
      this.nlerr === NLE_OBJ_NOTFOUND;
  }
}

/** Maps an NLE code to an errno when the kernel's own errno was not captured. */
export function errnoFromNle(nlerr: number): number {
  return NLE_TO_ERRNO[nlerr] ?? 0;
}
