/**
 * Interface address operations (add, replace, delete, list) for IPv4 and IPv6.
 *
 * @module
 */
import { outPointer, Owned, pointerSlot } from "./cmem.ts";
import { NetlinkError } from "./errors.ts";
import { nl, rtnl } from "./loader.ts";
import { AF, ipAddr, readCidr } from "./nl_addr.ts";
import { resolveIndex } from "./links.ts";
import { NLM_F, type NlSocket } from "./socket.ts";
import type { AddrInfo, LinkRef } from "./types.ts";
import { IFA_F_NODAD } from "./nl_consts.ts";

/** Options of an address add. */
export interface AddrOptions {
  /** IPv6: skip duplicate address detection (the address is never "tentative"). */
  nodad?: boolean;
}

function buildAddr(sock: NlSocket, ref: LinkRef, cidr: string, opts: AddrOptions = {}): Owned {
  const lib = rtnl();
  const addr = new Owned(lib.rtnl_addr_alloc(), (p) => lib.rtnl_addr_put(p));
  try {
    const p = addr.ptr as Deno.PointerObject;
    lib.rtnl_addr_set_ifindex(p, resolveIndex(sock, ref));
    using local = ipAddr(cidr.includes("/") ? cidr : `${cidr}/${cidr.includes(":") ? 128 : 32}`);
    sock.check(lib.rtnl_addr_set_local(p, local.ptr), `address ${cidr}`);
    if (opts.nodad) lib.rtnl_addr_set_flags(p, IFA_F_NODAD);
    return addr;
  } catch (err) {
    addr.free();
    throw err;
  }
}

/** Adds `cidr` (e.g. `"10.244.3.1/24"`) to a link; `replace` makes an existing one success. */
export function addrAdd(
  sock: NlSocket,
  ref: LinkRef,
  cidr: string,
  replace: boolean,
  opts: AddrOptions = {},
): void {
  using addr = buildAddr(sock, ref, cidr, opts);
  sock.begin();
  sock.check(
    rtnl().rtnl_addr_add(sock.ptr, addr.ptr, replace ? NLM_F.REPLACE : 0),
    `address ${replace ? "replace" : "add"} ${cidr}`,
  );
}

/** Deletes `cidr` from a link; returns false when it was not there. */
export function addrDelete(sock: NlSocket, ref: LinkRef, cidr: string): boolean {
  using addr = buildAddr(sock, ref, cidr);
  sock.begin();
  try {
    sock.check(rtnl().rtnl_addr_delete(sock.ptr, addr.ptr, 0), `address delete ${cidr}`);
    return true;
  } catch (err) {
    if (err instanceof NetlinkError && err.notFound) return false;
    throw err;
  }
}

/** Lists addresses, optionally of one link and one family. */
export function addrList(sock: NlSocket, ref?: LinkRef, family?: 4 | 6): AddrInfo[] {
  const lib = rtnl();
  const index = ref === undefined ? undefined : resolveIndex(sock, ref);
  const slot = pointerSlot();
  sock.begin();
  sock.check(lib.rtnl_addr_alloc_cache(sock.ptr, slot), "address list");
  using cache = new Owned(outPointer(slot), (p) => nl().nl_cache_free(p));
  const out: AddrInfo[] = [];
  for (let obj = nl().nl_cache_get_first(cache.ptr); obj !== null; obj = nl().nl_cache_get_next(obj)) {
    const fam = lib.rtnl_addr_get_family(obj) === AF.INET6 ? 6 : 4;
    if (family !== undefined && fam !== family) continue;
    const idx = lib.rtnl_addr_get_ifindex(obj);
    if (index !== undefined && idx !== index) continue;
    const cidr = readCidr(lib.rtnl_addr_get_local(obj), lib.rtnl_addr_get_prefixlen(obj));
    if (cidr) out.push({ index: idx, family: fam, cidr, scope: lib.rtnl_addr_get_scope(obj) });
  }
  return out;
}
