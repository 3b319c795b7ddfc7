/**
 * Route requests over an {@linkcode RtnlSocket}: replace one route, list a namespace's routes (a pod's
 * namespace holds a handful).
 *
 * @module
 */
import { formatIP, ipBytes, ipFromBytes, parseIP, parseNet } from "../ip.ts";
import { type RouteInfo, WEFT_ROUTE_PROTOCOL } from "../types.ts";
import { attrBytes, attrMap, attrU32, NlBuilder, payload } from "../nl_codec.ts";
import { AF, NLM_F, RT_SCOPE, RT_TABLE_MAIN, RTA, RTM, RTMSG_LEN, RTN, RTNH_F_ONLINK } from "../nl_consts.ts";
import { afOf } from "./addrs.ts";
import type { RtnlSocket } from "./socket.ts";
const TYPES: Record<number, RouteInfo["type"]> = {
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

/** The routes of the main table (of one family, or both). */
export function routeList(s: RtnlSocket, family?: 4 | 6): RouteInfo[] {
  const seq = s.nextSeq();
  const b = new NlBuilder().begin(RTM.GETROUTE, NLM_F.REQUEST | NLM_F.DUMP, seq);
  const at = b.struct(RTMSG_LEN);
  b.view.setUint8(at, family === undefined ? 0 : afOf(family));
  b.end();
  const out: RouteInfo[] = [];
  for (const m of s.request(b, seq, "route list")) {
    if (m.type !== RTM.NEWROUTE) continue;
    const dv = m.dv;
    const fam = dv.getUint8(m.at) === AF.INET6 ? 6 : 4;
    const a = attrMap(payload(m, RTMSG_LEN));
    const table = attrU32(a.get(RTA.TABLE)) ?? dv.getUint8(m.at + 4);
    if (table !== RT_TABLE_MAIN) continue;
    const dstBytes = attrBytes(a.get(RTA.DST));
    const gw = attrBytes(a.get(RTA.GATEWAY));
    const info: RouteInfo = {
      dst: `${dstBytes ? formatIP(ipFromBytes(dstBytes)) : fam === 4 ? "0.0.0.0" : "::"}/${
        dv.getUint8(m.at + 1)
      }`,
      family: fam,
      index: attrU32(a.get(RTA.OIF)) ?? 0,
      onlink: (dv.getUint32(m.at + 8, true) & RTNH_F_ONLINK) !== 0,
      type: TYPES[dv.getUint8(m.at + 7)] ?? "other",
      protocol: dv.getUint8(m.at + 5),
      table,
      metric: attrU32(a.get(RTA.PRIORITY)) ?? 0,
      scope: dv.getUint8(m.at + 6),
    };
    if (gw) info.gateway = formatIP(ipFromBytes(gw));
    out.push(info);
  }
  return out;
}
