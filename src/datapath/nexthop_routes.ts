/**
 * Peers' IPv4 routes through next-hop objects (Linux ≥ 5.3): `nexthop replace id N via GW dev D onlink`
 * and then `route replace SUBNET nhid N`, instead of `route replace SUBNET via GW dev D onlink`.
 *
 * Why: the kernel finds an existing next hop for a new IPv4 route by a hash that leaves the gateway out,
 * so flannel's routes — one gateway per peer, all on flannel.1 (or all on the uplink, host-gw) — share
 * one hash bucket, and every insert walks every earlier one. At 5000 peers that was 0.44 s of kernel time
 * (`ip -batch`; a quarter of weft's whole 5000-Node start, kernel profile: fib_create_info), growing with
 * the square of the peers. Routes naming next-hop objects are hashed by the object's id: 0.11 s for the
 * same 5000, objects included (ffi/nexthops.ts). Forwarding is the same, and so is what a route dump
 * shows (the kernel reports the object's gateway, device and on-link flag on the route, unless
 * net.ipv4.nexthop_compat_mode is 0), so drift checks, flanneld's adoption and `ip route` read as before.
 *
 * Ids: {@linkcode WEFT_NEXTHOP_BASE} plus the subnet's upper 24 bits — the same id for the same subnet in
 * every run, so a restarted agent replaces its own objects instead of leaving new ones. An id another
 * program already holds (another protocol) is never touched: that route goes in plainly. So does every
 * route the scheme does not cover (IPv6, prefixes longer than /24, routes without a gateway), and every
 * route on a kernel without next-hop objects (EOPNOTSUPP, said once) or one that would not show a route's
 * gateway on the route (`net.ipv4.nexthop_compat_mode` 0).
 *
 * Objects no route of weft's names any more (the route deleted with its lease, or refused after its object
 * was made) are deleted in the next full pass; deleting a route deletes its object at once.
 *
 * @module
 */
import {
  type Netlink,
  NetlinkError,
  type NexthopInfo,
  type NexthopSpec,
  type RouteInfo,
  type RouteSpec,
  WEFT_ROUTE_PROTOCOL,
} from "../../ffi/mod.ts";
import { log } from "../log.ts";
import { type IPNet, parseCIDR } from "../net/ip.ts";

const logger = log("datapath", "routes");

/** weft's next-hop ids: 0x57 (`W`, its route protocol 87) in the top byte, the subnet's upper bits below. */
export const WEFT_NEXTHOP_BASE = 0x5700_0000;
const EOPNOTSUPP = 95;

/** The next-hop id for destination `dst` (IPv4, prefix ≤ 24), or undefined when the scheme has none. */
export function nexthopIdForDst(dst: string): number | undefined {
  const fast = canonicalV4Net(dst);
  if (fast) {
    const [value, prefix] = fast;
    if (prefix > 24 || prefix < 8) return undefined;
    return WEFT_NEXTHOP_BASE + (((value & (0xffff_ffff << (32 - prefix))) >>> 8) & 0xff_ffff);
  }
  let net: IPNet;
  try {
    net = parseCIDR(dst).net;
  } catch {
    return undefined; // "default", or not an address at all
  }
  if (net.ip.family !== 4 || net.prefix > 24 || net.prefix < 8) return undefined;
  return WEFT_NEXTHOP_BASE + Number(net.ip.value >> 8n);
}

/**
 * `a.b.c.d/p` in canonical form (no leading zeros) as [address, prefix], else undefined. A full pass asks
 * for every route's id; parsing those through parseCIDR (BigInt, objects) cost ~0.3 KB each per pass.
 */
function canonicalV4Net(s: string): [number, number] | undefined {
  let value = 0, part = 0, digits = 0, dots = 0, i = 0;
  for (; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 48 && c <= 57) {
      if (digits > 0 && part === 0) return undefined; // a leading zero
      part = part * 10 + c - 48;
      if (part > 255 || ++digits > 3) return undefined;
    } else if ((c === 46 && dots < 3) || (c === 47 && dots === 3)) {
      if (!digits) return undefined;
      value = value * 256 + part;
      part = digits = 0;
      if (c === 47) break;
      dots++;
    } else return undefined;
  }
  if (i === s.length || i + 1 === s.length) return undefined;
  let prefix = 0;
  for (let j = i + 1; j < s.length; j++) {
    const c = s.charCodeAt(j);
    if (c < 48 || c > 57 || (j > i + 1 && prefix === 0)) return undefined;
    prefix = prefix * 10 + c - 48;
    if (prefix > 32) return undefined;
  }
  return [value >>> 0, prefix];
}

/** The next-hop id for route `spec`, or undefined when it goes in plainly (see the module comment). */
export function nexthopIdFor(spec: RouteSpec): number | undefined {
  if (spec.gateway === undefined || typeof spec.dev !== "number" || spec.src !== undefined) return undefined;
  if ((spec.type ?? "unicast") !== "unicast" || (spec.table ?? 254) !== 254) return undefined;
  if (spec.gateway.includes(":")) return undefined;
  return nexthopIdForDst(spec.dst);
}

/** `net.ipv4.nexthop_compat_mode` of the agent's namespace (unreadable: the kernel default, on). */
function readCompatMode(): boolean {
  try {
    return Deno.readTextFileSync("/proc/sys/net/ipv4/nexthop_compat_mode").trim() !== "0";
  } catch {
    return true;
  }
}

/** Whether `n` is one of weft's next-hop objects (its protocol and id range; `weft cleanup` asks too). */
export function isWeftNexthop(n: Pick<NexthopInfo, "id" | "protocol">): boolean {
  return isWeftNexthopId(n.id, n.protocol);
}

/** {@linkcode isWeftNexthop} of object `id` made by `protocol`. */
function isWeftNexthopId(id: number, protocol: number): boolean {
  return protocol === WEFT_ROUTE_PROTOCOL && (id & 0xff00_0000) === WEFT_NEXTHOP_BASE;
}

/** The netlink operations this needs (a {@linkcode Netlink} handle; tests fake it). */
export type NexthopRouteOps = Pick<
  Netlink,
  "routeAdd" | "routeReplace" | "routeList" | "nexthopReplace" | "nexthopDelete" | "nexthopProtocols"
>;

/** Route operations that put peers' routes behind next-hop objects (see the module comment). */
export class NexthopRoutes {
  /** Unknown until the first use; off on a kernel without next-hop objects. */
  #state: "unknown" | "on" | "off" = "unknown";
  /** Ids held by somebody else's objects. */
  #foreign = new Set<number>();
  /** Objects made and deleted (counters for tests and metrics). */
  readonly stats = { made: 0, pruned: 0 };

  /**
   * Works through `nl`. `compatMode` says whether the kernel shows a route's next-hop object's gateway and
   * device on the route (`net.ipv4.nexthop_compat_mode`, default 1); without that every full pass would
   * see weft's routes as altered, so routes then go in plainly.
   */
  constructor(
    private readonly nl: NexthopRouteOps,
    private readonly compatMode: () => boolean = readCompatMode,
  ) {}

  /** Whether routes go through next-hop objects (false before the first use, and on old kernels). */
  get enabled(): boolean {
    return this.#state === "on";
  }

  /** Adds `spec` (EEXIST when its destination has a route). */
  routeAdd(spec: RouteSpec): void {
    this.nl.routeAdd(this.#via(spec));
  }

  /** Installs `spec`, replacing the route to its destination. */
  routeReplace(spec: RouteSpec): void {
    this.nl.routeReplace(this.#via(spec));
  }

  /** Lists routes (passed through). */
  routeList(filter: Parameters<Netlink["routeList"]>[0] = {}): RouteInfo[] {
    return this.nl.routeList(filter);
  }

  /**
   * Reads the namespace's objects: which ids are somebody else's, and deletes weft's that none of `ours`
   * (weft's routes, as just dumped) names any more. Part of every full pass.
   */
  learn(ours: RouteInfo[]): void {
    if (this.#state === "off") return;
    const all = this.#list();
    if (!all) return;
    const named = new Set<number>();
    for (const r of ours) {
      const id = nexthopIdForDst(r.dst);
      if (id !== undefined) named.add(id);
    }
    for (const [id, protocol] of all) {
      if (!isWeftNexthopId(id, protocol) || named.has(id)) continue;
      if (this.nl.nexthopDelete(id)) this.stats.pruned++;
    }
  }

  /** Deletes the object of `dst`'s route (after the route itself was deleted); absent is fine. */
  forget(dst: string): void {
    const id = nexthopIdForDst(dst);
    if (this.#state !== "on" || id === undefined || this.#foreign.has(id)) return;
    this.nl.nexthopDelete(id);
  }

  /**
   * The namespace's objects (and so which ids are somebody else's), or undefined (and off from now on)
   * when the kernel has none.
   */
  #list(): Map<number, number> | undefined {
    if (this.#state === "unknown" && !this.compatMode()) {
      this.#state = "off";
      logger.info("net.ipv4.nexthop_compat_mode is 0: routes go in with their gateway");
      return undefined;
    }
    try {
      const all = this.nl.nexthopProtocols();
      this.#state = "on";
      this.#foreign = new Set();
      for (const [id, protocol] of all) if (!isWeftNexthopId(id, protocol)) this.#foreign.add(id);
      return all;
    } catch (err) {
      if (!(err instanceof NetlinkError) || err.errno !== EOPNOTSUPP) throw err;
      this.#off(err);
      return undefined;
    }
  }

  #off(err: NetlinkError): void {
    this.#state = "off";
    logger.info("the kernel has no next-hop objects ({error}): routes go in with their gateway", {
      error: err.message,
    });
  }

  /**
   * The next-hop object `spec` would go through and the route naming it, to send in a batch (the object
   * first), or undefined when `spec` goes in plainly (see {@linkcode routeAdd}). After the object was
   * made, call {@linkcode made}; if the kernel refused it, send `spec` through `routeAdd`/`routeReplace`,
   * which try again and fall back to a plain route.
   */
  plan(spec: RouteSpec): { nexthop: NexthopSpec; route: RouteSpec & { nexthopId: number } } | undefined {
    const id = nexthopIdFor(spec);
    if (id === undefined) return undefined;
    if (this.#state === "unknown") this.#list();
    if (this.#state !== "on" || this.#foreign.has(id)) return undefined;
    const { gateway, dev, onlink, ...rest } = spec;
    return {
      nexthop: { id, gateway: gateway!, dev: dev as number, onlink: !!onlink, protocol: WEFT_ROUTE_PROTOCOL },
      route: { ...rest, nexthopId: id },
    };
  }

  /** Counts a next-hop object made by a planned batch. */
  made(): void {
    this.stats.made++;
  }

  /** `spec` naming its next-hop object (made or replaced now), or `spec` as it is. */
  #via(spec: RouteSpec): RouteSpec {
    const id = nexthopIdFor(spec);
    if (id === undefined) return spec;
    // First use: which ids are taken (nothing is pruned here; that needs the dump of weft's routes).
    if (this.#state === "unknown") this.#list();
    if (this.#state !== "on" || this.#foreign.has(id)) return spec;
    try {
      this.nl.nexthopReplace({
        id,
        gateway: spec.gateway!,
        dev: spec.dev as number,
        onlink: !!spec.onlink,
        protocol: WEFT_ROUTE_PROTOCOL, // the object is weft's, whoever's route it replaces
      });
    } catch (err) {
      if (!(err instanceof NetlinkError) || err.errno !== EOPNOTSUPP) throw err;
      this.#off(err);
      return spec;
    }
    this.stats.made++;
    const { gateway: _gw, dev: _dev, onlink: _onlink, ...rest } = spec;
    return { ...rest, nexthopId: id };
  }
}
