/**
 * Address requests over an {@linkcode RtnlSocket}: list one interface's addresses (the kernel filters by
 * interface under strict checking), add or replace, delete.
 *
 * @module
 */
import { formatIP, ipBytes, ipFromBytes, parseCIDR } from "../ip.ts";
import { NetlinkError } from "../errors.ts";
import type { AddrInfo } from "../types.ts";
import { attrBytes, attrMap, NlBuilder, payload } from "../nl_codec.ts";
import { AF, IFA, IFA_F_NODAD, IFADDRMSG_LEN, NLM_F, RTM } from "../nl_consts.ts";
import type { RtnlSocket } from "./socket.ts";

/** Address family number of 4 or 6. */
export function afOf(family: 4 | 6): number {
  return family === 4 ? AF.INET : AF.INET6;
}

function ifaddr(b: NlBuilder, family: number, prefix: number, flags: number, index: number): void {
  const at = b.struct(IFADDRMSG_LEN);
  const v = b.view;
  v.setUint8(at, family);
  v.setUint8(at + 1, prefix);
  v.setUint8(at + 2, flags);
  v.setUint32(at + 4, index, true);
}

/** The addresses of interface `index` (of one family, or both). */
export function addrList(s: RtnlSocket, index: number, family?: 4 | 6): AddrInfo[] {
  const seq = s.nextSeq();
  const b = new NlBuilder().begin(RTM.GETADDR, NLM_F.REQUEST | NLM_F.DUMP, seq);
  ifaddr(b, family === undefined ? 0 : afOf(family), 0, 0, s.strict ? index : 0);
  b.end();
  const out: AddrInfo[] = [];
  for (const m of s.request(b, seq, `address list ifindex ${index}`)) {
    if (m.type !== RTM.NEWADDR) continue;
    const dv = m.dv;
    const fam = dv.getUint8(m.at) === AF.INET6 ? 6 : 4;
    const idx = dv.getUint32(m.at + 4, true);
    if (idx !== index || (family !== undefined && fam !== family)) continue;
    const a = attrMap(payload(m, IFADDRMSG_LEN));
    const bytes = attrBytes(a.get(IFA.LOCAL) ?? a.get(IFA.ADDRESS));
    if (!bytes || (bytes.length !== 4 && bytes.length !== 16)) continue;
    out.push({
      index: idx,
      family: fam,
      cidr: `${formatIP(ipFromBytes(bytes))}/${dv.getUint8(m.at + 1)}`,
      scope: dv.getUint8(m.at + 3),
    });
  }
  return out;
}

function addrRequest(type: number, flags: number, index: number, cidr: string, nodad: boolean) {
  const { ip, net } = parseCIDR(cidr);
  const bytes = ipBytes(ip);
  return (seq: number) => {
    const b = new NlBuilder().begin(type, NLM_F.REQUEST | NLM_F.ACK | flags, seq);
    ifaddr(b, afOf(ip.family), net.prefix, nodad && ip.family === 6 ? IFA_F_NODAD : 0, index);
    return b.bytes(IFA.LOCAL, bytes).bytes(IFA.ADDRESS, bytes).end();
  };
}

/** Adds `cidr` to interface `index`: EEXIST when there, unless `replace`. */
export function addrAdd(
  s: RtnlSocket,
  index: number,
  cidr: string,
  o: { replace?: boolean; nodad?: boolean } = {},
): void {
  const seq = s.nextSeq();
  const flags = NLM_F.CREATE | (o.replace ? NLM_F.REPLACE : NLM_F.EXCL);
  const b = addrRequest(RTM.NEWADDR, flags, index, cidr, o.nodad ?? false)(seq);
  s.request(b, seq, `address ${o.replace ? "replace" : "add"} ${cidr}`);
}

/** Deletes `cidr` from interface `index`; false when it was not there. */
export function addrDelete(s: RtnlSocket, index: number, cidr: string): boolean {
  const seq = s.nextSeq();
  const b = addrRequest(RTM.DELADDR, 0, index, cidr, false)(seq);
  try {
    s.request(b, seq, `address delete ${cidr}`);
    return true;
  } catch (err) {
    if (err instanceof NetlinkError && err.notFound) return false;
    throw err;
  }
}
