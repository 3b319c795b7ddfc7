/**
 * Link operations (create vxlan/bridge/veth/dummy, get, list, change, delete) over libnl-route.
 *
 * @module
 */
import { cstr, outPointer, Owned, pointerSlot, readCString, u32Slot } from "./cmem.ts";
import { NetlinkError } from "./errors.ts";
import { nl, rtnl } from "./loader.ts";
import { AF, ipAddr, macAddr, readIP, readMac } from "./nl_addr.ts";
import { closeFd, openNetnsFd } from "./netns.ts";
import { NLM_F, type NlSocket } from "./socket.ts";
import type { LinkInfo, LinkRef, SimpleLinkOptions, VethOptions, VxlanInfo, VxlanOptions } from "./types.ts";

import { IFF, IFINFOMSG_LEN, IFLA, IFLA_BRPORT_MODE, NLA_F_NESTED, RTM, VXLAN_F_GBP } from "./nl_consts.ts";

function ownLink(ptr: Deno.PointerValue): Owned {
  const lib = rtnl();
  return new Owned(ptr, (p) => lib.rtnl_link_put(p));
}

function describe(ref: LinkRef): string {
  return typeof ref === "number" ? `ifindex ${ref}` : ref;
}

/** Fetches a link from the kernel as an owned libnl object, or `undefined` when there is none. */
export function fetchLink(sock: NlSocket, ref: LinkRef): Owned | undefined {
  const slot = pointerSlot();
  sock.begin();
  const rc = typeof ref === "number"
    ? rtnl().rtnl_link_get_kernel(sock.ptr, ref, null, slot)
    : rtnl().rtnl_link_get_kernel(sock.ptr, 0, cstr(ref), slot);
  if (rc < 0) {
    try {
      sock.check(rc, `link get ${describe(ref)}`);
    } catch (err) {
      if (err instanceof NetlinkError && err.notFound) return undefined;
      throw err;
    }
  }
  return ownLink(outPointer(slot));
}

/** Resolves a link reference to its ifindex; throws ENODEV when there is no such link. */
export function resolveIndex(sock: NlSocket, ref: LinkRef): number {
  if (typeof ref === "number") return ref;
  using link = fetchLink(sock, ref);
  if (!link) throw new NetlinkError(`link ${ref}`, 19, 0, "no such device");
  return rtnl().rtnl_link_get_ifindex(link.ptr);
}

function vxlanInfo(link: Deno.PointerObject): VxlanInfo {
  const lib = rtnl();
  const u32 = u32Slot();
  const info: VxlanInfo = { vni: 0, port: 0, learning: false, gbp: false };
  if (lib.rtnl_link_vxlan_get_id(link, u32) === 0) info.vni = u32[0]!;
  if (lib.rtnl_link_vxlan_get_port(link, u32) === 0) info.port = u32[0]!;
  if (lib.rtnl_link_vxlan_get_link(link, u32) === 0 && u32[0]) info.link = u32[0];
  info.learning = lib.rtnl_link_vxlan_get_learning(link) > 0;
  if (lib.rtnl_link_vxlan_get_flags(link, u32) === 0) info.gbp = (u32[0]! & VXLAN_F_GBP) !== 0;
  const slot = pointerSlot();
  if (lib.rtnl_link_vxlan_get_local(link, slot) === 0) {
    using local = new Owned(outPointer(slot), (p) => nl().nl_addr_put(p));
    const ip = readIP(local.ptr);
    if (ip) info.local = ip;
  }
  return info;
}

/** Converts a libnl link object to {@linkcode LinkInfo}. */
export function linkInfo(link: Deno.PointerObject): LinkInfo {
  const lib = rtnl();
  const flags = lib.rtnl_link_get_flags(link);
  const kind = readCString(lib.rtnl_link_get_type(link));
  const info: LinkInfo = {
    index: lib.rtnl_link_get_ifindex(link),
    name: readCString(lib.rtnl_link_get_name(link)),
    kind,
    mtu: lib.rtnl_link_get_mtu(link),
    mac: readMac(lib.rtnl_link_get_addr(link)),
    up: (flags & IFF.UP) !== 0,
    running: (flags & (IFF.RUNNING | IFF.LOWER_UP)) !== 0,
    master: lib.rtnl_link_get_master(link),
  };
  if (kind === "vxlan") info.vxlan = vxlanInfo(link);
  return info;
}

/** Reads one link, or `undefined`. */
export function linkGet(sock: NlSocket, ref: LinkRef): LinkInfo | undefined {
  using link = fetchLink(sock, ref);
  return link ? linkInfo(link.ptr as Deno.PointerObject) : undefined;
}

/** Lists every link of the namespace. */
export function linkList(sock: NlSocket): LinkInfo[] {
  const slot = pointerSlot();
  sock.begin();
  sock.check(rtnl().rtnl_link_alloc_cache(sock.ptr, AF.UNSPEC, slot), "link list");
  using cache = new Owned(outPointer(slot), (p) => nl().nl_cache_free(p));
  const out: LinkInfo[] = [];
  for (let obj = nl().nl_cache_get_first(cache.ptr); obj !== null; obj = nl().nl_cache_get_next(obj)) {
    out.push(linkInfo(obj));
  }
  return out;
}

function applyCommon(link: Deno.PointerObject, opts: SimpleLinkOptions): void {
  const lib = rtnl();
  lib.rtnl_link_set_name(link, cstr(opts.name));
  if (opts.mtu !== undefined) lib.rtnl_link_set_mtu(link, opts.mtu);
  if (opts.mac !== undefined) {
    using mac = macAddr(opts.mac);
    lib.rtnl_link_set_addr(link, mac.ptr);
  }
}

function addAndGet(sock: NlSocket, link: Deno.PointerObject, name: string, what: string): LinkInfo {
  sock.begin();
  sock.check(rtnl().rtnl_link_add(sock.ptr, link, NLM_F.CREATE | NLM_F.EXCL), `link add ${what} ${name}`);
  const info = linkGet(sock, name);
  if (!info) throw new NetlinkError(`link add ${what} ${name}`, 19, 0, "created but not found afterwards");
  return info;
}

/** Creates a VXLAN device. */
export function linkAddVxlan(sock: NlSocket, opts: VxlanOptions): LinkInfo {
  const lib = rtnl();
  using link = ownLink(lib.rtnl_link_vxlan_alloc());
  const p = link.ptr as Deno.PointerObject;
  applyCommon(p, opts);
  const op = `link add vxlan ${opts.name}`;
  sock.check(lib.rtnl_link_vxlan_set_id(p, opts.vni), op);
  if (opts.local !== undefined) {
    using local = ipAddr(opts.local);
    sock.check(lib.rtnl_link_vxlan_set_local(p, local.ptr), op);
  }
  if (opts.port) sock.check(lib.rtnl_link_vxlan_set_port(p, opts.port), op);
  if (opts.dev !== undefined) sock.check(lib.rtnl_link_vxlan_set_link(p, resolveIndex(sock, opts.dev)), op);
  sock.check(lib.rtnl_link_vxlan_set_learning(p, opts.learning ? 1 : 0), op);
  if (opts.gbp) sock.check(lib.rtnl_link_vxlan_set_flags(p, VXLAN_F_GBP, 1), op);
  return addAndGet(sock, p, opts.name, "vxlan");
}

function addTyped(sock: NlSocket, kind: string, opts: SimpleLinkOptions): LinkInfo {
  const lib = rtnl();
  using link = ownLink(lib.rtnl_link_alloc());
  const p = link.ptr as Deno.PointerObject;
  sock.check(lib.rtnl_link_set_type(p, cstr(kind)), `link add ${kind} ${opts.name}`);
  applyCommon(p, opts);
  return addAndGet(sock, p, opts.name, kind);
}

/** Creates a bridge. */
export function linkAddBridge(sock: NlSocket, opts: SimpleLinkOptions): LinkInfo {
  return addTyped(sock, "bridge", opts);
}

/** Creates a dummy device. */
export function linkAddDummy(sock: NlSocket, opts: SimpleLinkOptions): LinkInfo {
  return addTyped(sock, "dummy", opts);
}

/** Creates a kernel WireGuard device (EOPNOTSUPP when the kernel has no WireGuard). */
export function linkAddWireguard(sock: NlSocket, opts: SimpleLinkOptions): LinkInfo {
  return addTyped(sock, "wireguard", opts);
}

/** Creates a veth pair; the peer is created directly in `opts.peerNetns` when given. */
export function linkAddVeth(sock: NlSocket, opts: VethOptions): LinkInfo {
  const lib = rtnl();
  using link = ownLink(lib.rtnl_link_veth_alloc());
  const p = link.ptr as Deno.PointerObject;
  applyCommon(p, opts);
  using peer = ownLink(lib.rtnl_link_veth_get_peer(p));
  const pp = peer.ptr as Deno.PointerObject;
  lib.rtnl_link_set_name(pp, cstr(opts.peerName));
  if (opts.mtu !== undefined) lib.rtnl_link_set_mtu(pp, opts.mtu);
  if (opts.peerMac !== undefined) {
    using mac = macAddr(opts.peerMac);
    lib.rtnl_link_set_addr(pp, mac.ptr);
  }
  const fd = opts.peerNetns !== undefined ? openNetnsFd(opts.peerNetns) : -1;
  try {
    if (fd >= 0) lib.rtnl_link_set_ns_fd(pp, fd);
    return addAndGet(sock, p, opts.name, "veth");
  } finally {
    if (fd >= 0) closeFd(fd);
  }
}

/** Deletes a link; returns false when it did not exist. */
export function linkDelete(sock: NlSocket, ref: LinkRef): boolean {
  const lib = rtnl();
  using link = ownLink(lib.rtnl_link_alloc());
  const p = link.ptr as Deno.PointerObject;
  if (typeof ref === "number") lib.rtnl_link_set_ifindex(p, ref);
  else lib.rtnl_link_set_name(p, cstr(ref));
  sock.begin();
  try {
    sock.check(lib.rtnl_link_delete(sock.ptr, p), `link delete ${describe(ref)}`);
    return true;
  } catch (err) {
    if (err instanceof NetlinkError && err.notFound) return false;
    throw err;
  }
}

/** Applies `edit` to a fresh "changes" object and sends it for link `ref`. */
export function linkChange(
  sock: NlSocket,
  ref: LinkRef,
  what: string,
  edit: (changes: Deno.PointerObject) => void,
): void {
  using orig = fetchLink(sock, ref);
  if (!orig) throw new NetlinkError(`link ${what} ${describe(ref)}`, 19, 0, "no such device");
  using changes = ownLink(rtnl().rtnl_link_alloc());
  edit(changes.ptr as Deno.PointerObject);
  sock.begin();
  sock.check(rtnl().rtnl_link_change(sock.ptr, orig.ptr, changes.ptr, 0), `link ${what} ${describe(ref)}`);
}

/** Sets a link administratively up or down. */
export function linkSetUp(sock: NlSocket, ref: LinkRef, up: boolean): void {
  linkChange(sock, ref, up ? "set up" : "set down", (c) => {
    if (up) rtnl().rtnl_link_set_flags(c, IFF.UP);
    else rtnl().rtnl_link_unset_flags(c, IFF.UP);
  });
}

/** Enables or disables hairpin mode on a bridge port (IFLA_BRPORT_MODE), via a raw RTM_SETLINK. */
export function linkSetHairpin(sock: NlSocket, ref: LinkRef, on: boolean): void {
  const index = resolveIndex(sock, ref);
  const lib = nl();
  const msg = lib.nlmsg_alloc_simple(RTM.SETLINK, 0);
  if (msg === null) throw new NetlinkError("link set hairpin", 12, 0, "nlmsg_alloc failed");
  // struct ifinfomsg { u8 family; u8 pad; u16 type; i32 index; u32 flags; u32 change; }
  const ifi = new Uint8Array(IFINFOMSG_LEN);
  const view = new DataView(ifi.buffer);
  view.setUint8(0, AF.BRIDGE);
  view.setInt32(4, index, true);
  const op = `link set hairpin ${describe(ref)}`;
  try {
    sock.check(lib.nlmsg_append(msg, ifi, BigInt(IFINFOMSG_LEN), 4), op);
    const nest = lib.nla_nest_start(msg, IFLA.PROTINFO | NLA_F_NESTED);
    if (nest === null) throw new NetlinkError(op, 12, 0, "nla_nest_start failed");
    sock.check(lib.nla_put_u8(msg, IFLA_BRPORT_MODE, on ? 1 : 0), op);
    sock.check(lib.nla_nest_end(msg, nest), op);
  } catch (err) {
    lib.nlmsg_free(msg);
    throw err;
  }
  sock.begin();
  sock.check(lib.nl_send_sync(sock.ptr, msg), op); // nl_send_sync frees msg
}
