/**
 * AF_UNIX datagram sockets through libc (Deno has no stable unix datagram API): one datagram sent to a
 * named socket — how a service notifies systemd (`$NOTIFY_SOCKET`, sd_notify(3)) — and a non-blocking
 * receiver bound to a name, as systemd listens (the tests stand in for systemd with it).
 *
 * Names are paths, or, starting with `@`, abstract names (Linux's abstract namespace: no file; the `@`
 * stands for the leading NUL byte of `sun_path`, as systemd writes them).
 *
 * @module
 */
import { sizeT } from "./cmem.ts";
import { c, libcErrno } from "./loader.ts";
import { OwnedFd } from "./owned_fd.ts";
import { ERRNO, SyscallError } from "./syscall_error.ts";

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
/** MSG_NOSIGNAL: a vanished listener is an error, not a SIGPIPE. */
const MSG_NOSIGNAL = 0x4000;
/** offsetof(struct sockaddr_un, sun_path). */
const SUN_PATH_OFFSET = 2;
/** sizeof(sun_path). */
const SUN_PATH_SIZE = 108;

/** `struct sockaddr_un` for `name` (`@x`: abstract) and the length to pass with it. */
export function unixSockaddr(name: string): { sa: Uint8Array<ArrayBuffer>; len: number } {
  const abstract = name.startsWith("@");
  const bytes = new TextEncoder().encode(abstract ? name.slice(1) : name);
  // A path keeps its terminating NUL inside sun_path; an abstract name is the NUL and then its bytes.
  const used = bytes.length + 1;
  if (!name || used > SUN_PATH_SIZE) {
    throw new Error(`unix socket name ${JSON.stringify(name)}: empty or too long`);
  }
  const sa = new Uint8Array(SUN_PATH_OFFSET + SUN_PATH_SIZE);
  new DataView(sa.buffer).setUint16(0, AF_UNIX, true);
  sa.set(bytes, SUN_PATH_OFFSET + (abstract ? 1 : 0));
  return { sa, len: SUN_PATH_OFFSET + used };
}

function datagramSocket(op: string): number {
  const fd = c().socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) throw new SyscallError(op, libcErrno());
  return fd;
}

/**
 * Sends `data` as one datagram to the socket `name` (non-blocking: a listener whose queue is full fails
 * with EAGAIN rather than stalling the caller). Throws {@linkcode SyscallError} (ENOENT, ECONNREFUSED: no
 * listener).
 */
export function sendUnixDatagram(name: string, data: Uint8Array<ArrayBuffer>): void {
  const { sa, len } = unixSockaddr(name);
  const op = `sendto ${name}`;
  const libc = c();
  const fd = datagramSocket(op);
  try {
    for (;;) {
      if (libc.sendto(fd, data, sizeT(data.length), MSG_NOSIGNAL, sa, len) >= 0) return;
      const e = libcErrno();
      if (e !== ERRNO.EINTR) throw new SyscallError(op, e);
    }
  } finally {
    libc.close(fd);
  }
}

/** A unix datagram socket bound to a name, read without blocking. Dispose it (`using`). */
export class UnixDatagramListener extends OwnedFd {
  private constructor(fd: number, readonly name: string) {
    super(fd);
  }

  /** Binds `name` (a path, which must not exist yet, or `@abstract`). */
  static listen(name: string): UnixDatagramListener {
    const { sa, len } = unixSockaddr(name);
    const fd = datagramSocket(`socket ${name}`);
    if (c().bind(fd, sa, len) !== 0) {
      const e = libcErrno();
      c().close(fd);
      throw new SyscallError(`bind ${name}`, e);
    }
    return new UnixDatagramListener(fd, name);
  }

  /** The next datagram waiting, or undefined when none is. */
  tryReceive(): Uint8Array | undefined {
    const buf = new Uint8Array(65536);
    for (;;) {
      const n = c().read(this.fd, buf, sizeT(buf.length));
      if (n >= 0) return buf.slice(0, n);
      const e = libcErrno();
      if (e === ERRNO.EAGAIN) return undefined;
      if (e !== ERRNO.EINTR) throw new SyscallError(`read ${this.name}`, e);
    }
  }
}
