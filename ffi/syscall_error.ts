/**
 * {@linkcode SyscallError}: a failed libc call (TUN, sockets, poll), with the errno and its name, so
 * callers can tell "would block" or "no such device" from real failures without parsing messages. It loads
 * no library and no symbol table (the CNI plugin's raw netlink uses it too); `failSyscall`, which reads
 * libc's errno, lives in loader.ts.
 *
 * @module
 */
import { ERRNO_NAMES } from "./errors.ts";

/** errno values the packet paths test for. */
export const ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EBADF: 9,
  EAGAIN: 11,
  EBUSY: 16,
  EINVAL: 22,
  EADDRINUSE: 98,
  EADDRNOTAVAIL: 99,
  ENOBUFS: 105,
  ECONNREFUSED: 111,
} as const;

/** A libc call that failed. */
export class SyscallError extends Error {
  /** The errno name, e.g. `"EBUSY"`, or `"E<n>"`. */
  readonly code: string;

  /**
   * @param op what was being done, e.g. `"TUNSETIFF flannel0"`
   * @param errno the (positive) errno
   */
  constructor(readonly op: string, readonly errno: number) {
    const code = ERRNO_NAMES[errno] ?? `E${errno}`;
    super(`${op}: ${code}`);
    this.name = "SyscallError";
    this.code = code;
  }
}
