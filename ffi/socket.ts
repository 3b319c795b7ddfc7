/**
 * The netlink socket under a {@linkcode Netlink} handle, and error checking for every libnl call.
 *
 * @module
 */
import { readCString } from "./cmem.ts";
import { errnoFromNle, NetlinkError } from "./errors.ts";
import { nl } from "./loader.ts";
import { LIBNL, NETLINK, NLM_F } from "./nl_consts.ts";

export { NETLINK, NLM_F };

// The kernel's errno from the last NLMSG_ERROR, recorded by the error callback below before libnl maps
// it to an NLE code. All netlink calls are synchronous on the JS thread, so one slot is enough.
let lastKernelErrno = 0;
let errorCallback:
  | Deno.UnsafeCallback<{ parameters: ["pointer", "pointer", "pointer"]; result: "i32" }>
  | undefined;

function errorCallbackPointer(): Deno.PointerObject {
  errorCallback ??= new Deno.UnsafeCallback(
    { parameters: ["pointer", "pointer", "pointer"], result: "i32" } as const,
    (_nla, err) => {
      // struct nlmsgerr { int error; struct nlmsghdr msg; }: error is -errno.
      lastKernelErrno = err === null ? 0 : -new Deno.UnsafePointerView(err).getInt32(0);
      return LIBNL.STOP; // keep libnl's own handling: it returns the mapped error
    },
  );
  return errorCallback.pointer;
}

const registry = new FinalizationRegistry<Deno.PointerObject>((ptr) => nl().nl_socket_free(ptr));

/** A connected netlink socket (NETLINK_ROUTE unless told; in the namespace it was created in). */
export class NlSocket {
  #ptr: Deno.PointerObject | null;

  /** Allocates and connects a socket of `protocol` in the calling thread's current namespace. */
  constructor(protocol: number = NETLINK.ROUTE) {
    const lib = nl();
    const ptr = lib.nl_socket_alloc();
    if (ptr === null) throw new NetlinkError("netlink socket", 12, 0, "nl_socket_alloc failed");
    this.#ptr = ptr;
    try {
      this.check(lib.nl_connect(ptr, protocol), "netlink connect");
      // Large dumps (5000 routes) must not overflow the receive buffer.
      lib.nl_socket_set_buffer_size(ptr, 4 << 20, 1 << 20);
      // libnl peeks at every message (MSG_PEEK|MSG_TRUNC) to size its buffer, then reads it again: two
      // recvmsg calls per ACK. Reading once made programming 1000 peers ~10% and reading them back ~20%
      // faster (same-process A/B). A fixed 64 KiB buffer reads each message once; the kernel builds no dump
      // message over 32 KiB, and one that did not fit would fail loudly (NLE_MSG_TRUNC), not silently.
      lib.nl_socket_set_msg_buf_size(ptr, 64n << 10n);
      lib.nl_socket_disable_msg_peek(ptr);
      const cb = lib.nl_socket_get_cb(ptr);
      if (cb !== null) {
        lib.nl_cb_err(cb, LIBNL.CB_CUSTOM, errorCallbackPointer(), null);
        lib.nl_cb_put(cb);
      }
    } catch (err) {
      lib.nl_socket_free(ptr);
      this.#ptr = null;
      throw err;
    }
    registry.register(this, ptr, this);
  }

  /** The raw `struct nl_sock *`; throws after close. */
  get ptr(): Deno.PointerObject {
    if (this.#ptr === null) throw new Error("netlink handle used after close()");
    return this.#ptr;
  }

  /** Clears the recorded kernel errno; call before each operation. */
  begin(): void {
    lastKernelErrno = 0;
  }

  /** Throws a {@linkcode NetlinkError} for a negative libnl return code; returns `rc` otherwise. */
  check(rc: number, op: string): number {
    if (rc >= 0) return rc;
    const nle = -rc;
    const errno = lastKernelErrno || errnoFromNle(nle);
    lastKernelErrno = 0;
    throw new NetlinkError(op, errno, nle, readCString(nl().nl_geterror(nle)));
  }

  /** Closes the socket. */
  close(): void {
    if (this.#ptr === null) return;
    registry.unregister(this);
    nl().nl_socket_free(this.#ptr);
    this.#ptr = null;
  }
}
