/**
 * The netlink socket under a {@linkcode Netlink} handle, and error checking for every libnl call.
 *
 * @module
 */
import { readCString } from "./cmem.ts";
import { errnoFromNle, NetlinkError } from "./errors.ts";
import { nl } from "./loader.ts";
import { LIBNL, NETLINK, NLM_F, NLMSG_HDRLEN } from "./nl_consts.ts";

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

// Answers of the exchange in progress (receive() below); exchanges run synchronously on the JS thread,
// one at a time.
let collected: Uint8Array[] = [];
let validCallback:
  | Deno.UnsafeCallback<{ parameters: ["pointer", "pointer"]; result: "i32" }>
  | undefined;

function validCallbackPointer(): Deno.PointerObject {
  validCallback ??= new Deno.UnsafeCallback(
    { parameters: ["pointer", "pointer"], result: "i32" } as const,
    (msg) => {
      const hdr = nl().nlmsg_hdr(msg);
      if (hdr !== null) {
        const view = new Deno.UnsafePointerView(hdr);
        const len = view.getUint32(0);
        // The payload (family header and attributes), copied out of libnl's buffer.
        collected.push(new Uint8Array(view.getArrayBuffer(len, 0)).slice(NLMSG_HDRLEN));
      }
      return LIBNL.OK;
    },
  );
  return validCallback.pointer;
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

  /**
   * Reads the kernel's answers to the request just sent (`nl_send_auto`) until libnl stops: after a
   * dump's NLMSG_DONE, or after a request's one reply (then call {@linkcode waitForAck}, since libnl
   * asks for an ACK on every request). Returns each answer's payload after the netlink header; a
   * kernel error throws {@linkcode NetlinkError} for `op`.
   */
  receive(op: string): Uint8Array[] {
    const lib = nl();
    this.check(
      lib.nl_socket_modify_cb(this.ptr, LIBNL.CB_VALID, LIBNL.CB_CUSTOM, validCallbackPointer(), null),
      op,
    );
    collected = [];
    try {
      this.check(lib.nl_recvmsgs_default(this.ptr), op);
      return collected;
    } finally {
      collected = [];
      // Back to libnl's default, so the socket's other exchanges are as they were.
      lib.nl_socket_modify_cb(this.ptr, LIBNL.CB_VALID, LIBNL.CB_DEFAULT, null, null);
    }
  }

  /** A libnl message of `type` with `flags` around `payload` (a family header and attributes, ffi/nl_codec.ts). */
  #message(type: number, flags: number, payload: Uint8Array<ArrayBuffer>, op: string): Deno.PointerObject {
    const lib = nl();
    const msg = lib.nlmsg_alloc_simple(type, flags);
    if (msg === null) throw new NetlinkError(op, 12, 0, "nlmsg_alloc failed");
    const rc = lib.nlmsg_append(msg, payload, BigInt(payload.length), 4);
    if (rc < 0) {
      lib.nlmsg_free(msg);
      this.check(rc, op);
    }
    return msg;
  }

  /**
   * Sends a request of `type` (`flags` besides REQUEST|ACK) whose payload was built in TypeScript, and
   * waits for the kernel's acknowledgement; a kernel error throws {@linkcode NetlinkError}.
   */
  requestRaw(type: number, payload: Uint8Array<ArrayBuffer>, op: string, flags = 0): void {
    const msg = this.#message(type, NLM_F.REQUEST | NLM_F.ACK | flags, payload, op);
    this.begin();
    this.check(nl().nl_send_sync(this.ptr, msg), op); // frees msg
  }

  /** Sends a dump request of `type`; returns every answer's payload (family header and attributes). */
  dumpRaw(type: number, payload: Uint8Array<ArrayBuffer>, op: string): Uint8Array[] {
    const lib = nl();
    const msg = this.#message(type, NLM_F.REQUEST | NLM_F.DUMP, payload, op);
    try {
      this.begin();
      this.check(lib.nl_send_auto(this.ptr, msg), op);
    } finally {
      lib.nlmsg_free(msg);
    }
    return this.receive(op);
  }

  /** Waits for the kernel's ACK of the request whose reply {@linkcode receive} read. */
  waitForAck(op: string): void {
    this.check(nl().nl_wait_for_ack(this.ptr), op);
  }

  /** Closes the socket. */
  close(): void {
    if (this.#ptr === null) return;
    registry.unregister(this);
    nl().nl_socket_free(this.#ptr);
    this.#ptr = null;
  }
}
