/**
 * Generic netlink over libnl-genl: resolving a family by name, and request/ack and dump exchanges whose
 * payload (the genl header and attributes, ffi/nl_codec.ts) is built and parsed in TypeScript. Used for
 * kernel WireGuard; needs the Debian package libnl-genl-3-200.
 *
 * @module
 */
import { cstr } from "./cmem.ts";
import { NetlinkError } from "./errors.ts";
import { genl, nl } from "./loader.ts";
import { NETLINK, NlSocket } from "./socket.ts";
import { withNetns } from "./netns.ts";
import { GENL_HDRLEN, LIBNL, NLM_F, NLMSG_HDRLEN } from "./nl_consts.ts";

/** `struct genlmsghdr { u8 cmd; u8 version; u16 reserved; }` followed by `attrs` (ffi/nl_codec.ts). */
export function genlPayload(cmd: number, version: number, attrs: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(GENL_HDRLEN + attrs.length);
  out[0] = cmd;
  out[1] = version;
  out.set(attrs, GENL_HDRLEN);
  return out;
}

// Messages of the dump in progress; dumps run synchronously on the JS thread, one at a time.
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
        // The genl header and attributes, copied out of libnl's buffer.
        collected.push(new Uint8Array(view.getArrayBuffer(len, 0)).slice(NLMSG_HDRLEN));
      }
      return LIBNL.OK;
    },
  );
  return validCallback.pointer;
}

/** A generic netlink socket bound to one namespace. Dispose it (`using`) or call `close()`. */
export class GenlSocket implements Disposable {
  readonly #sock: NlSocket;

  private constructor(sock: NlSocket) {
    this.#sock = sock;
  }

  /** Opens a socket in the current namespace or in `netns`. */
  static open(netns?: string): GenlSocket {
    genl(); // load libnl-genl (and fail naming its package) before anything else
    const make = () => new NlSocket(NETLINK.GENERIC);
    return new GenlSocket(netns === undefined ? make() : withNetns(netns, make));
  }

  /** The id of family `name`; NetlinkError with `notFound` when the kernel has no such family. */
  resolve(name: string): number {
    this.#sock.begin();
    return this.#sock.check(genl().genl_ctrl_resolve(this.#sock.ptr, cstr(name)), `genl resolve ${name}`);
  }

  #message(family: number, flags: number, payload: Uint8Array<ArrayBuffer>, op: string): Deno.PointerObject {
    const msg = nl().nlmsg_alloc_simple(family, flags);
    if (msg === null) throw new NetlinkError(op, 12, 0, "nlmsg_alloc failed");
    const rc = nl().nlmsg_append(msg, payload, BigInt(payload.length), 4);
    if (rc < 0) {
      nl().nlmsg_free(msg);
      this.#sock.check(rc, op);
    }
    return msg;
  }

  /** Sends a request and waits for the kernel's acknowledgement (errors become NetlinkError). */
  request(family: number, payload: Uint8Array<ArrayBuffer>, op: string): void {
    const msg = this.#message(family, NLM_F.REQUEST | NLM_F.ACK, payload, op);
    this.#sock.begin();
    this.#sock.check(nl().nl_send_sync(this.#sock.ptr, msg), op); // frees msg
  }

  /** Sends a dump request; returns every answer's payload (genl header and attributes). */
  dump(family: number, payload: Uint8Array<ArrayBuffer>, op: string): Uint8Array[] {
    const lib = nl();
    const msg = this.#message(family, NLM_F.REQUEST | NLM_F.DUMP, payload, op);
    try {
      this.#sock.begin();
      this.#sock.check(lib.nl_send_auto(this.#sock.ptr, msg), op);
    } finally {
      lib.nlmsg_free(msg);
    }
    this.#sock.check(
      lib.nl_socket_modify_cb(this.#sock.ptr, LIBNL.CB_VALID, LIBNL.CB_CUSTOM, validCallbackPointer(), null),
      op,
    );
    collected = [];
    try {
      this.#sock.check(lib.nl_recvmsgs_default(this.#sock.ptr), op);
      return collected;
    } finally {
      collected = [];
    }
  }

  /** Closes the socket. */
  close(): void {
    this.#sock.close();
  }

  /** Same as {@linkcode close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}
