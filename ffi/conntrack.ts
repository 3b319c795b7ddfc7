/**
 * Connection tracking over netlink (ctnetlink, NETLINK_NETFILTER), without a subprocess and without
 * libnetfilter_conntrack: {@linkcode conntrackFlushAddress} deletes every tracked connection an address
 * takes part in — so a pod address handed to a new pod starts clean instead of inheriting the old pod's
 * accepted connections (a packet that matches an existing entry is "established" and never judged).
 *
 * Messages are ffi/rtnl's framing (nlmsghdr, then `struct nfgenmsg`, then attributes) on a socket of
 * the netfilter family; like ffi/rtnl it binds two FFI symbols. ctnetlink deletes one entry per request,
 * by its original tuple, so a flush is: dump the entries involving the address (IPCTNL_MSG_CT_GET with
 * NLM_F_DUMP), then IPCTNL_MSG_CT_DELETE each one with the tuple (and zone) the dump gave back, copied
 * verbatim — which works for every protocol (TCP, UDP, ICMP ids, …) without decoding it.
 *
 * For one or two addresses the dumps ask the kernel to filter (CTA_FILTER, Linux ≥ 5.8): three per
 * address, by original source, original destination and reply source (a connection DNATed to the
 * address: a Service's); for more, one unfiltered walk serves them all. Each returned entry is still
 * checked here — an older kernel ignores the filter and returns every entry of the family,
 * which is then only slower. A filtered dump returns the address's
 * own few entries — but the kernel still walks its whole table for each (~25 ms at 262144 buckets on
 * this kind of machine), so the dumps' `recvfrom` runs off the JS thread (`requestAsync`); the deletes,
 * one hash lookup each, stay synchronous.
 *
 * @module
 */
import { formatIP, type IP, ipBytes, ipFromBytes, parseIP } from "./ip.ts";
import { attrBytes, attrMap, type NlAttr, NlBuilder, payload } from "./nl_codec.ts";
import { AF, NETLINK, NLA_F_NESTED, NLM_F } from "./nl_consts.ts";
import { RtnlSocket } from "./rtnl/socket.ts";

const NFNL_SUBSYS_CTNETLINK = 1;
const IPCTNL_MSG_CT_GET = 1;
const IPCTNL_MSG_CT_DELETE = 2;

/** linux/netfilter/nfnetlink_conntrack.h */
const CTA = { TUPLE_ORIG: 1, TUPLE_REPLY: 2, ID: 12, ZONE: 18, FILTER: 25 } as const;
const CTA_TUPLE_IP = 1;
const CTA_IP = { V4_SRC: 1, V4_DST: 2, V6_SRC: 3, V6_DST: 4 } as const;
const CTA_FILTER_ORIG_FLAGS = 1;
const CTA_FILTER_REPLY_FLAGS = 2;
const FILTER_IP_SRC = 1 << 0;
const FILTER_IP_DST = 1 << 1;
const ENOENT = 2;

/** Which end of which direction a dump filters on. */
type Side = { tuple: typeof CTA.TUPLE_ORIG | typeof CTA.TUPLE_REPLY; end: "src" | "dst" };

const SIDES: Side[] = [
  { tuple: CTA.TUPLE_ORIG, end: "src" },
  { tuple: CTA.TUPLE_ORIG, end: "dst" },
  { tuple: CTA.TUPLE_REPLY, end: "src" },
];

function ipAttr(family: 4 | 6, end: "src" | "dst"): number {
  return family === 4
    ? (end === "src" ? CTA_IP.V4_SRC : CTA_IP.V4_DST)
    : (end === "src" ? CTA_IP.V6_SRC : CTA_IP.V6_DST);
}

function header(b: NlBuilder, msg: number, flags: number, seq: number, family: 4 | 6): void {
  b.begin((NFNL_SUBSYS_CTNETLINK << 8) | msg, NLM_F.REQUEST | flags, seq);
  const at = b.struct(4); // struct nfgenmsg { u8 family; u8 version; __be16 res_id; }
  b.view.setUint8(at, family === 4 ? AF.INET : AF.INET6);
}

/** One dumped entry: what deleting it takes (its original tuple and zone, as the kernel sent them). */
interface Entry {
  id: number | undefined;
  origTuple: Uint8Array;
  zone: Uint8Array | undefined;
}

/** The addresses of a tuple attribute's CTA_TUPLE_IP. */
function tupleIPs(tuple: NlAttr | undefined): IP[] {
  const ip = tuple ? attrMap(tuple.data).get(CTA_TUPLE_IP) : undefined;
  return ip ? [...attrMap(ip.data).values()].map((a) => ipFromBytes(a.data.slice())) : [];
}

/**
 * The entries of `family` that involve an address of `wanted`: filtered by the kernel on `filter`'s
 * address and side when given (one walk per side), else the whole family's table in one walk.
 */
async function dump(
  s: RtnlSocket,
  family: 4 | 6,
  wanted: Set<string>,
  filter?: { ip: IP; side: Side },
): Promise<Entry[]> {
  const b = new NlBuilder();
  const seq = s.nextSeq();
  header(b, IPCTNL_MSG_CT_GET, NLM_F.DUMP, seq, family);
  if (filter) {
    const { ip, side } = filter;
    const t = b.nestStart(side.tuple | NLA_F_NESTED);
    const n = b.nestStart(CTA_TUPLE_IP | NLA_F_NESTED);
    b.bytes(ipAttr(ip.family, side.end), ipBytes(ip));
    b.nestEnd(n).nestEnd(t);
    // CTA_FILTER is parsed strictly: without NLA_F_NESTED the kernel answers EINVAL.
    const f = b.nestStart(CTA.FILTER | NLA_F_NESTED);
    const flags = side.end === "src" ? FILTER_IP_SRC : FILTER_IP_DST;
    b.u32(side.tuple === CTA.TUPLE_ORIG ? CTA_FILTER_ORIG_FLAGS : CTA_FILTER_REPLY_FLAGS, flags);
    b.nestEnd(f);
  }
  b.end();
  const out: Entry[] = [];
  for (const m of await s.requestAsync(b, seq, "conntrack dump")) {
    const a = attrMap(payload(m, 4));
    const orig = a.get(CTA.TUPLE_ORIG);
    const involved = [...tupleIPs(orig), ...tupleIPs(a.get(CTA.TUPLE_REPLY))]
      .some((x) => wanted.has(formatIP(x)));
    if (!orig || !involved) continue; // not ours (or an older kernel ignored the filter)
    const id = a.get(CTA.ID);
    out.push({
      id: id && id.data.length >= 4
        ? new DataView(id.data.buffer, id.data.byteOffset, 4).getUint32(0, false)
        : undefined,
      origTuple: orig.data.slice(),
      zone: attrBytes(a.get(CTA.ZONE)),
    });
  }
  return out;
}

function remove(s: RtnlSocket, family: 4 | 6, e: Entry): boolean {
  const b = new NlBuilder();
  const seq = s.nextSeq();
  header(b, IPCTNL_MSG_CT_DELETE, NLM_F.ACK, seq, family);
  b.bytes(CTA.TUPLE_ORIG | NLA_F_NESTED, e.origTuple);
  if (e.zone) b.bytes(CTA.ZONE, e.zone);
  b.end();
  try {
    s.request(b, seq, "conntrack delete");
    return true;
  } catch (err) {
    if ((err as { errno?: number }).errno === ENOENT) return false; // already gone (expired meanwhile)
    throw err;
  }
}

/** Whether the running kernel filters conntrack dumps itself (learned on first use). */
let kernelFilters: boolean | undefined;

/**
 * Up to this many addresses of one family are flushed with filtered dumps (three walks each); more, with
 * one unfiltered walk whose entries are matched here.
 */
const FILTERED_MAX = 2;

async function entriesOf(s: RtnlSocket, family: 4 | 6, ips: IP[]): Promise<Entry[]> {
  const wanted = new Set(ips.map(formatIP));
  if (ips.length > FILTERED_MAX || kernelFilters === false) return await dump(s, family, wanted);
  const out: Entry[] = [];
  for (const ip of ips) {
    for (const side of SIDES) {
      try {
        out.push(...await dump(s, family, wanted, { ip, side }));
        kernelFilters ??= true;
      } catch (err) {
        if (kernelFilters !== undefined) throw err;
        kernelFilters = false; // a kernel that rejects the filter: one walk of the family, matched here
        return await dump(s, family, wanted);
      }
    }
  }
  return out;
}

/**
 * Deletes every tracked connection one of `addresses` takes part in (as source, destination, or DNAT
 * target), in the network namespace the socket is opened in: the calling thread's, or the one `enter`
 * switches to (a function that runs its argument there, as ffi/netns.ts `withNetns` does). Returns how
 * many were deleted. Throws {@linkcode NetlinkError} when the kernel refuses (no ctnetlink).
 */
export async function conntrackFlushAddresses(
  addresses: string[],
  enter: <T>(fn: () => T) => T = (fn) => fn(),
): Promise<number> {
  const ips = addresses.map(parseIP);
  using s = enter(() => RtnlSocket.open(undefined, NETLINK.NETFILTER));
  const seen = new Set<string>();
  let deleted = 0;
  for (const family of [4, 6] as const) {
    const mine = ips.filter((ip) => ip.family === family);
    if (mine.length === 0) continue;
    for (const e of await entriesOf(s, family, mine)) {
      const key = e.id !== undefined ? `id:${e.id}` : [...e.origTuple].join(",");
      if (seen.has(key)) continue;
      seen.add(key);
      if (remove(s, family, e)) deleted++;
    }
  }
  return deleted;
}

/** {@linkcode conntrackFlushAddresses} for one address. */
export function conntrackFlushAddress(
  address: string,
  enter: <T>(fn: () => T) => T = (fn) => fn(),
): Promise<number> {
  return conntrackFlushAddresses([address], enter);
}
