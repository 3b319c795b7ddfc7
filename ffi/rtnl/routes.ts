/**
 * Route requests over an {@linkcode RtnlSocket}: replace one route (the CNI plugin's), and list a
 * namespace's routes — a pod's handful, or every route of a node in the agent's full pass (ffi/netlink.ts).
 *
 * @module
 */
import { ipBytes, parseIP, parseNet } from "../ip.ts";
import { addrAttr, ipText, netText } from "../addr_text.ts";
import { type RouteInfo, WEFT_ROUTE_PROTOCOL } from "../types.ts";
import { attrAt, attrLenAt, NlBuilder } from "../nl_codec.ts";
import { AF, NLM_F, RT_SCOPE, RT_TABLE_MAIN, RTA, RTM, RTMSG_LEN, RTN, RTNH_F_ONLINK } from "../nl_consts.ts";
import { afOf } from "./addrs.ts";
import type { RtnlSocket } from "./socket.ts";
/** Route types by RTN_* number (the rest read as "other"). */
export const RTN_NAMES: Record<number, RouteInfo["type"]> = {
  [RTN.UNICAST]: "unicast",
  [RTN.LOCAL]: "local",
  [RTN.BLACKHOLE]: "blackhole",
  [RTN.UNREACHABLE]: "unreachable",
};

/** A unicast route to install. */
export interface RawRoute {
  /** Destination `net/prefix` (`0.0.0.0/0` for the default route). */
  dst: string;
  /** Next hop. */
  gateway?: string;
  /** Output interface index. */
  dev: number;
  /** Route protocol; default weft's. */
  protocol?: number;
}

/** Installs `r`, replacing any route to the same destination (idempotent). */
export function routeReplace(s: RtnlSocket, r: RawRoute): void {
  const dst = parseNet(r.dst);
  const seq = s.nextSeq();
  const b = new NlBuilder().begin(
    RTM.NEWROUTE,
    NLM_F.REQUEST | NLM_F.ACK | NLM_F.CREATE | NLM_F.REPLACE,
    seq,
  );
  const at = b.struct(RTMSG_LEN);
  const v = b.view;
  v.setUint8(at, afOf(dst.ip.family));
  v.setUint8(at + 1, dst.prefix);
  v.setUint8(at + 4, RT_TABLE_MAIN);
  v.setUint8(at + 5, r.protocol ?? WEFT_ROUTE_PROTOCOL);
  v.setUint8(at + 6, r.gateway === undefined ? RT_SCOPE.LINK : RT_SCOPE.UNIVERSE);
  v.setUint8(at + 7, RTN.UNICAST);
  if (dst.prefix > 0) b.bytes(RTA.DST, ipBytes(dst.ip));
  if (r.gateway !== undefined) b.bytes(RTA.GATEWAY, ipBytes(parseIP(r.gateway)));
  b.u32(RTA.OIF, r.dev).end();
  s.request(b, seq, `route replace ${r.dst}`);
}

/** Filters for {@linkcode routeList}. */
export interface RouteFilter {
  /** Only this family. */
  family?: 4 | 6;
  /** Only this table; default main. `0` means every table. */
  table?: number;
  /** Only this protocol. */
  protocol?: number;
}

/**
 * Lists routes (main table unless `filter.table` says otherwise; IPv4 and IPv6 only), read in place from
 * one dump on `raw`: a full pass reads every route, 5000+ at 5000 peers, which libnl's cache made into
 * native objects read back with ~12 FFI calls each. Per route, its first next hop as libnl shows it: the
 * first of RTA_MULTIPATH, else RTA_OIF/RTA_GATEWAY with the header's flags.
 */
export function routeList(raw: RtnlSocket, filter: RouteFilter = {}): RouteInfo[] {
  const seq = raw.nextSeq();
  const b = new NlBuilder().begin(RTM.GETROUTE, NLM_F.REQUEST | NLM_F.DUMP, seq);
  const family = filter.family === undefined ? AF.UNSPEC : afOf(filter.family);
  b.view.setUint8(b.struct(RTMSG_LEN), family); // the rest zero (strict checking wants that)
  b.end();
  const table = filter.table ?? RT_TABLE_MAIN;
  const out: RouteInfo[] = [];
  raw.dumpEach(b, seq, "route list", (m) => {
    if (m.type !== RTM.NEWROUTE || m.end - m.at < RTMSG_LEN) return;
    const { dv, at, end } = m;
    const attrs = at + RTMSG_LEN;
    const famByte = dv.getUint8(at);
    if (famByte !== AF.INET && famByte !== AF.INET6) return; // multicast (IPMR) and MPLS tables
    const tableAt = attrAt(dv, attrs, end, RTA.TABLE);
    const t = tableAt >= 0 ? dv.getUint32(tableAt, true) : dv.getUint8(at + 4);
    if (table !== 0 && t !== table) return;
    const protocol = dv.getUint8(at + 5);
    if (filter.protocol !== undefined && protocol !== filter.protocol) return;
    const fam = famByte === AF.INET6 ? 6 : 4;
    const metricAt = attrAt(dv, attrs, end, RTA.PRIORITY);
    const info: RouteInfo = {
      dst: netText(addrAttr(dv, attrs, end, RTA.DST), dv.getUint8(at + 1), fam),
      family: fam,
      index: 0,
      onlink: false,
      type: RTN_NAMES[dv.getUint8(at + 7)] ?? "other",
      protocol,
      table: t,
      metric: metricAt >= 0 ? dv.getUint32(metricAt, true) : 0,
      scope: dv.getUint8(at + 6),
    };
    let gateway: string | undefined;
    const mp = attrAt(dv, attrs, end, RTA.MULTIPATH);
    if (mp >= 0 && attrLenAt(dv, mp) >= RTNEXTHOP_LEN) {
      // struct rtnexthop { u16 len; u8 flags; u8 hops; s32 ifindex; } and then its attributes.
      const nhEnd = mp + Math.min(dv.getUint16(mp, true), attrLenAt(dv, mp));
      info.index = dv.getInt32(mp + 4, true);
      info.onlink = (dv.getUint8(mp + 2) & RTNH_F_ONLINK) !== 0;
      gateway = ipText(addrAttr(dv, mp + RTNEXTHOP_LEN, nhEnd, RTA.GATEWAY));
    } else {
      const oif = attrAt(dv, attrs, end, RTA.OIF);
      const gw = addrAttr(dv, attrs, end, RTA.GATEWAY);
      if (oif >= 0 || gw) {
        info.index = oif >= 0 ? dv.getInt32(oif, true) : 0;
        info.onlink = (dv.getUint32(at + 8, true) & RTNH_F_ONLINK) !== 0;
        gateway = ipText(gw);
      }
    }
    if (gateway !== undefined) info.gateway = gateway;
    out.push(info);
  });
  return out;
}

/** `struct rtnexthop`, the head of each next hop in RTA_MULTIPATH. */
const RTNEXTHOP_LEN = 8;
