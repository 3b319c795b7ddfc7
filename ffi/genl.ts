/**
 * Generic netlink over libnl-genl: resolving a family by name, and request/ack and dump exchanges whose
 * payload (the genl header and attributes, ffi/nl_codec.ts) is built and parsed in TypeScript. Used for
 * kernel WireGuard; needs the Debian package libnl-genl-3-200.
 *
 * @module
 */
import { cstr } from "./cmem.ts";
import { genl } from "./loader.ts";
import { NETLINK, NlSocket } from "./socket.ts";
import { withNetns } from "./netns.ts";
import { GENL_HDRLEN } from "./nl_consts.ts";

/** `struct genlmsghdr { u8 cmd; u8 version; u16 reserved; }` followed by `attrs` (ffi/nl_codec.ts). */
export function genlPayload(cmd: number, version: number, attrs: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(GENL_HDRLEN + attrs.length);
  out[0] = cmd;
  out[1] = version;
  out.set(attrs, GENL_HDRLEN);
  return out;
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

  /** Sends a request and waits for the kernel's acknowledgement (errors become NetlinkError). */
  request(family: number, payload: Uint8Array<ArrayBuffer>, op: string): void {
    this.#sock.requestRaw(family, payload, op);
  }

  /** Sends a dump request; returns every answer's payload (genl header and attributes). */
  dump(family: number, payload: Uint8Array<ArrayBuffer>, op: string): Uint8Array[] {
    return this.#sock.dumpRaw(family, payload, op);
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
