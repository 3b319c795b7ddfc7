/**
 * Permanent neighbour (ARP/NDP) entries and bridge FDB entries (NTF_SELF, for VXLAN devices).
 *
 * libnl needs explicit NLM_F_CREATE|NLM_F_REPLACE on neighbour adds for replace semantics. Lists are dumps
 * on the raw socket (ffi/rtnl/socket.ts), read in place.
 *
 * @module
 */
import { Owned } from "./cmem.ts";
import { NetlinkError } from "./errors.ts";
import { rtnl } from "./loader.ts";
import { AF, ipAddr, macAddr, macBytes } from "./nl_addr.ts";
import { addrAttr, ipText, macText } from "./addr_text.ts";
import { resolveIndex } from "./links.ts";
import { NLM_F, type NlSocket } from "./socket.ts";
import type { FdbInfo, FdbSpec, LinkRef, NeighInfo, NeighSpec } from "./types.ts";
import { NDA, NDMSG_LEN, NTF_SELF, NUD_PERMANENT, RTM } from "./nl_consts.ts";
import { NlBuilder, type NlMessage } from "./nl_codec.ts";
import type { RtnlSocket } from "./rtnl/socket.ts";
import { type IP, ipBytes, parseIP } from "./ip.ts";

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

/**
 * Calls `visit` with each entry of a neighbour dump of `family` — AF_UNSPEC: ARP and NDP; AF_BRIDGE: the
 * bridge FDB (an AF_UNSPEC dump does not return it) — in place in the receive buffer of `raw`: a full pass
 * reads ~10 000 entries at 5000 peers, which libnl's cache made into native objects and ~10 FFI calls each.
 */
function eachNeigh(
  raw: RtnlSocket,
  family: number,
  op: string,
  visit: (m: NlMessage, index: number) => void,
) {
  const seq = raw.nextSeq();
  const b = new NlBuilder().begin(RTM.GETNEIGH, NLM_F.REQUEST | NLM_F.DUMP, seq);
  b.view.setUint8(b.struct(NDMSG_LEN), family); // ndm_family; the rest zero (strict checking wants that)
  b.end();
  raw.dumpEach(b, seq, op, (m) => {
    if (m.type === RTM.NEWNEIGH && m.end - m.at >= NDMSG_LEN) visit(m, m.dv.getInt32(m.at + 4, true));
  });
}

/** The address in attribute `type` of neighbour message `m` (see addrAttr), or undefined. */
function ndaBytes(m: NlMessage, type: number): Uint8Array | undefined {
  return addrAttr(m.dv, m.at + NDMSG_LEN, m.end, type);
}

/** The ARP/NDP entry of message `m` (IPv4/IPv6 only), or undefined. */
function neighInfo(m: NlMessage, index: number): NeighInfo | undefined {
  const fam = m.dv.getUint8(m.at);
  if (fam !== AF.INET && fam !== AF.INET6) return undefined;
  const ip = ipText(ndaBytes(m, NDA.DST));
  if (ip === undefined) return undefined;
  return {
    index,
    family: fam === AF.INET ? 4 : 6,
    ip,
    mac: macText(ndaBytes(m, NDA.LLADDR)),
    state: m.dv.getUint16(m.at + 8, true),
  };
}

/** The FDB entry of message `m` (a bridge-family neighbour); a VXLAN remote's address is 4 or 16 bytes. */
function fdbInfo(m: NlMessage, index: number): FdbInfo {
  const entry: FdbInfo = {
    index,
    mac: macText(ndaBytes(m, NDA.LLADDR)),
    state: m.dv.getUint16(m.at + 8, true),
    flags: m.dv.getUint8(m.at + 10),
  };
  const dst = ipText(ndaBytes(m, NDA.DST));
  if (dst !== undefined) entry.dst = dst;
  return entry;
}

/**
 * The ARP/NDP entries and the bridge FDB entries of `devices`. Entries of other devices are skipped before
 * any of their fields are read.
 */
export function neighAndFdbList(
  raw: RtnlSocket,
  devices: ReadonlySet<number>,
): { neighs: NeighInfo[]; fdbs: FdbInfo[] } {
  const neighs: NeighInfo[] = [], fdbs: FdbInfo[] = [];
  eachNeigh(raw, AF.UNSPEC, "neighbour list", (m, index) => {
    if (!devices.has(index)) return;
    const n = neighInfo(m, index);
    if (n) neighs.push(n);
  });
  eachNeigh(raw, AF.BRIDGE, "fdb list", (m, index) => {
    if (devices.has(index) && m.dv.getUint8(m.at) === AF.BRIDGE) fdbs.push(fdbInfo(m, index));
  });
  return { neighs, fdbs };
}

/** Lists ARP/NDP entries, optionally of one device (ifindex) and family. */
export function neighList(
  raw: RtnlSocket,
  filter: { index?: number | undefined; family?: 4 | 6 | undefined } = {},
): NeighInfo[] {
  const out: NeighInfo[] = [];
  eachNeigh(raw, AF.UNSPEC, "neighbour list", (m, index) => {
    if (filter.index !== undefined && index !== filter.index) return;
    const n = neighInfo(m, index);
    if (n && (filter.family === undefined || n.family === filter.family)) out.push(n);
  });
  return out;
}

/** Lists bridge FDB entries, optionally of one device (ifindex). */
export function fdbList(raw: RtnlSocket, filter: { index?: number | undefined } = {}): FdbInfo[] {
  const out: FdbInfo[] = [];
  eachNeigh(raw, AF.BRIDGE, "fdb list", (m, index) => {
    if (m.dv.getUint8(m.at) !== AF.BRIDGE) return;
    if (filter.index === undefined || index === filter.index) out.push(fdbInfo(m, index));
  });
  return out;
}
