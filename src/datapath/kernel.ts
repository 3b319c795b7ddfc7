/**
 * {@linkcode KernelOps} on a real {@linkcode Netlink} handle. Routes go through a {@linkcode RouteGuard}:
 * a route weft does not own is never replaced (the lease wanting it is refused and reported); and peers'
 * IPv4 routes through next-hop objects ({@linkcode NexthopRoutes}: the kernel inserts thousands of them
 * in linear time, not quadratic).
 *
 * @module
 */
import {
  type BatchRequest,
  type Netlink,
  NetlinkError,
  type RouteSpec,
  WEFT_ROUTE_PROTOCOL,
} from "../../ffi/mod.ts";
import type { KernelEntry, KernelState } from "./entries.ts";
import type { KernelOps } from "./reconciler.ts";
import { NexthopRoutes } from "./nexthop_routes.ts";
import { RouteGuard } from "./route_guard.ts";

/** Kernel operations through libnl. */
export class NetlinkKernel implements KernelOps {
  /** The guard of the main table (its `refused` counts refusals). */
  readonly routes: RouteGuard;
  /** The next-hop objects under weft's routes. */
  readonly nexthops: NexthopRoutes;

  /** Uses `nl` (bound to the node's namespace). */
  constructor(private readonly nl: Netlink) {
    this.nexthops = new NexthopRoutes(nl);
    this.routes = new RouteGuard(this.nexthops);
  }

  /** Installs or replaces an entry; a route over one weft does not own throws `RouteRefusedError`. */
  apply(e: KernelEntry): void {
    switch (e.kind) {
      case "route":
        this.routes.apply(e.spec);
        return;
      case "neigh":
        this.nl.neighReplace(e.spec);
        return;
      case "fdb":
        this.nl.fdbReplace(e.spec);
        return;
    }
  }

  /**
   * Installs many peers' entries (one group each) as {@linkcode apply} on each would, in few kernel round
   * trips (`Netlink.batch`: 256 requests a datagram): first every neighbour and FDB entry; then, for the
   * groups whose entries all went in, each route a plain add or replace of weft's own is as its next-hop
   * object and a route naming it. The rest — a route the guard must look at (somebody else's at its
   * destination, flanneld's to adopt), an add that met EEXIST, a next-hop object the kernel refused —
   * goes through {@linkcode apply}, one by one. Returns each group's first error (undefined: all in place).
   */
  applyMany(groups: readonly (readonly KernelEntry[])[]): (Error | undefined)[] {
    const failed: (Error | undefined)[] = new Array(groups.length).fill(undefined);
    const neighs: BatchRequest[] = [];
    const owner: number[] = [];
    groups.forEach((g, i) => {
      for (const e of g) {
        if (e.kind === "route") continue;
        neighs.push(e);
        owner.push(i);
      }
    });
    this.nl.batch(neighs).forEach((err, k) => {
      if (err) failed[owner[k]!] ??= err;
    });
    // Routes after the neighbour and FDB entries: a route never points at an unresolved peer.
    const planned: { group: number; spec: RouteSpec; add: boolean }[] = [];
    const requests: BatchRequest[] = [];
    const oneByOne: { group: number; spec: RouteSpec }[] = [];
    groups.forEach((g, group) => {
      if (failed[group]) return;
      for (const e of g) {
        if (e.kind !== "route") continue;
        let how: "add" | "replace" | undefined, via: ReturnType<NexthopRoutes["plan"]>;
        try {
          how = this.routes.plan(e.spec);
          via = how && this.nexthops.plan(e.spec);
        } catch {
          via = undefined; // reading the tables failed: apply() meets it again, for this group alone
        }
        if (!via) {
          oneByOne.push({ group, spec: e.spec });
          continue;
        }
        planned.push({ group, spec: e.spec, add: how === "add" });
        requests.push({ kind: "nexthop", spec: via.nexthop }, {
          kind: "route",
          spec: via.route,
          replace: how === "replace",
        });
      }
    });
    const errors = this.nl.batch(requests);
    planned.forEach((p, k) => {
      const [nhErr, routeErr] = [errors[2 * k], errors[2 * k + 1]];
      if (nhErr || (p.add && routeErr instanceof NetlinkError && routeErr.exists)) {
        // The guard looks again (whose route is there?) and NexthopRoutes falls back to a plain route.
        oneByOne.push({ group: p.group, spec: p.spec });
      } else if (routeErr) failed[p.group] ??= routeErr;
      else {
        this.nexthops.made();
        this.routes.wrote(p.spec.dst);
      }
    });
    for (const { group, spec } of oneByOne) {
      if (failed[group]) continue;
      try {
        this.routes.apply(spec);
      } catch (err) {
        failed[group] = err as Error;
      }
    }
    return failed;
  }

  /** Deletes an entry; an entry (or device) already gone is success. */
  remove(e: KernelEntry): void {
    try {
      switch (e.kind) {
        case "route":
          // With the protocol set the kernel deletes only a protocol-87 route: never somebody else's.
          this.routes.forget(e.spec.dst);
          this.nl.routeDelete({ dst: e.spec.dst, protocol: WEFT_ROUTE_PROTOCOL });
          this.nexthops.forget(e.spec.dst);
          return;
        case "neigh":
          this.nl.neighDelete({ dev: e.spec.dev, ip: e.spec.ip });
          return;
        case "fdb":
          this.nl.fdbDelete({ dev: e.spec.dev, mac: e.spec.mac, dst: e.spec.dst });
          return;
      }
    } catch (err) {
      if (err instanceof NetlinkError && err.notFound) return;
      throw err;
    }
  }

  /**
   * Whether the kernel announced a change to a route, a next-hop object, a link, an address or an entry
   * of `devices` since the last call.
   */
  changed(devices: ReadonlySet<number>): boolean {
    return this.nl.kernelChanged(devices);
  }

  /** Reads weft's routes and the neighbour/FDB entries of `devices` (and refreshes the route guard). */
  read(devices: ReadonlySet<number>): KernelState {
    // One dump of the main table serves both: weft's routes, and the guard's view of everyone else's.
    const routes = this.routes.learn(this.nl.routeList());
    this.nexthops.learn(routes);
    if (!devices.size) return { routes, neighs: [], fdbs: [] };
    return { routes, ...this.nl.neighAndFdbList(devices) };
  }
}
