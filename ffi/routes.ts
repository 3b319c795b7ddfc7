/**
 * Route operations: replace (idempotent), add, delete, list, and the kernel's lookup (`ip route get`).
 * Routes carry weft's protocol number by default so the reconciler can tell its own routes from
 * everybody else's. Changes go through libnl; the list is the raw socket's (ffi/rtnl/routes.ts).
 *
 * @module
 */
import { Owned } from "./cmem.ts";
import { NetlinkError } from "./errors.ts";
import { nl, rtnl } from "./loader.ts";
import { AF, ipAddr, netAddr } from "./nl_addr.ts";
import { formatIP, ipBytes, ipFromBytes, parseIP, parseNet } from "./ip.ts";
import { resolveIndex } from "./links.ts";
import { NlBuilder, parseAttrs } from "./nl_codec.ts";
import { RTN_NAMES } from "./rtnl/routes.ts";
import { NLM_F, type NlSocket } from "./socket.ts";
import { type RouteLookup, type RouteSpec, WEFT_ROUTE_PROTOCOL } from "./types.ts";
import { RT_SCOPE, RT_TABLE_MAIN, RTA, RTM, RTMSG_LEN, RTN, RTNH_F_ONLINK } from "./nl_consts.ts";

const RTN_BY_NAME = {
  unicast: RTN.UNICAST,
  local: RTN.LOCAL,
  blackhole: RTN.BLACKHOLE,
  unreachable: RTN.UNREACHABLE,
} as const;

function familyOfDst(dst: string): 4 | 6 {
  if (dst === "default") return 4;
  if (dst === "default6") return 6;
  return dst.includes(":") ? 6 : 4;
}

/** Builds a libnl route; `forDelete` leaves protocol, scope and type as wildcards unless given. */
function buildRoute(sock: NlSocket, spec: RouteSpec, forDelete: boolean): Owned {
  const lib = rtnl();
  const route = new Owned(lib.rtnl_route_alloc(), (p) => lib.rtnl_route_put(p));
  try {
    const r = route.ptr as Deno.PointerObject;
    const family = familyOfDst(spec.dst);
    const op = `route ${spec.dst}`;
    sock.check(lib.rtnl_route_set_family(r, family === 4 ? AF.INET : AF.INET6), op);
    {
      using dst = netAddr(spec.dst);
      sock.check(lib.rtnl_route_set_dst(r, dst.ptr), op);
    }
    lib.rtnl_route_set_table(r, spec.table ?? RT_TABLE_MAIN);
    const type = spec.type ?? (forDelete ? undefined : "unicast");
    sock.check(lib.rtnl_route_set_type(r, type ? RTN_BY_NAME[type] : 0), op);
    const protocol = spec.protocol ?? (forDelete ? 0 : WEFT_ROUTE_PROTOCOL);
    lib.rtnl_route_set_protocol(r, protocol);
    if (spec.metric !== undefined) lib.rtnl_route_set_priority(r, spec.metric);
    if (spec.src !== undefined) {
      using src = ipAddr(spec.src);
      sock.check(lib.rtnl_route_set_pref_src(r, src.ptr), op);
    }
    // A blackhole (or unreachable) route has no next hop; neither has a device given as ifindex 0.
    const hasNexthop = (type === undefined || type === "unicast" || type === "local") &&
      (spec.gateway !== undefined || (spec.dev !== undefined && spec.dev !== 0));
    let scope = spec.scope;
    if (scope === undefined) {
      if (forDelete) scope = RT_SCOPE.NOWHERE; // the kernel's wildcard for deletes
      else if (type !== "unicast") scope = RT_SCOPE.UNIVERSE;
      else scope = spec.gateway === undefined && spec.dev !== undefined ? RT_SCOPE.LINK : RT_SCOPE.UNIVERSE;
    }
    lib.rtnl_route_set_scope(r, scope);
    if (hasNexthop) {
      const nh = lib.rtnl_route_nh_alloc();
      if (nh === null) throw new NetlinkError(op, 12, 0, "rtnl_route_nh_alloc failed");
      if (spec.dev !== undefined) lib.rtnl_route_nh_set_ifindex(nh, resolveIndex(sock, spec.dev));
      if (spec.gateway !== undefined) {
        using gw = ipAddr(spec.gateway);
        lib.rtnl_route_nh_set_gateway(nh, gw.ptr);
      }
      if (spec.onlink) lib.rtnl_route_nh_set_flags(nh, RTNH_F_ONLINK);
      lib.rtnl_route_add_nexthop(r, nh); // the route owns the next hop from here on
    }
    return route;
  } catch (err) {
    route.free();
    throw err;
  }
}

/**
 * Writes into `b` (after its message header, or as a bare payload) a unicast route naming next-hop object
 * `spec.nexthopId` (ffi/nexthops.ts): libnl 3.7 knows no RTA_NH_ID. Its gateway, device and on-link flag
 * are the object's.
 */
export function writeNexthopRoute(b: NlBuilder, spec: RouteSpec & { nexthopId: number }): void {
  const dst = parseNet(spec.dst);
  const rtm = b.struct(RTMSG_LEN);
  b.view.setUint8(rtm, dst.ip.family === 4 ? AF.INET : AF.INET6); // rtm_family
  b.view.setUint8(rtm + 1, dst.prefix); // rtm_dst_len
  b.view.setUint8(rtm + 4, RT_TABLE_MAIN); // rtm_table (spec.table goes in RTA_TABLE)
  b.view.setUint8(rtm + 5, spec.protocol ?? WEFT_ROUTE_PROTOCOL); // rtm_protocol
  b.view.setUint8(rtm + 6, spec.scope ?? RT_SCOPE.UNIVERSE); // rtm_scope
  b.view.setUint8(rtm + 7, RTN.UNICAST); // rtm_type
  b.bytes(RTA.DST, ipBytes(dst.ip));
  if (spec.table !== undefined) b.u32(RTA.TABLE, spec.table);
  if (spec.metric !== undefined) b.u32(RTA.PRIORITY, spec.metric);
  if (spec.src !== undefined) b.bytes(RTA.PREFSRC, ipBytes(parseIP(spec.src)));
  b.u32(RTA.NH_ID, spec.nexthopId);
}

/** Sends {@linkcode writeNexthopRoute}'s route with NLM_F_CREATE and `flags` (REPLACE or EXCL). */
function sendNexthopRoute(
  sock: NlSocket,
  spec: RouteSpec & { nexthopId: number },
  flags: number,
  op: string,
) {
  const b = new NlBuilder();
  writeNexthopRoute(b, spec);
  sock.requestRaw(RTM.NEWROUTE, b.bytesOut(), op, NLM_F.CREATE | flags);
}

/** Installs a route, replacing any route to the same destination (idempotent). */
export function routeReplace(sock: NlSocket, spec: RouteSpec): void {
  const op = `route replace ${spec.dst}`;
  if (spec.nexthopId !== undefined) {
    return sendNexthopRoute(sock, { ...spec, nexthopId: spec.nexthopId }, NLM_F.REPLACE, op);
  }
  using route = buildRoute(sock, spec, false);
  sock.begin();
  sock.check(rtnl().rtnl_route_add(sock.ptr, route.ptr, NLM_F.REPLACE), op);
}

/** Adds a route; fails with EEXIST when one to the same destination exists. */
export function routeAdd(sock: NlSocket, spec: RouteSpec): void {
  const op = `route add ${spec.dst}`;
  if (spec.nexthopId !== undefined) {
    return sendNexthopRoute(sock, { ...spec, nexthopId: spec.nexthopId }, NLM_F.EXCL, op);
  }
  using route = buildRoute(sock, spec, false);
  sock.begin();
  sock.check(rtnl().rtnl_route_add(sock.ptr, route.ptr, NLM_F.EXCL), op);
}

/** Deletes a route matching `spec`; returns false when there was none. */
export function routeDelete(sock: NlSocket, spec: RouteSpec): boolean {
  using route = buildRoute(sock, spec, true);
  sock.begin();
  try {
    sock.check(rtnl().rtnl_route_delete(sock.ptr, route.ptr, 0), `route delete ${spec.dst}`);
    return true;
  } catch (err) {
    if (err instanceof NetlinkError && err.notFound) return false;
    throw err;
  }
}

/**
 * The route the kernel would use to reach `ip` (`ip route get <ip>`, one RTM_GETROUTE request): the
 * output interface, gateway and preferred source address. An address the kernel cannot reach throws
 * {@linkcode NetlinkError} (ENETUNREACH, EHOSTUNREACH, …).
 */
export function routeGet(sock: NlSocket, ip: string): RouteLookup {
  const addr = parseIP(ip);
  const op = `route get ${ip}`;
  const b = new NlBuilder();
  const rtm = b.struct(RTMSG_LEN);
  b.view.setUint8(rtm, addr.family === 4 ? AF.INET : AF.INET6); // rtm_family
  b.view.setUint8(rtm + 1, addr.family === 4 ? 32 : 128); // rtm_dst_len
  const payload = b.bytes(RTA.DST, ipBytes(addr)).bytesOut();
  const lib = nl();
  const msg = lib.nlmsg_alloc_simple(RTM.GETROUTE, 0);
  if (msg === null) throw new NetlinkError(op, 12, 0, "nlmsg_alloc failed");
  try {
    sock.check(lib.nlmsg_append(msg, payload, BigInt(payload.length), 4), op);
    sock.begin();
    sock.check(lib.nl_send_auto(sock.ptr, msg), op);
  } finally {
    lib.nlmsg_free(msg);
  }
  const [reply] = sock.receive(op);
  sock.waitForAck(op); // libnl asked for an ACK too; leave none behind for the next request
  if (!reply || reply.length < RTMSG_LEN) {
    throw new NetlinkError(op, 61, 0, "no route in the kernel's answer");
  }
  const out: RouteLookup = {
    family: addr.family,
    type: RTN_NAMES[reply[7]!] ?? "other",
    index: 0,
  };
  for (const a of parseAttrs(reply.subarray(RTMSG_LEN))) {
    const view = new DataView(a.data.buffer, a.data.byteOffset, a.data.byteLength);
    if (a.type === RTA.OIF) out.index = view.getUint32(0, true);
    else if (a.type === RTA.GATEWAY) out.gateway = formatIP(ipFromBytes(a.data));
    else if (a.type === RTA.PREFSRC) out.src = formatIP(ipFromBytes(a.data));
  }
  return out;
}
