/**
 * {@linkcode Netlink}: the safe handle over libnl-route, bound to one network namespace.
 *
 * @example
 * ```ts
 * using nl = Netlink.open({ netns: "node1" });
 * const vx = nl.linkAddVxlan({ name: "flannel.1", vni: 1, local: "192.168.64.3", dev: "eth0" });
 * nl.linkSetUp(vx.index);
 * nl.routeReplace({ dst: "10.244.2.0/24", gateway: "10.244.2.0", dev: vx.index, onlink: true });
 * ```
 *
 * @module
 */
import { addrAdd, addrDelete, addrList, type AddrOptions } from "./addrs.ts";
import { rtnl } from "./loader.ts";
import {
  linkAddBridge,
  linkAddDummy,
  linkAddVeth,
  linkAddVxlan,
  linkAddWireguard,
  linkChange,
  linkDelete,
  linkGet,
  linkList,
  linkSetHairpin,
  linkSetUp,
  resolveIndex,
} from "./links.ts";
import { cstr } from "./cmem.ts";
import { macAddr } from "./nl_addr.ts";
import {
  appendNeighReplace,
  fdbDelete,
  fdbList,
  fdbReplace,
  neighAndFdbList,
  neighDelete,
  type NeighFields,
  neighFields,
  neighList,
  neighReplace,
} from "./neighs.ts";
import { closeFd, openNetnsFd, withNetns } from "./netns.ts";
import { NetlinkError } from "./errors.ts";
import { nexthopDelete, nexthopList, nexthopReplace } from "./nexthops.ts";
import { routeAdd, routeDelete, type RouteFilter, routeGet, routeList, routeReplace } from "./routes.ts";
import { NLM_F, NlSocket } from "./socket.ts";
import { NlBuilder } from "./nl_codec.ts";
import { RtnlSocket } from "./rtnl/socket.ts";
import type {
  AddrInfo,
  FdbInfo,
  FdbSpec,
  LinkInfo,
  LinkRef,
  NeighInfo,
  NeighSpec,
  NexthopInfo,
  NexthopSpec,
  RouteInfo,
  RouteLookup,
  RouteSpec,
  SimpleLinkOptions,
  VethOptions,
  VxlanOptions,
} from "./types.ts";

/** Where a {@linkcode Netlink} handle works. */
export interface NetlinkOpenOptions {
  /** A namespace name under /run/netns, or a path (`/proc/<pid>/ns/net`, a CNI_NETNS path). */
  netns?: string;
  /** The namespace of this process id. */
  pid?: number;
}

/** Neighbour and FDB entries per datagram in {@linkcode Netlink.neighBatch} (~40 bytes each). */
const NEIGH_BATCH = 256;

/** One entry of {@linkcode Netlink.neighBatch}: a permanent neighbour, or an FDB entry of a VXLAN device. */
export type NeighBatchEntry = { kind: "neigh"; spec: NeighSpec } | { kind: "fdb"; spec: FdbSpec };

function fieldsOf(e: NeighBatchEntry): NeighFields {
  return e.kind === "neigh"
    ? neighFields(e.spec.ip, e.spec.mac, false)
    : neighFields(e.spec.dst, e.spec.mac, true);
}

/** The op an entry's error names, as neighReplace / fdbReplace name theirs. */
function neighOp(e: NeighBatchEntry): string {
  return e.kind === "neigh"
    ? `neighbour replace ${e.spec.ip} lladdr ${e.spec.mac}`
    : `fdb replace ${e.spec.mac} dst ${e.spec.dst}`;
}

/** A netlink handle bound to one network namespace. Dispose it (`using`) or call `close()`. */
export class Netlink implements Disposable {
  readonly #sock: NlSocket;
  /** A raw socket in the same namespace for batches (neighBatch), opened at the first one. */
  #raw: RtnlSocket | undefined;
  /** The namespace it was opened in (undefined: the process's own), for calls that are not netlink. */
  readonly netns: string | undefined;

  private constructor(sock: NlSocket, netns: string | undefined) {
    this.#sock = sock;
    this.netns = netns;
  }

  /** Opens a handle in the current namespace, or in the one named by `opts`. */
  static open(opts: NetlinkOpenOptions = {}): Netlink {
    rtnl(); // load the libraries (and fail clearly) before switching namespaces
    const ref = opts.netns ?? (opts.pid !== undefined ? `/proc/${opts.pid}/ns/net` : undefined);
    const sock = ref === undefined ? new NlSocket() : withNetns(ref, () => new NlSocket());
    return new Netlink(sock, ref);
  }

  /** Closes the socket. */
  close(): void {
    this.#sock.close();
    this.#raw?.close();
    this.#raw = undefined;
  }

  /** Same as {@linkcode close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }

  // ---- links

  /** One link by name or index, or `undefined`. */
  linkGet(ref: LinkRef): LinkInfo | undefined {
    return linkGet(this.#sock, ref);
  }

  /** Every link. */
  linkList(): LinkInfo[] {
    return linkList(this.#sock);
  }

  /** The ifindex of a link; throws NetlinkError ENODEV when absent. */
  linkIndex(ref: LinkRef): number {
    return resolveIndex(this.#sock, ref);
  }

  /** Creates a VXLAN device (down). */
  linkAddVxlan(opts: VxlanOptions): LinkInfo {
    return linkAddVxlan(this.#sock, opts);
  }

  /** Creates a bridge (down). */
  linkAddBridge(opts: SimpleLinkOptions): LinkInfo {
    return linkAddBridge(this.#sock, opts);
  }

  /** Creates a dummy device (down). */
  linkAddDummy(opts: SimpleLinkOptions): LinkInfo {
    return linkAddDummy(this.#sock, opts);
  }

  /** Creates a kernel WireGuard device (down); NetlinkError EOPNOTSUPP when the kernel has none. */
  linkAddWireguard(opts: SimpleLinkOptions): LinkInfo {
    return linkAddWireguard(this.#sock, opts);
  }

  /** Creates a veth pair, the peer optionally straight in another namespace; returns this end. */
  linkAddVeth(opts: VethOptions): LinkInfo {
    return linkAddVeth(this.#sock, opts);
  }

  /** Deletes a link; false when it did not exist. */
  linkDelete(ref: LinkRef): boolean {
    return linkDelete(this.#sock, ref);
  }

  /** Sets a link up. */
  linkSetUp(ref: LinkRef): void {
    linkSetUp(this.#sock, ref, true);
  }

  /** Sets a link down. */
  linkSetDown(ref: LinkRef): void {
    linkSetUp(this.#sock, ref, false);
  }

  /** Sets the MTU. */
  linkSetMtu(ref: LinkRef, mtu: number): void {
    linkChange(this.#sock, ref, `set mtu ${mtu}`, (c) => rtnl().rtnl_link_set_mtu(c, mtu));
  }

  /** Enslaves a link to a bridge; `0` releases it. */
  linkSetMaster(ref: LinkRef, master: LinkRef | 0): void {
    const index = master === 0 ? 0 : resolveIndex(this.#sock, master);
    linkChange(this.#sock, ref, `set master ${master}`, (c) => rtnl().rtnl_link_set_master(c, index));
  }

  /** Sets the hardware address. */
  linkSetMac(ref: LinkRef, mac: string): void {
    using addr = macAddr(mac);
    linkChange(this.#sock, ref, `set address ${mac}`, (c) => rtnl().rtnl_link_set_addr(c, addr.ptr));
  }

  /** Renames a link (it must be down). */
  linkSetName(ref: LinkRef, name: string): void {
    linkChange(this.#sock, ref, `set name ${name}`, (c) => rtnl().rtnl_link_set_name(c, cstr(name)));
  }

  /** Moves a link into another namespace. */
  linkSetNetns(ref: LinkRef, netns: string): void {
    const fd = openNetnsFd(netns);
    try {
      linkChange(this.#sock, ref, `set netns ${netns}`, (c) => rtnl().rtnl_link_set_ns_fd(c, fd));
    } finally {
      closeFd(fd);
    }
  }

  /** Turns hairpin mode of a bridge port on or off. */
  linkSetHairpin(ref: LinkRef, on: boolean): void {
    linkSetHairpin(this.#sock, ref, on);
  }

  // ---- addresses

  /** Adds an address; EEXIST when present. */
  addrAdd(ref: LinkRef, cidr: string, opts: AddrOptions = {}): void {
    addrAdd(this.#sock, ref, cidr, false, opts);
  }

  /** Adds or updates an address (idempotent). */
  addrReplace(ref: LinkRef, cidr: string, opts: AddrOptions = {}): void {
    addrAdd(this.#sock, ref, cidr, true, opts);
  }

  /** Deletes an address; false when it was not there. */
  addrDelete(ref: LinkRef, cidr: string): boolean {
    return addrDelete(this.#sock, ref, cidr);
  }

  /** Lists addresses, optionally of one link and family. */
  addrList(ref?: LinkRef, family?: 4 | 6): AddrInfo[] {
    return addrList(this.#sock, ref, family);
  }

  // ---- routes

  /** Installs or replaces a route (protocol defaults to weft's). */
  routeReplace(spec: RouteSpec): void {
    routeReplace(this.#sock, spec);
  }

  /** Adds a route; EEXIST when one to the destination exists. */
  routeAdd(spec: RouteSpec): void {
    routeAdd(this.#sock, spec);
  }

  /** Deletes a route; false when none matched. */
  routeDelete(spec: RouteSpec): boolean {
    return routeDelete(this.#sock, spec);
  }

  /** Lists routes of the main table (or as filtered). */
  routeList(filter: RouteFilter = {}): RouteInfo[] {
    return routeList(this.#sock, filter);
  }

  /** The route the kernel uses to reach `ip` (`ip route get`); NetlinkError when it has none. */
  routeGet(ip: string): RouteLookup {
    return routeGet(this.#sock, ip);
  }

  // ---- next-hop objects (Linux ≥ 5.3)

  /** Creates or replaces next-hop object `spec.id`; EOPNOTSUPP on a kernel without them. */
  nexthopReplace(spec: NexthopSpec): void {
    nexthopReplace(this.#sock, spec);
  }

  /** Deletes next-hop object `id` and the routes naming it; false when there was none. */
  nexthopDelete(id: number): boolean {
    return nexthopDelete(this.#sock, id);
  }

  /** Lists the namespace's next-hop objects. */
  nexthopList(): NexthopInfo[] {
    return nexthopList(this.#sock);
  }

  // ---- neighbours and FDB

  /** Installs or updates a permanent neighbour entry. */
  neighReplace(spec: NeighSpec): void {
    neighReplace(this.#sock, spec);
  }

  /**
   * Installs or updates many permanent neighbour and FDB entries at once: the same requests as
   * {@linkcode neighReplace} and {@linkcode fdbReplace}, up to 256 in one datagram that only asks for an
   * ACK at its end (ffi/rtnl/socket.ts `sendQuiet`). A peer costs ~1 µs of system calls instead of ~8 and
   * no libnl objects (bench/datapath_program.ts). Returns each entry's error (undefined: in place); one
   * entry failing does not stop the others.
   */
  neighBatch(entries: readonly NeighBatchEntry[]): (NetlinkError | undefined)[] {
    const errors: (NetlinkError | undefined)[] = new Array(entries.length).fill(undefined);
    // Entries that cannot even be built (no such device, a malformed address) fail here, alone.
    const ready: { at: number; index: number; fields: NeighFields }[] = [];
    entries.forEach((e, at) => {
      try {
        ready.push({ at, fields: fieldsOf(e), index: resolveIndex(this.#sock, e.spec.dev) });
      } catch (err) {
        errors[at] = err instanceof NetlinkError
          ? err
          : new NetlinkError(neighOp(e), 22, /* EINVAL */ 0, (err as Error).message);
      }
    });
    if (!ready.length) return errors;
    const raw = this.#raw ??= this.netns === undefined
      ? RtnlSocket.open()
      : withNetns(this.netns, () => RtnlSocket.open());
    for (let from = 0; from < ready.length; from += NEIGH_BATCH) {
      const chunk = ready.slice(from, from + NEIGH_BATCH);
      const b = new NlBuilder();
      const seqs = chunk.map(({ index, fields }, i) => {
        const seq = raw.nextSeq();
        appendNeighReplace(b, seq, i === chunk.length - 1 ? NLM_F.ACK : 0, index, fields);
        return seq;
      });
      const failed = raw.sendQuiet(b, seqs.at(-1)!, "neighbour batch");
      chunk.forEach(({ at }, i) => {
        const f = failed.get(seqs[i]!);
        if (f) errors[at] = new NetlinkError(neighOp(entries[at]!), f.errno, 0, f.detail);
      });
    }
    return errors;
  }

  /** Deletes a neighbour entry; false when none. */
  neighDelete(spec: { dev: LinkRef; ip: string }): boolean {
    return neighDelete(this.#sock, spec);
  }

  /** Lists ARP/NDP entries. */
  neighList(filter: { dev?: LinkRef; family?: 4 | 6 } = {}): NeighInfo[] {
    return neighList(this.#sock, filter);
  }

  /** Installs or updates a permanent FDB entry on a VXLAN device. */
  fdbReplace(spec: FdbSpec): void {
    fdbReplace(this.#sock, spec);
  }

  /** Deletes an FDB entry; false when none. */
  fdbDelete(spec: { dev: LinkRef; mac: string; dst?: string }): boolean {
    return fdbDelete(this.#sock, spec);
  }

  /** Lists FDB entries. */
  fdbList(filter: { dev?: LinkRef } = {}): FdbInfo[] {
    return fdbList(this.#sock, filter);
  }

  /** Lists the ARP/NDP and FDB entries of `devices` (ifindexes) with one dump. */
  neighAndFdbList(devices: ReadonlySet<number>): { neighs: NeighInfo[]; fdbs: FdbInfo[] } {
    return neighAndFdbList(this.#sock, devices);
  }
}
