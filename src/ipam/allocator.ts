/**
 * host-local's allocation policy over {@linkcode IpamStore}: round robin from the address after
 * `last_reserved_ip.<range>`, skipping the network address, the gateway and (IPv4) the broadcast
 * address; one address per (container, ifname) and range. Callers hold the store lock
 * ({@linkcode IpamStore.locked}) around {@linkcode allocate}: the O_EXCL file create alone is enough
 * for uniqueness, the lock keeps `last_reserved_ip` consistent and the duplicate check race-free.
 *
 * @module
 */
import {
  addIP,
  formatIP,
  formatNet,
  type IP,
  type IPNet,
  lastIP,
  netContains,
  tryParseIP,
} from "../net/ip.ts";
import type { IpamStore } from "./store.ts";

/** Thrown when a range has no free address. */
export class RangeFullError extends Error {
  /** Creates the error for `range`. */
  constructor(readonly range: string) {
    super(`no IP addresses available in range ${range}`);
    this.name = "RangeFullError";
  }
}

/** Thrown when (container, ifname) already holds an address in the range (ADD twice without DEL). */
export class DuplicateAllocationError extends Error {
  /** Creates the error. */
  constructor(readonly ip: string, readonly containerId: string, readonly ifname: string) {
    super(`${ip} is already allocated to ${containerId}/${ifname}: duplicate allocation is not allowed`);
    this.name = "DuplicateAllocationError";
  }
}

/** One range to allocate from. */
export interface AllocRange {
  /** The subnet. */
  subnet: IPNet;
  /** Address never handed out (the bridge's). */
  gateway: IP;
  /** Index used in `last_reserved_ip.<index>` (host-local's range-set position). */
  index: number;
}

/** The usable span of a subnet, as host-local computes it. */
export function usableSpan(subnet: IPNet): { first: IP; last: IP } {
  const first = addIP(subnet.ip, 1);
  const last = subnet.ip.family === 4 ? addIP(lastIP(subnet), -1) : lastIP(subnet);
  return { first, last };
}

/** Options of {@linkcode allocate}. */
export interface AllocateOptions {
  /**
   * Refuse when (container, ifname) already holds an address in the range, as host-local does (default
   * true). That reads every allocation file, so its cost grows with the pods on the node; the CNI
   * plugin turns it off and detects a second ADD in constant time instead (its saved attachment record
   * and the host veth, whose name is derived from container and ifname).
   */
  duplicateCheck?: boolean;
}

/** Allocates the next free address of `range` for (container, ifname). */
export function allocate(
  store: IpamStore,
  range: AllocRange,
  containerId: string,
  ifname: string,
  opts: AllocateOptions = {},
): IP {
  const { subnet, gateway, index } = range;
  if (opts.duplicateCheck ?? true) {
    for (const a of store.list()) {
      const ip = tryParseIP(a.ip);
      if (ip && netContains(subnet, ip) && a.containerId === containerId && a.ifname === ifname) {
        throw new DuplicateAllocationError(a.ip, containerId, ifname);
      }
    }
  }
  const { first, last } = usableSpan(subnet);
  const size = last.value - first.value + 1n;
  const prev = store.lastReserved(index);
  let next = prev && netContains(subnet, prev) && prev.value >= first.value && prev.value < last.value
    ? addIP(prev, 1)
    : first;
  // After the first taken address, the folder's names are read once and taken ones skipped without a
  // create attempt: on a nearly full range that wrapped around, hundreds of failed O_EXCL creates (each a
  // thrown error) cost ~10 ms; one readdir ~1 ms. The create stays the authority (O_EXCL).
  let taken: Set<string> | undefined;
  for (let i = 0n; i < size; i++) {
    const ip = next;
    next = ip.value >= last.value ? first : addIP(ip, 1);
    if (ip.value === gateway.value) continue;
    if (taken?.has(formatIP(ip))) continue;
    if (store.reserve(ip, containerId, ifname, index)) return ip;
    taken ??= store.names();
  }
  throw new RangeFullError(formatNet(subnet));
}

/** Formats what {@linkcode allocate} returns with the subnet's prefix, e.g. `10.244.3.5/24`. */
export function withPrefix(ip: IP, subnet: IPNet): string {
  return `${formatIP(ip)}/${subnet.prefix}`;
}
