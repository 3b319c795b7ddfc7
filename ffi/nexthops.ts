/**
 * Next-hop objects (Linux ≥ 5.3, `ip nexthop`): a gateway on a device, kept once by the kernel and named
 * by routes through their id (RTA_NH_ID). libnl 3.7 (Debian 12) has no next-hop objects: the messages are
 * built and read here (ffi/nl_codec.ts); requests go over the libnl socket, dumps over the raw one
 * (ffi/rtnl/socket.ts), read in place.
 *
 * Why weft uses them (src/datapath/nexthop_routes.ts): the kernel keeps one `fib_info` per distinct next
 * hop of IPv4 routes and finds an existing one by a hash that leaves the gateway out, so N routes via N
 * gateways on one device (flannel's vxlan and host-gw routes) share a hash bucket and each insert walks
 * all of them: 5000 peers' routes took 0.44 s of kernel time with `ip -batch`, quadratic in N. A route
 * naming a next-hop object is hashed by the object's id instead: the same 5000 took 0.06 s (0.05 s more
 * for the objects).
 *
 * @module
 */
import { ipBytes, parseIP } from "./ip.ts";
import { addrAttr, ipText } from "./addr_text.ts";
import { attrAt, attrLenAt, NlBuilder, type NlMessage } from "./nl_codec.ts";
import type { RtnlSocket } from "./rtnl/socket.ts";
import { AF, NHA, NHMSG_LEN, RTM, RTNH_F_ONLINK } from "./nl_consts.ts";
import { NLM_F, type NlSocket } from "./socket.ts";
import { type NexthopInfo, type NexthopSpec, WEFT_ROUTE_PROTOCOL } from "./types.ts";

/** Appends `struct nhmsg` to `b`. */
function writeNhmsg(b: NlBuilder, family: number, protocol: number, flags: number): void {
  const at = b.struct(NHMSG_LEN);
  b.view.setUint8(at, family);
  b.view.setUint8(at + 2, protocol);
  b.view.setUint32(at + 4, flags, true);
}

/** A next-hop message's payload: `struct nhmsg` and then the attributes `fill` appends. */
function nhPayload(family: number, protocol: number, flags: number, fill: (b: NlBuilder) => void) {
  const b = new NlBuilder();
  writeNhmsg(b, family, protocol, flags);
  fill(b);
  return b.bytesOut();
}

/** Writes into `b` (after its message header, or as a bare payload) next-hop object `spec`. */
export function writeNexthop(b: NlBuilder, spec: NexthopSpec): void {
  const gw = parseIP(spec.gateway);
  writeNhmsg(
    b,
    gw.family === 4 ? AF.INET : AF.INET6,
    spec.protocol ?? WEFT_ROUTE_PROTOCOL,
    spec.onlink ? RTNH_F_ONLINK : 0,
  );
  b.u32(NHA.ID, spec.id).u32(NHA.OIF, spec.dev).bytes(NHA.GATEWAY, ipBytes(gw));
}

/** Creates next-hop object `spec.id`, or replaces what that id holds (idempotent). */
export function nexthopReplace(sock: NlSocket, spec: NexthopSpec): void {
  const b = new NlBuilder();
  writeNexthop(b, spec);
  const payload = b.bytesOut();
  sock.requestRaw(
    RTM.NEWNEXTHOP,
    payload,
    `nexthop replace id ${spec.id} via ${spec.gateway}`,
    NLM_F.CREATE | NLM_F.REPLACE,
  );
}

/**
 * Deletes next-hop object `id` (the kernel deletes the routes naming it too); false when there was none.
 */
export function nexthopDelete(sock: NlSocket, id: number): boolean {
  try {
    sock.requestRaw(
      RTM.DELNEXTHOP,
      nhPayload(AF.UNSPEC, 0, 0, (b) => b.u32(NHA.ID, id)),
      `nexthop delete id ${id}`,
    );
    return true;
  } catch (err) {
    if ((err as { notFound?: boolean }).notFound) return false;
    throw err;
  }
}

/**
 * Calls `visit` with each next-hop object of the namespace, in place in the receive buffer of `raw` (a
 * full pass reads thousands: copying each out of libnl cost ~2.5 KB a pass per object). A kernel without
 * next-hop objects refuses the dump (EOPNOTSUPP).
 */
function eachNexthop(raw: RtnlSocket, visit: (m: NlMessage) => void): void {
  const seq = raw.nextSeq();
  const b = new NlBuilder().begin(RTM.GETNEXTHOP, NLM_F.REQUEST | NLM_F.DUMP, seq);
  writeNhmsg(b, AF.UNSPEC, 0, 0);
  b.end();
  raw.dumpEach(b, seq, "nexthop list", (m) => {
    if (m.type === RTM.NEWNEXTHOP && m.end - m.at >= NHMSG_LEN) visit(m);
  });
}

/** The u32 attribute `type` of next-hop message `m`, 0 when absent. */
function nhU32(m: NlMessage, type: number): number {
  const at = attrAt(m.dv, m.at + NHMSG_LEN, m.end, type);
  return at >= 0 && attrLenAt(m.dv, at) >= 4 ? m.dv.getUint32(at, true) : 0;
}

/** Every next-hop object of the namespace (none on a kernel without them: the dump is refused). */
export function nexthopList(raw: RtnlSocket): NexthopInfo[] {
  const out: NexthopInfo[] = [];
  eachNexthop(raw, (m) => {
    const id = nhU32(m, NHA.ID);
    if (!id) return;
    const info: NexthopInfo = {
      id,
      protocol: m.dv.getUint8(m.at + 2),
      index: nhU32(m, NHA.OIF),
      onlink: (m.dv.getUint32(m.at + 4, true) & RTNH_F_ONLINK) !== 0,
    };
    const gateway = ipText(addrAttr(m.dv, m.at + NHMSG_LEN, m.end, NHA.GATEWAY));
    if (gateway !== undefined) info.gateway = gateway;
    out.push(info);
  });
  return out;
}

/**
 * Every next-hop object's id and the protocol that made it, and nothing else: what a full pass needs to
 * tell weft's objects from others', without an object per entry.
 */
export function nexthopProtocols(raw: RtnlSocket): Map<number, number> {
  const out = new Map<number, number>();
  eachNexthop(raw, (m) => {
    const id = nhU32(m, NHA.ID);
    if (id) out.set(id, m.dv.getUint8(m.at + 2));
  });
  return out;
}
