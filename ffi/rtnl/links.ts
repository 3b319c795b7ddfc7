/**
 * Link requests over an {@linkcode RtnlSocket}: get one link (by name or index), list a bridge's ports,
 * create a bridge or a veth pair (the peer straight into another namespace), change master/up/MTU, turn
 * hairpin on, delete. Every lookup names its link: nothing here dumps all links unless asked to.
 *
 * @module
 */
import { NetlinkError } from "../errors.ts";
import type { LinkInfo, LinkRef } from "../types.ts";
import { attrBytes, attrMap, attrString, attrU32, NlBuilder, type NlMessage, payload } from "../nl_codec.ts";
import {
  AF,
  IFF,
  IFINFOMSG_LEN,
  IFLA,
  IFLA_BRPORT_MODE,
  IFLA_INFO,
  NLA_F_NESTED,
  NLM_F,
  RTEXT_FILTER_SKIP_STATS,
  RTM,
  VETH_INFO_PEER,
} from "../nl_consts.ts";
import type { RtnlSocket } from "./socket.ts";

const ENODEV = 19;

function describe(ref: LinkRef): string {
  return typeof ref === "number" ? `ifindex ${ref}` : ref;
}

/** Appends a struct ifinfomsg. */
function ifinfo(b: NlBuilder, o: { family?: number; index?: number; flags?: number; change?: number } = {}) {
  const at = b.struct(IFINFOMSG_LEN);
  const v = b.view;
  v.setUint8(at, o.family ?? AF.UNSPEC);
  v.setInt32(at + 4, o.index ?? 0, true);
  v.setUint32(at + 8, o.flags ?? 0, true);
  v.setUint32(at + 12, o.change ?? 0, true);
}

/** Encodes a MAC `"aa:bb:cc:dd:ee:ff"`. */
export function macBytes(mac: string): Uint8Array {
  const parts = mac.split(":");
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p))) {
    throw new NetlinkError(`MAC ${mac}`, 22, 0, "not a MAC address");
  }
  return Uint8Array.from(parts, (p) => parseInt(p, 16));
}

function formatMac(b: Uint8Array | undefined): string {
  if (!b || b.length !== 6) return "";
  let s = "";
  for (let i = 0; i < 6; i++) s += (i ? ":" : "") + (b[i]! < 16 ? "0" : "") + b[i]!.toString(16);
  return s;
}

/** Decodes an RTM_NEWLINK message. */
function linkInfo(m: NlMessage): LinkInfo {
  const dv = m.dv;
  const flags = dv.getUint32(m.at + 8, true);
  const a = attrMap(payload(m, IFINFOMSG_LEN));
  const li = a.get(IFLA.LINKINFO);
  const kind = li ? attrString(attrMap(li.data).get(IFLA_INFO.KIND)) : undefined;
  return {
    index: dv.getInt32(m.at + 4, true),
    name: attrString(a.get(IFLA.IFNAME)) ?? "",
    kind: kind ?? "",
    mtu: attrU32(a.get(IFLA.MTU)) ?? 0,
    mac: formatMac(attrBytes(a.get(IFLA.ADDRESS))),
    up: (flags & IFF.UP) !== 0,
    running: (flags & (IFF.RUNNING | IFF.LOWER_UP)) !== 0,
    master: attrU32(a.get(IFLA.MASTER)) ?? 0,
  };
}

/** One link by name or index, or `undefined` when there is none. */
export function linkGet(s: RtnlSocket, ref: LinkRef): LinkInfo | undefined {
  const seq = s.nextSeq();
  const b = new NlBuilder().begin(RTM.GETLINK, NLM_F.REQUEST | NLM_F.ACK, seq);
  ifinfo(b, { index: typeof ref === "number" ? ref : 0 });
  if (typeof ref === "string") b.str(IFLA.IFNAME, ref);
  b.u32(IFLA.EXT_MASK, RTEXT_FILTER_SKIP_STATS).end();
  try {
    const r = s.request(b, seq, `link get ${describe(ref)}`).find((m) => m.type === RTM.NEWLINK);
    return r ? linkInfo(r) : undefined;
  } catch (err) {
    if (err instanceof NetlinkError && err.errno === ENODEV) return undefined;
    throw err;
  }
}

/** The links enslaved to `master` (a bridge's ports); the kernel filters when it can. */
export function linkPorts(s: RtnlSocket, master: number): LinkInfo[] {
  const seq = s.nextSeq();
  const b = new NlBuilder().begin(RTM.GETLINK, NLM_F.REQUEST | NLM_F.DUMP, seq);
  ifinfo(b);
  b.u32(IFLA.MASTER, master).u32(IFLA.EXT_MASK, RTEXT_FILTER_SKIP_STATS).end();
  return s.request(b, seq, `link list master ${master}`)
    .filter((m) => m.type === RTM.NEWLINK)
    .map(linkInfo)
    .filter((l) => l.master === master);
}

function create(s: RtnlSocket, name: string, what: string, build: (b: NlBuilder) => void): LinkInfo {
  const seq = s.nextSeq();
  const b = new NlBuilder().begin(RTM.NEWLINK, NLM_F.REQUEST | NLM_F.ACK | NLM_F.CREATE | NLM_F.EXCL, seq);
  ifinfo(b);
  b.str(IFLA.IFNAME, name);
  build(b);
  b.end();
  s.request(b, seq, `link add ${what} ${name}`);
  const info = linkGet(s, name);
  if (!info) {
    throw new NetlinkError(`link add ${what} ${name}`, ENODEV, 0, "created but not found afterwards");
  }
  return info;
}

/** Creates a bridge (down) with a fixed MAC, so the kernel never changes it as ports come and go. */
export function linkAddBridge(s: RtnlSocket, o: { name: string; mac?: string; mtu?: number }): LinkInfo {
  return create(s, o.name, "bridge", (b) => {
    if (o.mac) b.bytes(IFLA.ADDRESS, macBytes(o.mac));
    if (o.mtu) b.u32(IFLA.MTU, o.mtu);
    const li = b.nestStart(IFLA.LINKINFO);
    b.str(IFLA_INFO.KIND, "bridge").nestEnd(li);
  });
}

/** Options of {@linkcode linkAddVeth}. */
export interface RawVethOptions {
  /** Name of the end created in the socket's namespace. */
  name: string;
  /** Name of the other end. */
  peerName: string;
  /** An open fd of the namespace the peer is created in (default: the socket's). */
  peerNetnsFd?: number;
  /** MTU of both ends. */
  mtu?: number;
}

/** Creates a veth pair in one request, the peer already in its namespace; returns this end. */
export function linkAddVeth(s: RtnlSocket, o: RawVethOptions): LinkInfo {
  return create(s, o.name, "veth", (b) => {
    if (o.mtu) b.u32(IFLA.MTU, o.mtu);
    const li = b.nestStart(IFLA.LINKINFO);
    b.str(IFLA_INFO.KIND, "veth");
    const data = b.nestStart(IFLA_INFO.DATA);
    const peer = b.nestStart(VETH_INFO_PEER);
    ifinfo(b); // the peer's own struct ifinfomsg, then its attributes
    b.str(IFLA.IFNAME, o.peerName);
    if (o.mtu) b.u32(IFLA.MTU, o.mtu);
    if (o.peerNetnsFd !== undefined) b.u32(IFLA.NET_NS_FD, o.peerNetnsFd);
    b.nestEnd(peer).nestEnd(data).nestEnd(li);
  });
}

/** Changes of {@linkcode linkSet}. */
export interface LinkChanges {
  /** Enslave to this ifindex (0 releases). */
  master?: number;
  /** Administratively up or down. */
  up?: boolean;
  /** MTU. */
  mtu?: number;
}

/** Applies `c` to link `index` in one request. */
export function linkSet(s: RtnlSocket, index: number, c: LinkChanges): void {
  const seq = s.nextSeq();
  const b = new NlBuilder().begin(RTM.NEWLINK, NLM_F.REQUEST | NLM_F.ACK, seq);
  ifinfo(b, { index, flags: c.up ? IFF.UP : 0, change: c.up === undefined ? 0 : IFF.UP });
  if (c.master !== undefined) b.u32(IFLA.MASTER, c.master);
  if (c.mtu !== undefined) b.u32(IFLA.MTU, c.mtu);
  b.end();
  s.request(b, seq, `link set ${describe(index)} ${JSON.stringify(c)}`);
}

/** Turns hairpin mode of bridge port `index` on or off (IFLA_BRPORT_MODE). */
export function linkSetHairpin(s: RtnlSocket, index: number, on: boolean): void {
  const seq = s.nextSeq();
  const b = new NlBuilder().begin(RTM.SETLINK, NLM_F.REQUEST | NLM_F.ACK, seq);
  ifinfo(b, { family: AF.BRIDGE, index });
  const p = b.nestStart(IFLA.PROTINFO | NLA_F_NESTED);
  b.u8(IFLA_BRPORT_MODE, on ? 1 : 0).nestEnd(p).end();
  s.request(b, seq, `link set hairpin ${describe(index)}`);
}

/** Deletes a link (a veth takes its peer with it); false when there was none. */
export function linkDelete(s: RtnlSocket, ref: LinkRef): boolean {
  const seq = s.nextSeq();
  const b = new NlBuilder().begin(RTM.DELLINK, NLM_F.REQUEST | NLM_F.ACK, seq);
  ifinfo(b, { index: typeof ref === "number" ? ref : 0 });
  if (typeof ref === "string") b.str(IFLA.IFNAME, ref);
  b.end();
  try {
    s.request(b, seq, `link delete ${describe(ref)}`);
    return true;
  } catch (err) {
    if (err instanceof NetlinkError && err.notFound) return false;
    throw err;
  }
}
