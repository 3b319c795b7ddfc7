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
  neighFields,
  neighList,
  neighReplace,
} from "./neighs.ts";
import { closeFd, openNetnsFd, withNetns } from "./netns.ts";
import { NetlinkError } from "./errors.ts";
import { nexthopDelete, nexthopList, nexthopProtocols, nexthopReplace, writeNexthop } from "./nexthops.ts";
import { routeAdd, routeDelete, routeGet, routeReplace, writeNexthopRoute } from "./routes.ts";
import { type RouteFilter, routeList } from "./rtnl/routes.ts";
import { parseIP, parseNet } from "./ip.ts";
import { RTM } from "./nl_consts.ts";
import { NLM_F, NlSocket } from "./socket.ts";
import { NlBuilder } from "./nl_codec.ts";
import { RtnlChanges } from "./rtnl/changes.ts";
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

/** Requests per datagram in {@linkcode Netlink.batch} (each ~40–60 bytes). */
const BATCH = 256;

/**
 * One request of {@linkcode Netlink.batch}: what {@linkcode Netlink.neighReplace},
 * {@linkcode Netlink.fdbReplace}, {@linkcode Netlink.nexthopReplace} and `routeAdd`/`routeReplace` of a
 * route naming a next-hop object (`replace` false: EEXIST when the destination has a route) send.
 */
export type BatchRequest =
  | { kind: "neigh"; spec: NeighSpec }
  | { kind: "fdb"; spec: FdbSpec }
  | { kind: "nexthop"; spec: NexthopSpec }
  | { kind: "route"; spec: RouteSpec & { nexthopId: number }; replace: boolean };

/** The op a request's error names, as the one-at-a-time calls name theirs. */
function batchOp(r: BatchRequest): string {
  switch (r.kind) {
    case "neigh":
      return `neighbour replace ${r.spec.ip} lladdr ${r.spec.mac}`;
    case "fdb":
      return `fdb replace ${r.spec.mac} dst ${r.spec.dst}`;
    case "nexthop":
      return `nexthop replace id ${r.spec.id} via ${r.spec.gateway}`;
    case "route":
      return `route ${r.replace ? "replace" : "add"} ${r.spec.dst}`;
  }
}

/**
 * A request checked and ready to append: its device resolved and its addresses parsed, so that whatever
 * cannot even be built fails alone, before anything is sent.
 */
function prepare(sock: NlSocket, r: BatchRequest): (b: NlBuilder, seq: number, ack: number) => void {
  switch (r.kind) {
    case "neigh":
    case "fdb": {
      const f = r.kind === "neigh"
        ? neighFields(r.spec.ip, r.spec.mac, false)
        : neighFields(r.spec.dst, r.spec.mac, true);
      const index = resolveIndex(sock, r.spec.dev);
      return (b, seq, ack) => appendNeighReplace(b, seq, ack, index, f);
    }
    case "nexthop": {
      parseIP(r.spec.gateway);
      return (b, seq, ack) => {
        b.begin(RTM.NEWNEXTHOP, NLM_F.REQUEST | NLM_F.CREATE | NLM_F.REPLACE | ack, seq);
        writeNexthop(b, r.spec);
        b.end();
      };
    }
    case "route": {
      parseNet(r.spec.dst);
      if (r.spec.src !== undefined) parseIP(r.spec.src);
      const flags = NLM_F.REQUEST | NLM_F.CREATE | (r.replace ? NLM_F.REPLACE : NLM_F.EXCL);
      return (b, seq, ack) => {
        b.begin(RTM.NEWROUTE, flags | ack, seq);
        writeNexthopRoute(b, r.spec);
        b.end();
      };
    }
  }
}

/** A netlink handle bound to one network namespace. Dispose it (`using`) or call `close()`. */
export class Netlink implements Disposable {
  readonly #sock: NlSocket;
  /** A raw socket in the same namespace for {@linkcode batch} and dumps read in place, opened at first use. */
  #raw: RtnlSocket | undefined;
  /** The kernel's change notifications in the same namespace, from the first {@linkcode kernelChanged}. */
  #changes: RtnlChanges | undefined;
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

  /** `open()` run in the handle's namespace (sockets are bound to the namespace they are made in). */
  #inNetns<T>(open: () => T): T {
    return this.netns === undefined ? open() : withNetns(this.netns, open);
  }

  /** The raw socket, opened in the handle's namespace at first use. */
  #rawSocket(): RtnlSocket {
    return this.#raw ??= this.#inNetns(() => RtnlSocket.open());
  }

  /** Closes the socket. */
  close(): void {
    this.#sock.close();
    this.#raw?.close();
    this.#raw = undefined;
    this.#changes?.close();
    this.#changes = undefined;
  }

  /**
   * Whether the kernel announced a change to a route (outside the local table), a next-hop object, a
   * link, an address, or a neighbour or FDB entry of `devices` since the last call
   * (ffi/rtnl/changes.ts). The first call subscribes and answers true: nothing is known of the time
   * before.
   */
  kernelChanged(devices: ReadonlySet<number>): boolean {
    if (this.#changes) return this.#changes.changed(devices);
    this.#changes = this.#inNetns(() => RtnlChanges.open());
    return true;
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
    return routeList(this.#rawSocket(), filter);
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
    return nexthopList(this.#rawSocket());
  }

  /** Each next-hop object's id → the protocol that made it (a full pass's lean read of them). */
  nexthopProtocols(): Map<number, number> {
    return nexthopProtocols(this.#rawSocket());
  }

  // ---- neighbours and FDB

  /** Installs or updates a permanent neighbour entry. */
  neighReplace(spec: NeighSpec): void {
    neighReplace(this.#sock, spec);
  }

  /**
   * Sends many requests — neighbour, FDB, next-hop and route writes ({@linkcode BatchRequest}) — up to 256
   * in one datagram that only asks for an ACK at its end (ffi/rtnl/socket.ts `sendQuiet`), in order: the
   * kernel handles a datagram's messages one after the other, so a next-hop object goes before the route
   * naming it. Two system calls per datagram and no libnl objects, where one request at a time costs two
   * system calls and (neighbours) ~10 FFI calls each (bench/datapath_program.ts). Returns each request's
   * error (undefined: done); one failing does not stop the others.
   */
  batch(requests: readonly BatchRequest[]): (NetlinkError | undefined)[] {
    const errors: (NetlinkError | undefined)[] = new Array(requests.length).fill(undefined);
    const ready: { at: number; append: (b: NlBuilder, seq: number, ack: number) => void }[] = [];
    requests.forEach((r, at) => {
      try {
        ready.push({ at, append: prepare(this.#sock, r) });
      } catch (err) {
        errors[at] = err instanceof NetlinkError
          ? err
          : new NetlinkError(batchOp(r), 22, /* EINVAL */ 0, (err as Error).message);
      }
    });
    if (!ready.length) return errors;
    const raw = this.#rawSocket();
    for (let from = 0; from < ready.length; from += BATCH) {
      const chunk = ready.slice(from, from + BATCH);
      const b = new NlBuilder();
      const seqs = chunk.map(({ append }, i) => {
        const seq = raw.nextSeq();
        append(b, seq, i === chunk.length - 1 ? NLM_F.ACK : 0);
        return seq;
      });
      const failed = raw.sendQuiet(b, seqs.at(-1)!, "netlink batch");
      chunk.forEach(({ at }, i) => {
        const f = failed.get(seqs[i]!);
        if (f) errors[at] = new NetlinkError(batchOp(requests[at]!), f.errno, 0, f.detail);
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
    const index = filter.dev === undefined ? undefined : resolveIndex(this.#sock, filter.dev);
    return neighList(this.#rawSocket(), { index, family: filter.family });
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
    const index = filter.dev === undefined ? undefined : resolveIndex(this.#sock, filter.dev);
    return fdbList(this.#rawSocket(), { index });
  }

  /** Lists the ARP/NDP and FDB entries of `devices` (ifindexes) with one dump. */
  neighAndFdbList(devices: ReadonlySet<number>): { neighs: NeighInfo[]; fdbs: FdbInfo[] } {
    return neighAndFdbList(this.#rawSocket(), devices);
  }
}
