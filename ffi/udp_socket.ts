/**
 * An IPv4 UDP socket through libc (`socket`, `bind`, `sendto`, `recvfrom`) for the udp backend's packet
 * loop. Unlike `Deno.listenDatagram`, sends and receives are synchronous non-blocking calls that reuse
 * the caller's buffers — no Promise, no address object per packet — and readability is awaited for many
 * packets at once with {@linkcode Poller} (ffi/poll.ts).
 *
 * @module
 */
import { sizeT } from "./cmem.ts";
import { c, failSyscall, libcErrno } from "./loader.ts";
import { OwnedFd } from "./owned_fd.ts";
import { ERRNO, SyscallError } from "./syscall_error.ts";
import { parseIP } from "./ip.ts";

const AF_INET = 2;
const SOCK_DGRAM = 2;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_REUSEADDR = 2;
const SO_SNDBUF = 7;
const SO_RCVBUF = 8;
/** sizeof(struct sockaddr_in). */
export const SOCKADDR_IN_SIZE = 16;

/**
 * `struct sockaddr_in` for `ip:port` (family, port and address in network order), ready for
 * {@linkcode UdpSocket.sendTo}. Build it once per peer, not per packet.
 */
export function sockaddrIn(ip: string, port: number): Uint8Array<ArrayBuffer> {
  const addr = parseIP(ip);
  if (addr.family !== 4) throw new Error(`${ip} is not an IPv4 address`);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`port ${port} out of range`);
  const sa = new Uint8Array(SOCKADDR_IN_SIZE);
  const v = new DataView(sa.buffer);
  v.setUint16(0, AF_INET, true);
  v.setUint16(2, port, false);
  v.setUint32(4, Number(addr.value), false);
  return sa;
}

/** `ip:port` of a `struct sockaddr_in`. */
export function formatSockaddrIn(sa: Uint8Array): string {
  const v = new DataView(sa.buffer, sa.byteOffset, sa.byteLength);
  return `${sa[4]}.${sa[5]}.${sa[6]}.${sa[7]}:${v.getUint16(2, false)}`;
}

/** A bound, non-blocking IPv4 UDP socket. Dispose it (`using`) or call `close()`. */
export class UdpSocket extends OwnedFd {
  readonly #fromLen = new Uint32Array(1);
  readonly #fromLenBytes = new Uint8Array(this.#fromLen.buffer);
  /** The bound `ip:port`. */
  readonly address: string;

  private constructor(fd: number, address: string) {
    super(fd);
    this.address = address;
  }

  /**
   * Binds `ip:port` (in the calling thread's namespace); port 0 picks a free one. `bufferBytes` sets
   * SO_RCVBUF/SO_SNDBUF (the kernel caps it at net.core.rmem_max/wmem_max).
   */
  // `override`: a static `bind` shadows Function.prototype.bind, which the strict compiler flags once
  // the class has a base class.
  static override bind(ip: string, port: number, bufferBytes = 4 << 20): UdpSocket {
    const libc = c();
    const fd = libc.socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) failSyscall("socket(AF_INET, SOCK_DGRAM)");
    try {
      const one = new Int32Array([1]);
      const size = new Int32Array([bufferBytes]);
      const u8 = (a: Int32Array) => new Uint8Array(a.buffer);
      libc.setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, u8(one), 4);
      libc.setsockopt(fd, SOL_SOCKET, SO_RCVBUF, u8(size), 4);
      libc.setsockopt(fd, SOL_SOCKET, SO_SNDBUF, u8(size), 4);
      if (libc.bind(fd, sockaddrIn(ip, port), SOCKADDR_IN_SIZE) !== 0) failSyscall(`bind udp ${ip}:${port}`);
      const sa = new Uint8Array(SOCKADDR_IN_SIZE);
      const len = new Uint32Array([SOCKADDR_IN_SIZE]);
      if (libc.getsockname(fd, sa, new Uint8Array(len.buffer)) !== 0) failSyscall("getsockname");
      return new UdpSocket(fd, formatSockaddrIn(sa));
    } catch (err) {
      libc.close(fd);
      throw err;
    }
  }

  /** Sends the first `len` bytes of `buf` to `to` (a {@linkcode sockaddrIn}); false when it would block. */
  sendTo(buf: Uint8Array<ArrayBuffer>, len: number, to: Uint8Array<ArrayBuffer>): boolean {
    const n = c().sendto(this.fd, buf, sizeT(len), 0, to, SOCKADDR_IN_SIZE);
    if (n >= 0) return true;
    const e = libcErrno();
    if (e === ERRNO.EAGAIN) return false;
    throw new SyscallError("sendto", e);
  }

  /**
   * Receives one datagram into `buf` and its sender into `from` (16 bytes, a `sockaddr_in`); returns its
   * length, or -1 when none is queued.
   */
  recvFrom(buf: Uint8Array<ArrayBuffer>, from: Uint8Array<ArrayBuffer>): number {
    this.#fromLen[0] = SOCKADDR_IN_SIZE;
    const n = c().recvfrom(this.fd, buf, sizeT(buf.byteLength), 0, from, this.#fromLenBytes);
    if (n >= 0) return n;
    const e = libcErrno();
    if (e === ERRNO.EAGAIN) return -1;
    throw new SyscallError("recvfrom", e);
  }
}
