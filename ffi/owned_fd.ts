/**
 * A file descriptor owned by one object: closed by `close()` or `using`, and by the garbage collector as
 * a safety net when neither happened (the sqlite3 driver's pattern). The TUN device, the UDP and unix
 * sockets and the eventfd waker are this with their own calls on top.
 *
 * @module
 */
import { c } from "./loader.ts";

const registry = new FinalizationRegistry<number>((fd) => c().close(fd));

/** Owns `fd`: {@linkcode OwnedFd.close} (or disposal) closes it once; -1 afterwards. */
export class OwnedFd implements Disposable {
  #fd: number;

  /** Takes ownership of `fd`. */
  constructor(fd: number) {
    this.#fd = fd;
    registry.register(this, fd, this);
  }

  /** The descriptor; -1 after close. */
  get fd(): number {
    return this.#fd;
  }

  /** Closes the descriptor (again is a no-op). */
  close(): void {
    if (this.#fd < 0) return;
    registry.unregister(this);
    c().close(this.#fd);
    this.#fd = -1;
  }

  /** Same as {@linkcode close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}
