/**
 * Permanent neighbour (ARP/NDP) entries and bridge FDB entries (NTF_SELF, for VXLAN devices).
 *
 * libnl needs explicit NLM_F_CREATE|NLM_F_REPLACE on neighbour adds for replace semantics.
 *
 * @module
 */
import { outPointer, Owned, pointerSlot } from "./cmem.ts";
import { NetlinkError } from "./errors.ts";
import { nl, rtnl } from "./loader.ts";
import { AF, ipAddr, macAddr, readIP, readMac } from "./nl_addr.ts";
import { resolveIndex } from "./links.ts";
import { NLM_F, type NlSocket } from "./socket.ts";
import type { FdbInfo, FdbSpec, LinkRef, NeighInfo, NeighSpec } from "./types.ts";
import { LIBNL, NDA, NDMSG_LEN, NTF_SELF, NUD_PERMANENT, RTM } from "./nl_consts.ts";
import type { NlBuilder } from "./nl_codec.ts";
import { type IP, ipBytes, parseIP } from "./ip.ts";
import { macBytes } from "./nl_addr.ts";

export { NTF_SELF, NUD_PERMANENT };

function build(
  sock: NlSocket,
  dev: LinkRef,
  ip: string | undefined,
  mac: string | undefined,
  fdb: boolean,
): Owned {
  const lib = rtnl();
  const neigh = new Owned(lib.rtnl_neigh_alloc(), (p) => lib.rtnl_neigh_put(p));
  try {
    const n = neigh.ptr as Deno.PointerObject;
    lib.rtnl_neigh_set_ifindex(n, resolveIndex(sock, dev));
    if (ip !== undefined) {
      using dst = ipAddr(ip);
      // set_dst sets the family from the address; an FDB entry's family is then overridden below.
      sock.check(lib.rtnl_neigh_set_dst(n, dst.ptr), `neighbour ${ip}`);
    }
    if (mac !== undefined) {
      using ll = macAddr(mac);
      lib.rtnl_neigh_set_lladdr(n, ll.ptr);
    }
    if (fdb) {
      lib.rtnl_neigh_set_family(n, AF.BRIDGE);
      lib.rtnl_neigh_set_flags(n, NTF_SELF);
    }
    lib.rtnl_neigh_set_state(n, NUD_PERMANENT);
    return neigh;
  } catch (err) {
    neigh.free();
    throw err;
  }
}

function replace(sock: NlSocket, neigh: Owned, op: string): void {
  sock.begin();
  sock.check(rtnl().rtnl_neigh_add(sock.ptr, neigh.ptr, NLM_F.CREATE | NLM_F.REPLACE), op);
}

function remove(sock: NlSocket, neigh: Owned, op: string): boolean {
  sock.begin();
  try {
    sock.check(rtnl().rtnl_neigh_delete(sock.ptr, neigh.ptr, 0), op);
    return true;
  } catch (err) {
    if (err instanceof NetlinkError && err.notFound) return false;
    throw err;
  }
}

/** A neighbour or FDB entry's fields, parsed (see {@linkcode neighFields}). */
export interface NeighFields {
  ip: IP;
  mac: Uint8Array;
  fdb: boolean;
}

/** Parses an entry's address and MAC for {@linkcode appendNeighReplace}; throws a clear error for bad ones. */
export function neighFields(ip: string, mac: string, fdb: boolean): NeighFields {
  return { ip: parseIP(ip), mac: macBytes(mac), fdb };
}

/**
 * Appends to `b` the raw request libnl's `rtnl_neigh_add(…, NLM_F_CREATE|NLM_F_REPLACE)` sends for a
 * permanent neighbour entry (`fdb`: a bridge FDB entry with NTF_SELF, `ip` its remote VTEP), so that many
 * can go to the kernel in one datagram (ffi/netlink.ts `batch`). `flags` adds to REQUEST|CREATE|REPLACE
 * (NLM_F_ACK, or not).
 */
export function appendNeighReplace(
  b: NlBuilder,
  seq: number,
  flags: number,
  index: number,
  e: NeighFields,
): void {
  const { ip, mac } = e;
  b.begin(RTM.NEWNEIGH, NLM_F.REQUEST | NLM_F.CREATE | NLM_F.REPLACE | flags, seq);
  const at = b.struct(NDMSG_LEN);
  b.view.setUint8(at, e.fdb ? AF.BRIDGE : ip.family === 4 ? AF.INET : AF.INET6); // ndm_family
  b.view.setInt32(at + 4, index, true); // ndm_ifindex
  b.view.setUint16(at + 8, NUD_PERMANENT, true); // ndm_state
  b.view.setUint8(at + 10, e.fdb ? NTF_SELF : 0); // ndm_flags
  b.bytes(NDA.DST, ipBytes(ip)).bytes(NDA.LLADDR, mac).end();
}

/** Installs or updates a permanent neighbour entry. */
export function neighReplace(sock: NlSocket, spec: NeighSpec): void {
  using n = build(sock, spec.dev, spec.ip, spec.mac, false);
  replace(sock, n, `neighbour replace ${spec.ip} lladdr ${spec.mac}`);
}

/** Deletes a neighbour entry; returns false when there was none. */
export function neighDelete(sock: NlSocket, spec: { dev: LinkRef; ip: string }): boolean {
  using n = build(sock, spec.dev, spec.ip, undefined, false);
  return remove(sock, n, `neighbour delete ${spec.ip}`);
}

/** Installs or updates a permanent FDB entry (mac → dst) on a VXLAN device. */
export function fdbReplace(sock: NlSocket, spec: FdbSpec): void {
  using n = build(sock, spec.dev, spec.dst, spec.mac, true);
  replace(sock, n, `fdb replace ${spec.mac} dst ${spec.dst}`);
}

/** Deletes an FDB entry (with `dst`, only that remote); returns false when there was none. */
export function fdbDelete(sock: NlSocket, spec: { dev: LinkRef; mac: string; dst?: string }): boolean {
  using n = build(sock, spec.dev, spec.dst, spec.mac, true);
  return remove(sock, n, `fdb delete ${spec.mac}`);
}

// NL_CACHE_AF_ITER: dump each family of the neighbour cache (AF_UNSPEC, then AF_BRIDGE) in turn; a plain
// AF_UNSPEC dump does not return the bridge FDB.
const NL_CACHE_AF_ITER = LIBNL.CACHE_AF_ITER;

function dump(sock: NlSocket, bridge: boolean, visit: (obj: Deno.PointerObject) => void): void {
  const slot = pointerSlot();
  sock.begin();
  sock.check(
    bridge
      ? rtnl().rtnl_neigh_alloc_cache_flags(sock.ptr, slot, NL_CACHE_AF_ITER)
      : rtnl().rtnl_neigh_alloc_cache(sock.ptr, slot),
    bridge ? "fdb list" : "neighbour list",
  );
  using cache = new Owned(outPointer(slot), (p) => nl().nl_cache_free(p));
  for (let obj = nl().nl_cache_get_first(cache.ptr); obj !== null; obj = nl().nl_cache_get_next(obj)) {
    visit(obj);
  }
}

/** The neighbour entry `obj` (IPv4/IPv6 only), or undefined. */
function neighInfo(
  lib: ReturnType<typeof rtnl>,
  obj: Deno.PointerObject,
  idx: number,
): NeighInfo | undefined {
  const fam = lib.rtnl_neigh_get_family(obj);
  if (fam !== AF.INET && fam !== AF.INET6) return undefined;
  const ip = readIP(lib.rtnl_neigh_get_dst(obj));
  if (ip === undefined) return undefined;
  return {
    index: idx,
    family: fam === AF.INET ? 4 : 6,
    ip,
    mac: readMac(lib.rtnl_neigh_get_lladdr(obj)),
    state: lib.rtnl_neigh_get_state(obj),
  };
}

/** The FDB entry `obj` (a bridge-family neighbour). */
function fdbInfo(lib: ReturnType<typeof rtnl>, obj: Deno.PointerObject, idx: number): FdbInfo {
  const entry: FdbInfo = {
    index: idx,
    mac: readMac(lib.rtnl_neigh_get_lladdr(obj)),
    state: lib.rtnl_neigh_get_state(obj),
    flags: lib.rtnl_neigh_get_flags(obj),
  };
  const dst = readIP(lib.rtnl_neigh_get_dst(obj));
  if (dst !== undefined) entry.dst = dst;
  return entry;
}

/**
 * The ARP/NDP entries and the bridge FDB entries of `devices`, from one dump: the FDB dump walks every
 * neighbour family anyway, so listing both separately read the neighbour table twice (a full pass at
 * 5000 peers reads 10 000 entries fewer this way). Entries of other devices are skipped before any of
 * their fields are read.
 */
export function neighAndFdbList(
  sock: NlSocket,
  devices: ReadonlySet<number>,
): { neighs: NeighInfo[]; fdbs: FdbInfo[] } {
  const lib = rtnl();
  const neighs: NeighInfo[] = [], fdbs: FdbInfo[] = [];
  dump(sock, true, (obj) => {
    const idx = lib.rtnl_neigh_get_ifindex(obj);
    if (!devices.has(idx)) return;
    if (lib.rtnl_neigh_get_family(obj) === AF.BRIDGE) fdbs.push(fdbInfo(lib, obj, idx));
    else {
      const n = neighInfo(lib, obj, idx);
      if (n) neighs.push(n);
    }
  });
  return { neighs, fdbs };
}

/** Lists ARP/NDP entries, optionally of one device and family. */
export function neighList(sock: NlSocket, filter: { dev?: LinkRef; family?: 4 | 6 } = {}): NeighInfo[] {
  const lib = rtnl();
  const index = filter.dev === undefined ? undefined : resolveIndex(sock, filter.dev);
  const out: NeighInfo[] = [];
  dump(sock, false, (obj) => {
    const idx = lib.rtnl_neigh_get_ifindex(obj);
    if (index !== undefined && idx !== index) return;
    const n = neighInfo(lib, obj, idx);
    if (n && (filter.family === undefined || n.family === filter.family)) out.push(n);
  });
  return out;
}

/** Lists bridge FDB entries, optionally of one device. */
export function fdbList(sock: NlSocket, filter: { dev?: LinkRef } = {}): FdbInfo[] {
  const lib = rtnl();
  const index = filter.dev === undefined ? undefined : resolveIndex(sock, filter.dev);
  const out: FdbInfo[] = [];
  dump(sock, true, (obj) => {
    if (lib.rtnl_neigh_get_family(obj) !== AF.BRIDGE) return;
    const idx = lib.rtnl_neigh_get_ifindex(obj);
    if (index === undefined || idx === index) out.push(fdbInfo(lib, obj, idx));
  });
  return out;
}
