/**
 * {@linkcode KernelOps} on a real {@linkcode Netlink} handle.
 *
 * @module
 */
import { type Netlink, NetlinkError, WEFT_ROUTE_PROTOCOL } from "../../ffi/mod.ts";
import type { KernelEntry, KernelState } from "./entries.ts";
import type { KernelOps } from "./reconciler.ts";

/** Kernel operations through libnl. */
export class NetlinkKernel implements KernelOps {
  /** Uses `nl` (bound to the node's namespace). */
  constructor(private readonly nl: Netlink) {}

  /** Installs or replaces an entry. */
  apply(e: KernelEntry): void {
    switch (e.kind) {
      case "route":
        this.nl.routeReplace(e.spec);
        return;
      case "neigh":
        this.nl.neighReplace(e.spec);
        return;
      case "fdb":
        this.nl.fdbReplace(e.spec);
        return;
    }
  }

  /** Deletes an entry; an entry (or device) already gone is success. */
  remove(e: KernelEntry): void {
    try {
      switch (e.kind) {
        case "route":
          this.nl.routeDelete({ dst: e.spec.dst, protocol: WEFT_ROUTE_PROTOCOL });
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

  /** Reads weft's routes and the neighbour/FDB entries of `devices`. */
  read(devices: number[]): KernelState {
    const devs = new Set(devices);
    return {
      routes: this.nl.routeList({ protocol: WEFT_ROUTE_PROTOCOL }),
      neighs: devs.size ? this.nl.neighList().filter((n) => devs.has(n.index)) : [],
      fdbs: devs.size ? this.nl.fdbList().filter((f) => devs.has(f.index)) : [],
    };
  }
}
