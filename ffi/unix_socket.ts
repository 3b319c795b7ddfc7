/**
 * A blocking, synchronous AF_UNIX stream client through libc, for short request/response exchanges with
 * local daemons (WireGuard's UAPI socket, /var/run/wireguard/<dev>.sock). Synchronous like every other
 * kernel call of the reconciler; send and receive time out (SO_SNDTIMEO/SO_RCVTIMEO), so a daemon that
 * hangs fails the call instead of the agent.
 *
 * @module
 */
import { sizeT } from "./cmem.ts";
import { c, libcErrno } from "./loader.ts";
import { OwnedFd } from "./owned_fd.ts";
import { ERRNO, SyscallError } from "./syscall_error.ts";

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_RCVTIMEO = 20;
const SO_SNDTIMEO = 21;
/** sizeof(struct sockaddr_un). */
const SOCKADDR_UN_SIZE = 110;

/** A connected unix stream socket. Dispose it (`using`) or call `close()`. */
export class UnixStream extends OwnedFd {
  private constructor(fd: number, readonly path: string) {
    super(fd);
  }

  /**
   * Connects to the socket at `path`; every later send or receive waits at most `timeoutMs`. Throws
   * {@linkcode SyscallError} (ENOENT: no such socket, ECONNREFUSED: nobody listens).
   */
  static connect(path: string, timeoutMs = 5000): UnixStream {
    const name = new TextEncoder().encode(path);
    if (name.length >= SOCKADDR_UN_SIZE - 2) throw new Error(`unix socket path too long: ${path}`);
    const libc = c();
    const fd = libc.socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw new SyscallError("socket(AF_UNIX)", libcErrno());
    try {
      // struct timeval { time_t tv_sec; suseconds_t tv_usec; }
      const tv = new BigInt64Array([BigInt(Math.floor(timeoutMs / 1000)), BigInt((timeoutMs % 1000) * 1000)]);
      const tvBytes = new Uint8Array(tv.buffer);
      libc.setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, tvBytes, 16);
      libc.setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, tvBytes, 16);
      // struct sockaddr_un { sa_family_t sun_family; char sun_path[108]; }
      const sa = new Uint8Array(SOCKADDR_UN_SIZE);
      new DataView(sa.buffer).setUint16(0, AF_UNIX, true);
      sa.set(name, 2);
      if (libc.connect(fd, sa, SOCKADDR_UN_SIZE) !== 0) {
        throw new SyscallError(`connect ${path}`, libcErrno());
      }
      return new UnixStream(fd, path);
    } catch (err) {
      libc.close(fd);
      throw err;
    }
  }

  /** Writes all of `data`. */
  writeAll(data: Uint8Array<ArrayBuffer>): void {
    let off = 0;
    while (off < data.length) {
      const chunk = off ? data.slice(off) : data;
      const n = c().write(this.fd, chunk, sizeT(chunk.length));
      if (n < 0) {
        const e = libcErrno();
        if (e === ERRNO.EINTR) continue;
        throw new SyscallError(`write ${this.path}`, e);
      }
      off += n;
    }
  }

  /**
   * Reads until the data received ends with `terminator` or the peer closes; returns all of it as text.
   * EAGAIN here means the receive timed out.
   */
  readUntil(terminator: string): string {
    const dec = new TextDecoder();
    const buf = new Uint8Array(65536);
    let text = "";
    for (;;) {
      const n = c().read(this.fd, buf, sizeT(buf.length));
      if (n < 0) {
        const e = libcErrno();
        if (e === ERRNO.EINTR) continue;
        throw new SyscallError(`read ${this.path}${e === ERRNO.EAGAIN ? " (timed out)" : ""}`, e);
      }
      if (n === 0) return text + dec.decode();
      text += dec.decode(buf.subarray(0, n), { stream: true });
      if (text.endsWith(terminator)) return text;
    }
  }
}
