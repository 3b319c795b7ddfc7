/**
 * weft never replaces a route it does not own. Its routes carry protocol 87; a connected route (protocol
 * kernel), a static one, a DHCP or BGP one to the same destination belongs to somebody else, and a lease
 * that wants that destination is refused and reported instead of forced. (Deletes are safe by
 * construction: weft deletes with protocol 87, and the kernel then only deletes a protocol-87 route.)
 *
 * How it knows whose a destination is, without a route dump per route: a cache of the main table
 * (destinations of weft's routes and the first foreign route per destination), filled from the dump each
 * full reconcile pass makes anyway, and before the first apply. Then:
 * - destination held by a foreign route (any metric — a foreign route with a higher metric would still
 *   lose its traffic to ours): refused ({@linkcode RouteRefusedError});
 * - destination known as weft's: replaced (idempotent, as before);
 * - unknown destination: added with NLM_F_EXCL, which cannot overwrite anything; on EEXIST the cache is
 *   refreshed from one dump and the route replaced when it is weft's, refused when it is not.
 * - destination held by exactly the route weft wants (same gateway, device and metric) of protocol boot,
 *   which is what flanneld's routes are (it sets no protocol): adopted, i.e. replaced by weft's, so a node
 *   switched from flanneld keeps its routes and weft owns them from then on (docs/operations.md).
 * What remains: a foreign route with another metric, added after the last dump to a destination weft
 * then programs for the first time, coexists with weft's until the next full pass refreshes the cache
 * (one resync); weft's route is then reported as refused and the foreign one is never touched.
 *
 * @module
 */
import {
  type Netlink,
  NetlinkError,
  type RouteInfo,
  type RouteSpec,
  WEFT_ROUTE_PROTOCOL,
} from "../../ffi/mod.ts";
import { log } from "../log.ts";
import { LAST_RESORT_METRIC } from "./blackhole.ts";

const logger = log("datapath", "routes");

/** Names of the route protocols one meets (iproute2's rt_protos). */
const PROTOCOLS: Record<number, string> = {
  1: "redirect",
  2: "kernel",
  3: "boot",
  4: "static",
  11: "zebra",
  12: "bird",
  16: "dhcp",
  186: "bgp",
  187: "isis",
  188: "ospf",
  189: "rip",
};

/** The name of route protocol `p` (`kernel`, `static`…), or its number. */
export function protocolName(p: number): string {
  return PROTOCOLS[p] ?? String(p);
}

/** A desired route whose destination holds a route weft does not own: refused, not forced. */
export class RouteRefusedError extends Error {
  /** Refuses `dst` because of `owner`. */
  constructor(readonly dst: string, readonly owner: RouteInfo) {
    super(
      `route ${dst} refused: the destination holds a ${
        owner.type === "unicast" ? "" : `${owner.type} `
      }route of protocol ${protocolName(owner.protocol)}${
        owner.gateway ? ` via ${owner.gateway}` : ""
      } (ifindex ${owner.index}, metric ${owner.metric}) that weft does not own`,
    );
    this.name = "RouteRefusedError";
  }
}

/**
 * Whether `owner` is the very route `spec` describes, as flanneld programs it: protocol boot (flanneld
 * sets none), unicast, the same gateway, output device and metric. Replacing it changes only its owner.
 */
export function isFlanneldRoute(owner: RouteInfo, spec: RouteSpec): boolean {
  return owner.protocol === 3 && owner.type === "unicast" && owner.gateway === spec.gateway &&
    typeof spec.dev === "number" && owner.index === spec.dev &&
    owner.metric === (spec.metric ?? (owner.family === 6 ? 1024 : 0));
}

/** The route operations the guard needs (a {@linkcode Netlink} handle). */
export type RouteOps = Pick<Netlink, "routeAdd" | "routeReplace" | "routeList">;

/** Applies weft's routes without ever replacing anybody else's (see the module comment). */
export class RouteGuard {
  #ours = new Set<string>();
  #foreign = new Map<string, RouteInfo>();
  #learned = false;
  #reported = new Map<string, string>();
  /** Refusals reported (a destination refused again for the same owner is not counted twice). */
  refused = 0;

  /** Guards the routes applied through `nl`. */
  constructor(private readonly nl: RouteOps) {}

  /** Learns the main table from a dump of every protocol; returns weft's routes (protocol 87). */
  learn(all: RouteInfo[]): RouteInfo[] {
    const ours: RouteInfo[] = [];
    this.#ours = new Set();
    this.#foreign = new Map();
    for (const r of all) {
      if (r.protocol === WEFT_ROUTE_PROTOCOL) {
        ours.push(r);
        this.#ours.add(r.dst);
      } else if (!this.#foreign.has(r.dst)) {
        this.#foreign.set(r.dst, r);
      }
    }
    // A refusal whose foreign route is gone may be reported again should it come back.
    for (const dst of this.#reported.keys()) if (!this.#foreign.has(dst)) this.#reported.delete(dst);
    this.#learned = true;
    return ours;
  }

  /** Reads the main table again. */
  refresh(): void {
    this.learn(this.nl.routeList({}));
  }

  /** The foreign route holding `dst`, as last seen. */
  foreignAt(dst: string): RouteInfo | undefined {
    return this.#foreign.get(dst);
  }

  /**
   * How {@linkcode apply} would write `spec` when that is a plain add or replace ("add": nobody's route is
   * at its destination; "replace": weft's is), or undefined when it needs `apply` itself (somebody else's
   * route there, flanneld's to adopt, the last-resort blackhole). After a planned write succeeded, call
   * {@linkcode wrote}; an "add" that failed with EEXIST goes to `apply`, which looks again. Its cases are
   * `apply`'s branches where no foreign route holds `dst`: a change to one is a change to the other.
   */
  plan(spec: RouteSpec): "add" | "replace" | undefined {
    if (!this.#learned) this.refresh();
    if (spec.metric === LAST_RESORT_METRIC || this.#foreign.has(spec.dst)) return undefined;
    return this.#ours.has(spec.dst) ? "replace" : "add";
  }

  /** Records that a planned write of weft's route to `dst` is in the kernel. */
  wrote(dst: string): void {
    this.#ours.add(dst);
  }

  /** Installs `spec` (a weft route), or throws {@linkcode RouteRefusedError}. */
  apply(spec: RouteSpec): void {
    if (!this.#learned) this.refresh();
    const dst = spec.dst;
    if (spec.metric === LAST_RESORT_METRIC) {
      // Behind every other route to dst (the blackhole of --ip-blackhole-route, src/datapath/blackhole.ts):
      // it never takes their traffic, so it goes beside them. Added, never replacing anybody's.
      if (this.#ours.has(dst)) this.nl.routeReplace(spec);
      else this.nl.routeAdd(spec);
      this.#ours.add(dst);
      return;
    }
    let owner = this.#foreign.get(dst);
    if (owner && isFlanneldRoute(owner, spec)) {
      this.nl.routeReplace(spec);
      this.#foreign.delete(dst);
      this.#ours.add(dst);
      logger.info("route {dst} via {gateway}: flanneld's (protocol boot), adopted", {
        dst,
        gateway: spec.gateway,
      });
      return;
    }
    if (!owner && this.#ours.has(dst)) {
      this.nl.routeReplace(spec);
      return;
    }
    if (!owner) {
      try {
        this.nl.routeAdd(spec);
        this.#ours.add(dst);
        return;
      } catch (err) {
        if (!(err instanceof NetlinkError && err.exists)) throw err;
      }
      this.refresh();
      owner = this.#foreign.get(dst);
      if (!owner) {
        if (!this.#ours.has(dst)) {
          throw new Error(`route ${dst}: exists, then vanished while looked at; retrying`);
        }
        this.nl.routeReplace(spec);
        return;
      }
    }
    const err = new RouteRefusedError(dst, owner);
    const id = `${owner.protocol} ${owner.index} ${owner.gateway ?? ""} ${owner.metric}`;
    if (this.#reported.get(dst) !== id) {
      this.#reported.set(dst, id);
      this.refused++;
      logger.error("{error}", { error: err.message });
    }
    throw err;
  }

  /** Forgets `dst` as weft's (its route was deleted). */
  forget(dst: string): void {
    this.#ours.delete(dst);
  }
}
