/**
 * TUN devices through libc: `open("/dev/net/tun")` and `ioctl(TUNSETIFF)` with `IFF_TUN | IFF_NO_PI`, so
 * each read returns exactly one IP packet and each write injects one (no packet-information header).
 * The descriptor is non-blocking: {@linkcode Tun.read} returns 0 when nothing is queued, and callers wait
 * for readability with {@linkcode Poller} (ffi/poll.ts).
 *
 * Address, MTU, up and routes are set through the {@linkcode Netlink} handle like any other link.
 *
 * @example
 * ```ts
 * using tun = Tun.open({ name: "flannel0", persist: true });
 * const buf = new Uint8Array(65536);
 * const n = tun.read(buf); // 0: nothing queued
 * ```
 *
 * @module
 */
import { cstr, sizeT } from "./cmem.ts";
import { c, failSyscall, libcErrno } from "./loader.ts";
import { OwnedFd } from "./owned_fd.ts";
import { ERRNO, SyscallError } from "./syscall_error.ts";

const O_RDWR = 0o2;
const O_NONBLOCK = 0o4000;
const O_CLOEXEC = 0o2000000;
/** _IOW('T', 202, int) */
const TUNSETIFF = 0x400454can;
/** _IOW('T', 203, int) */
const TUNSETPERSIST = 0x400454cbn;
const IFF_TUN = 0x0001;
const IFF_NO_PI = 0x1000;
/** sizeof(struct ifreq) on 64-bit Linux. */
const IFREQ_SIZE = 40;
const IFNAMSIZ = 16;

/** Options of {@linkcode Tun.open}. */
export interface TunOpenOptions {
  /** Device name (at most 15 bytes); `%d` lets the kernel pick a number, e.g. `flannel%d`. */
  name: string;
  /**
   * Keep the device (with its address and routes) when the descriptor closes, so the next process can
   * attach to it again by name. Default false: the device disappears with the last descriptor.
   */
  persist?: boolean;
}

/** An attached TUN device. Dispose it (`using`) or call `close()`. */
export class Tun extends OwnedFd {
  /** The device's name (as the kernel assigned it). */
  readonly name: string;

  private constructor(fd: number, name: string) {
    super(fd);
    this.name = name;
  }

  /**
   * Creates the device, or attaches to an existing (persistent) one of that name, in the calling thread's
   * network namespace. Throws {@linkcode SyscallError}: EPERM without CAP_NET_ADMIN, EBUSY when another
   * process holds the device, EINVAL when a device of that name is not a TUN.
   */
  static open(opts: TunOpenOptions): Tun {
    const name = new TextEncoder().encode(opts.name);
    if (name.length >= IFNAMSIZ) throw new Error(`TUN name ${opts.name} is longer than 15 bytes`);
    const libc = c();
    const fd = libc.open(cstr("/dev/net/tun"), O_RDWR | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) failSyscall("open /dev/net/tun");
    // struct ifreq { char ifr_name[IFNAMSIZ]; union { short ifr_flags; … } } (40 bytes)
    const ifr = new Uint8Array(IFREQ_SIZE);
    ifr.set(name);
    new DataView(ifr.buffer).setInt16(IFNAMSIZ, IFF_TUN | IFF_NO_PI, true);
    if (libc.ioctl(fd, TUNSETIFF, ifr) !== 0) {
      const e = libcErrno();
      libc.close(fd);
      throw new SyscallError(`TUNSETIFF ${opts.name}`, e);
    }
    const end = ifr.indexOf(0);
    const tun = new Tun(fd, new TextDecoder().decode(ifr.subarray(0, end < 0 ? IFNAMSIZ : end)));
    if (opts.persist !== undefined) tun.setPersist(opts.persist);
    return tun;
  }

  /** Makes the device outlive this descriptor (true) or go with it (false). */
  setPersist(on: boolean): void {
    if (c().ioctl_int(this.fd, TUNSETPERSIST, on ? 1n : 0n) !== 0) {
      failSyscall(`TUNSETPERSIST ${this.name}`);
    }
  }

  /**
   * Reads one packet into `buf`; returns its length, or 0 when none is queued. A packet longer than
   * `buf` is truncated by the kernel: size `buf` for the device's MTU.
   */
  read(buf: Uint8Array<ArrayBuffer>): number {
    const n = c().read(this.fd, buf, sizeT(buf.byteLength));
    if (n >= 0) return n;
    if (libcErrno() === ERRNO.EAGAIN) return 0;
    failSyscall(`read ${this.name}`);
  }

  /** Writes one packet (the first `len` bytes of `buf`); returns false when the queue was full. */
  write(buf: Uint8Array<ArrayBuffer>, len: number): boolean {
    const n = c().write(this.fd, buf, sizeT(len));
    if (n >= 0) return true;
    if (libcErrno() === ERRNO.EAGAIN) return false;
    failSyscall(`write ${this.name}`);
  }
}
