/**
 * The handful of Linux system calls a raw rtnetlink socket needs (socket, bind, sendto, recvfrom,
 * setsockopt, close, openat, setns), made through libc's `syscall(2)` wrapper: one FFI symbol for all of them.
 *
 * Why not one FFI symbol per libc function, as ffi/loader.ts binds libnl: in a short-lived process (a CNI
 * call) binding costs more than using. The first `Deno.dlopen` of a process costs ~2 ms and every
 * further symbol ~0.2 ms (a call trampoline is compiled per symbol); libnl's ADD path bound ~60 of them.
 * Here the whole netlink layer binds two: `syscall` and `__errno_location`.
 *
 * `syscall` is variadic in C; it is declared here with seven 64-bit integer parameters and pointers are
 * passed as their addresses. That is how glibc's (assembly) `syscall` reads its arguments on x86_64 and
 * aarch64 — it moves them from the argument registers into the kernel's — so no argument is lost or
 * reinterpreted. Buffers passed by address must be ArrayBuffer-backed (off the V8 heap, never moved):
 * {@linkcode addressOf} takes only those.
 *
 * Failures are ffi's {@linkcode SyscallError} (op, errno and its name). Nothing is loaded at import time. All calls are blocking and run on the JS thread, which is what
 * {@linkcode inNetns} needs: setns(2) switches the calling thread.
 *
 * @module
 */

import { SOL_NETLINK } from "../nl_consts.ts";
import { SyscallError } from "../syscall_error.ts";

export { SyscallError };

const SYMBOLS = {
  // long syscall(long number, ...);  (variadic in C; see the module comment)
  syscall: { parameters: ["i64", "i64", "i64", "i64", "i64", "i64", "i64"], result: "i64" },
  // int *__errno_location(void);
  __errno_location: { parameters: [], result: "pointer" },
  // The same `syscall`, run on a thread of Deno's blocking pool (see {@linkcode sysAsync}).
  syscall_nb: {
    name: "syscall",
    parameters: ["i64", "i64", "i64", "i64", "i64", "i64", "i64"],
    result: "i64",
    nonblocking: true,
  },
} as const satisfies Deno.ForeignLibraryInterface;

type Nr = Record<
  "close" | "socket" | "bind" | "sendto" | "recvfrom" | "setsockopt" | "openat" | "setns",
  number
>;

/** System call numbers (asm/unistd.h) of the two architectures weft is built for. */
const NR: Record<"x86_64" | "aarch64", Nr> = {
  x86_64: {
    close: 3,
    socket: 41,
    bind: 49,
    sendto: 44,
    recvfrom: 45,
    setsockopt: 54,
    openat: 257,
    setns: 308,
  },
  aarch64: {
    close: 57,
    socket: 198,
    bind: 200,
    sendto: 206,
    recvfrom: 207,
    setsockopt: 208,
    openat: 56,
    setns: 268,
  },
};

let lib: Deno.DynamicLibrary<typeof SYMBOLS>["symbols"] | undefined;
let nr: Nr | undefined;
let errnoView: Deno.UnsafePointerView | undefined;

function load(): Deno.DynamicLibrary<typeof SYMBOLS>["symbols"] {
  if (lib) return lib;
  const arch = Deno.build.arch;
  if (arch !== "x86_64" && arch !== "aarch64") throw new Error(`weft: unsupported architecture ${arch}`);
  nr = NR[arch];
  lib = Deno.dlopen("libc.so.6", SYMBOLS).symbols;
  const loc = lib.__errno_location();
  if (loc === null) throw new Error("weft: __errno_location() returned NULL");
  errnoView = new Deno.UnsafePointerView(loc); // per thread, and every call runs on the JS thread
  return lib;
}

/** The address of an ArrayBuffer-backed byte array, as the integer `syscall` takes. */
export function addressOf(buf: Uint8Array): bigint {
  const p = Deno.UnsafePointer.of(buf);
  return p === null ? 0n : BigInt(Deno.UnsafePointer.value(p));
}

/** Makes system call `name`; returns its result, or `-errno` when it failed. */
export function sys(name: keyof Nr, a = 0n, b = 0n, c = 0n, d = 0n, e = 0n, f = 0n): number {
  const l = load();
  const rc = Number(l.syscall(BigInt(nr![name]), a, b, c, d, e, f));
  return rc === -1 ? -errnoView!.getInt32() : rc;
}

/** socket(2)'s type for a netlink socket: SOCK_RAW | SOCK_CLOEXEC (add SOCK_NONBLOCK, 0o4000, to poll it). */
export const SOCK_RAW_CLOEXEC = 3n | 0o2000000n;

/** `setsockopt(fd, SOL_NETLINK, name, &value, 4)` with a 32-bit `value`: 0, or `-errno`. */
export function setNetlinkOption(fd: number, name: number, value: number): number {
  const v = new Uint8Array(new ArrayBuffer(4));
  new DataView(v.buffer).setUint32(0, value, true);
  return sys("setsockopt", BigInt(fd), BigInt(SOL_NETLINK), BigInt(name), addressOf(v), 4n);
}

/** `recvfrom(fd, buf, buf.length, flags, NULL, NULL)`: the datagram's length, or `-errno`. */
export function recvInto(fd: number, buf: Uint8Array, flags: bigint): number {
  return sys("recvfrom", BigInt(fd), addressOf(buf), BigInt(buf.length), flags, 0n, 0n);
}

/**
 * Makes system call `name` on a thread of Deno's blocking pool, off the JS thread: for calls the kernel
 * may spend long in (a netlink dump walks a whole table inside `recvfrom`). Resolves to the result, or
 * -1 on failure — errno is that thread's and cannot be read here, so callers treat -1 as "failed". The
 * buffers passed by address must stay referenced until the promise settles.
 */
export async function sysAsync(
  name: keyof Nr,
  a = 0n,
  b = 0n,
  c = 0n,
  d = 0n,
  e = 0n,
  f = 0n,
): Promise<number> {
  const l = load();
  return Number(await l.syscall_nb(BigInt(nr![name]), a, b, c, d, e, f));
}

const AT_FDCWD = -100n;
const O_RDONLY_CLOEXEC = 0o2000000n;
const CLONE_NEWNET = 0x40000000n;
const enc = new TextEncoder();

function cPath(path: string): Uint8Array {
  const bytes = enc.encode(path);
  const out = new Uint8Array(new ArrayBuffer(bytes.length + 1));
  out.set(bytes);
  return out;
}

/** Opens `path` read-only (close-on-exec); returns the fd or throws {@linkcode SyscallError}. */
export function openPath(path: string): number {
  const p = cPath(path);
  const fd = sys("openat", AT_FDCWD, addressOf(p), O_RDONLY_CLOEXEC);
  if (fd < 0) throw new SyscallError(`open ${path}`, -fd);
  return fd;
}

/** Closes an fd (errors ignored: nothing useful can be done about them). */
export function closeFd(fd: number): void {
  sys("close", BigInt(fd));
}

/**
 * Runs `fn` with the JS thread switched into the network namespace open as `fd`, then switches back,
 * also when `fn` throws. A namespace that is not one (a plain file, a directory) fails with EINVAL.
 * `fn` must be synchronous: nothing else may run while the thread is in another namespace.
 */
export function inNetns<T>(fd: number, fn: () => T): T {
  const self = openPath("/proc/thread-self/ns/net");
  try {
    const rc = sys("setns", BigInt(fd), CLONE_NEWNET);
    if (rc < 0) throw new SyscallError("setns", -rc);
    try {
      return fn();
    } finally {
      if (sys("setns", BigInt(self), CLONE_NEWNET) < 0) {
        // Carrying on in the wrong namespace would program the wrong kernel tables: stop hard.
        console.error("weft: FATAL: cannot switch back to the original network namespace");
        Deno.exit(70);
      }
    }
  } finally {
    closeFd(self);
  }
}
