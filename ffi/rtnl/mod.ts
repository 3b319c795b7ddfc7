/**
 * rtnetlink without libnl, for short-lived processes (the CNI plugin): messages encoded in TypeScript,
 * sent through raw system calls, so a process binds two FFI symbols instead of libnl's dozens (see
 * sys.ts for what that saves). The long-running agent keeps using libnl ({@linkcode Netlink} in
 * ffi/netlink.ts), whose binding cost is paid once.
 *
 * {@linkcode Rtnl} offers the operations the CNI plugin needs, on one namespace, with the plain data
 * types of ffi/types.ts and errors as {@linkcode NetlinkError} (kernel errno, and the kernel's own
 * message when it sends one).
 *
 * @example
 * ```ts
 * using nl = Rtnl.open("/run/netns/pod1");
 * const eth0 = nl.linkGet("eth0");
 * if (eth0) nl.addrAdd(eth0.index, "10.244.3.5/24", { replace: true });
 * ```
 *
 * @module
 */
import type { AddrInfo, LinkInfo, LinkRef, RouteInfo } from "../types.ts";
import { addrAdd, addrDelete, addrList } from "./addrs.ts";
import {
  linkAddBridge,
  linkAddVeth,
  type LinkChanges,
  linkDelete,
  linkGet,
  linkPorts,
  linkSet,
  linkSetHairpin,
  type RawVethOptions,
} from "./links.ts";
import { type RawRoute, routeList, routeReplace } from "./routes.ts";
import { RtnlSocket } from "./socket.ts";
import { closeFd, openPath } from "./sys.ts";

export { NetlinkError } from "../errors.ts";
export { closeFd, inNetns, openPath, SyscallError } from "./sys.ts";
export type { LinkChanges, RawRoute, RawVethOptions };

/** An rtnetlink handle bound to one network namespace. Dispose it (`using`). */
export class Rtnl implements Disposable {
  readonly #s: RtnlSocket;

  private constructor(s: RtnlSocket) {
    this.#s = s;
  }

  /**
   * Opens a handle in the current namespace, or in the namespace at `netns` (a path such as a
   * CNI_NETNS), or in the one open as fd `netns`. A path that cannot be opened or is not a namespace
   * throws {@linkcode SyscallError} (ENOENT, EINVAL).
   */
  static open(netns?: string | number): Rtnl {
    if (typeof netns !== "string") return new Rtnl(RtnlSocket.open(netns));
    const fd = openPath(netns);
    try {
      return new Rtnl(RtnlSocket.open(fd));
    } finally {
      closeFd(fd);
    }
  }

  /** One link by name or index, or `undefined`. */
  linkGet(ref: LinkRef): LinkInfo | undefined {
    return linkGet(this.#s, ref);
  }

  /** The ports of bridge `master`. */
  linkPorts(master: number): LinkInfo[] {
    return linkPorts(this.#s, master);
  }

  /** Creates a bridge (down). */
  linkAddBridge(o: { name: string; mac?: string; mtu?: number }): LinkInfo {
    return linkAddBridge(this.#s, o);
  }

  /** Creates a veth pair, the peer optionally straight in another namespace; returns this end. */
  linkAddVeth(o: RawVethOptions): LinkInfo {
    return linkAddVeth(this.#s, o);
  }

  /** Sets master, up and/or MTU of a link in one request. */
  linkSet(index: number, c: LinkChanges): void {
    linkSet(this.#s, index, c);
  }

  /** Turns hairpin mode of a bridge port on or off. */
  linkSetHairpin(index: number, on: boolean): void {
    linkSetHairpin(this.#s, index, on);
  }

  /** Deletes a link; false when there was none. */
  linkDelete(ref: LinkRef): boolean {
    return linkDelete(this.#s, ref);
  }

  /** The addresses of one interface. */
  addrList(index: number, family?: 4 | 6): AddrInfo[] {
    return addrList(this.#s, index, family);
  }

  /** Adds an address (`replace`: an existing one is success; `nodad`: IPv6 usable at once). */
  addrAdd(index: number, cidr: string, o: { replace?: boolean; nodad?: boolean } = {}): void {
    addrAdd(this.#s, index, cidr, o);
  }

  /** Deletes an address; false when it was not there. */
  addrDelete(index: number, cidr: string): boolean {
    return addrDelete(this.#s, index, cidr);
  }

  /** Installs or replaces a route. */
  routeReplace(r: RawRoute): void {
    routeReplace(this.#s, r);
  }

  /** The main table's routes. */
  routeList(family?: 4 | 6): RouteInfo[] {
    return routeList(this.#s, family === undefined ? {} : { family });
  }

  /** Closes the socket. */
  close(): void {
    this.#s.close();
  }

  /** Same as {@linkcode close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}
