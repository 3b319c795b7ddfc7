/**
 * Waiting for readability of several descriptors at once: `poll(2)` on a worker thread (the symbol is
 * `nonblocking`, so the JS thread stays free and gets a Promise), and an eventfd {@linkcode Waker} that
 * ends a wait early (to stop a loop, or to pick up new work).
 *
 * The pollfd array is allocated once; a wait allocates only the Promise Deno returns.
 *
 * @module
 */
import { c, failSyscall, libcErrno } from "./loader.ts";
import { OwnedFd } from "./owned_fd.ts";
import { ERRNO, SyscallError } from "./syscall_error.ts";

const POLLIN = 0x001;
const POLLERR = 0x008;
const POLLHUP = 0x010;
const POLLNVAL = 0x020;
const EFD_NONBLOCK = 0o4000;
const EFD_CLOEXEC = 0o2000000;

/** Waits until one of a fixed set of descriptors is readable. */
export class Poller {
  // struct pollfd { int fd; short events; short revents; } × n
  readonly #fds: Uint8Array<ArrayBuffer>;
  readonly #view: DataView;
  readonly #n: number;

  /** Watches `fds` for input (POLLIN). */
  constructor(fds: number[]) {
    this.#n = fds.length;
    this.#fds = new Uint8Array(8 * fds.length);
    this.#view = new DataView(this.#fds.buffer);
    fds.forEach((fd, i) => {
      this.#view.setInt32(8 * i, fd, true);
      this.#view.setInt16(8 * i + 4, POLLIN, true);
    });
  }

  /** Replaces descriptor `i` (a negative fd is ignored by poll(): that slot is switched off). */
  setFd(i: number, fd: number): void {
    this.#view.setInt32(8 * i, fd, true);
  }

  /**
   * Resolves when at least one descriptor is readable (or after `timeoutMs`, -1 = never), with the
   * number of ready descriptors (0 on timeout or EINTR). Read the details with {@linkcode readable}.
   * One wait at a time: the pollfd array is shared.
   */
  async wait(timeoutMs: number): Promise<number> {
    for (let i = 0; i < this.#n; i++) this.#view.setInt16(8 * i + 6, 0, true);
    const n = await c().poll_wait(this.#fds, BigInt(this.#n), timeoutMs);
    if (n >= 0) return n;
    // errno belongs to the worker thread that ran poll(); EINTR is the only expected failure.
    return 0;
  }

  /** Whether descriptor `i` (by position) was readable, or hung up, in the last wait. */
  readable(i: number): boolean {
    return (this.#view.getInt16(8 * i + 6, true) & (POLLIN | POLLERR | POLLHUP | POLLNVAL)) !== 0;
  }
}

/** An eventfd that wakes a {@linkcode Poller} waiting on {@linkcode Waker.fd}. */
export class Waker extends OwnedFd {
  readonly #one = new BigUint64Array([1n]);
  readonly #oneBytes = new Uint8Array(this.#one.buffer);
  readonly #sink = new Uint8Array(8);

  /** Creates the eventfd (non-blocking). */
  constructor() {
    const fd = c().eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) failSyscall("eventfd");
    super(fd);
  }

  /** Makes the descriptor readable (a pending wait returns). */
  wake(): void {
    if (this.fd < 0) return;
    if (c().write(this.fd, this.#oneBytes, 8n) < 0 && libcErrno() !== ERRNO.EAGAIN) {
      throw new SyscallError("eventfd write", libcErrno());
    }
  }

  /** Clears the readable state. */
  drain(): void {
    c().read(this.fd, this.#sink, 8n);
  }
}
