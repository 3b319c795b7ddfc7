/**
 * Datapath entries (route, neighbour, FDB) that a backend wants for a remote lease, how they are keyed,
 * and how they compare with what the kernel reports.
 *
 * @module
 */
import { NUD_PERMANENT } from "../../ffi/nl_consts.ts";
import type { FdbInfo, FdbSpec, NeighInfo, NeighSpec, RouteInfo, RouteSpec } from "../../ffi/mod.ts";

/**
 * An entry a backend's own driver keeps (a WireGuard peer, a udp peer table row): `key` names it within
 * the driver, `value` is all of it that matters, as text (equal text = nothing to change).
 */
export interface DriverEntry {
  /** Always `driver`. */
  kind: "driver";
  /** The {@linkcode EntryDriver} that applies it. */
  driver: string;
  /** Its identity within the driver (e.g. a public key). */
  key: string;
  /** Its contents as text (e.g. endpoint and allowed IPs). */
  value: string;
}

/** One entry weft installs. Devices are ifindexes (resolved by the backend). */
export type Entry =
  | { kind: "neigh"; spec: NeighSpec & { dev: number } }
  | { kind: "fdb"; spec: FdbSpec & { dev: number } }
  | { kind: "route"; spec: RouteSpec & { dev: number } }
  | DriverEntry;

/** The entries netlink keeps (everything but driver entries). */
export type KernelEntry = Exclude<Entry, DriverEntry>;

/**
 * Keeps the entries of one kind that netlink routes/neighbours/FDB do not cover. Everything `list()`
 * returns is owned by weft: what no lease wants is pruned, like weft's routes.
 */
export interface EntryDriver {
  /** Name, matched against `DriverEntry.driver`. */
  readonly name: string;
  /** Installs or replaces `key` with `value`. */
  apply(key: string, value: string): void;
  /** Removes `key` (absent is fine). */
  remove(key: string): void;
  /** Every entry it holds now: key → value. */
  list(): Map<string, string>;
}

/** What the kernel has, as read in one full pass. */
export interface KernelState {
  /** weft's routes (protocol 87) in the main table. */
  routes: RouteInfo[];
  /** Neighbour entries on weft's devices. */
  neighs: NeighInfo[];
  /** FDB entries on weft's devices. */
  fdbs: FdbInfo[];
  /** Driver entries, by `driver key` → value. */
  driverEntries?: Map<string, string>;
}

/** A stable identity for an entry (what a replace overwrites). */
export function entryId(e: Entry): string {
  switch (e.kind) {
    case "route":
      return `route ${e.spec.dst}`;
    case "neigh":
      return `neigh ${e.spec.dev} ${e.spec.ip}`;
    case "fdb":
      return `fdb ${e.spec.dev} ${e.spec.mac} ${e.spec.dst}`;
    case "driver":
      return `driver ${e.driver} ${e.key}`;
  }
}

/** NUD_PERMANENT: the entries weft installs (and the only ones it may prune). */
export { NUD_PERMANENT };

/**
 * One full pass's read of the kernel, indexed by entry identity (what {@linkcode entryId} names) with
 * the strings the read already holds as keys: routes by destination, neighbours by device then address,
 * FDB entries by device then MAC. {@linkcode has} compares a wanted entry with the kernel's and *claims*
 * the kernel's entry of that identity, equal or not; what no wanted entry claimed is what the pass may
 * prune. No key string is built per entry and no set of wanted ids is kept: at 5000 peers those were a
 * third of a pass's CPU, and garbage that lived as long as the pass, so V8 promoted it.
 */
export class KernelIndex {
  /** Routes by destination. */
  readonly routes: Map<string, RouteInfo>;
  /** Neighbours by ifindex, then address. */
  readonly neighs = new Map<number, Map<string, NeighInfo>>();
  /** FDB entries with a remote address, by ifindex, then MAC (a MAC may have several remotes). */
  readonly fdbs = new Map<number, Map<string, FdbInfo | FdbInfo[]>>();
  /** Driver entries by `driver key` → value. */
  readonly driverEntries: Map<string, string>;
  readonly #claimed = new Set<object>();
  readonly #claimedDrivers = new Set<string>();

  /** Indexes a kernel read. */
  constructor(s: KernelState) {
    this.routes = new Map();
    for (const r of s.routes) this.routes.set(r.dst, r);
    for (const n of s.neighs) {
      let byIp = this.neighs.get(n.index);
      if (!byIp) this.neighs.set(n.index, byIp = new Map());
      byIp.set(n.ip, n);
    }
    for (const f of s.fdbs) {
      if (!f.dst) continue;
      let byMac = this.fdbs.get(f.index);
      if (!byMac) this.fdbs.set(f.index, byMac = new Map());
      const at = byMac.get(f.mac);
      if (at === undefined) byMac.set(f.mac, f);
      else if (Array.isArray(at)) at.push(f);
      else byMac.set(f.mac, [at, f]);
    }
    this.driverEntries = s.driverEntries ?? new Map();
  }

  /** Whether the kernel holds `e` exactly; the kernel's entry of `e`'s identity, if any, is claimed. */
  has(e: Entry): boolean {
    switch (e.kind) {
      case "route": {
        const r = this.routes.get(e.spec.dst);
        if (!r) return false;
        this.#claimed.add(r);
        if (r.type !== (e.spec.type ?? "unicast")) return false;
        if (e.spec.metric !== undefined && r.metric !== e.spec.metric) return false;
        // A blackhole has no next hop (IPv6 reports it on lo).
        if (r.type === "blackhole") return true;
        return r.index === e.spec.dev && r.gateway === e.spec.gateway && r.onlink === !!e.spec.onlink;
      }
      case "neigh": {
        const n = this.neighs.get(e.spec.dev)?.get(e.spec.ip);
        if (!n) return false;
        this.#claimed.add(n);
        return n.mac === e.spec.mac && (n.state & NUD_PERMANENT) !== 0;
      }
      case "fdb": {
        const at = this.fdbs.get(e.spec.dev)?.get(e.spec.mac);
        const f = Array.isArray(at)
          ? at.find((x) => x.dst === e.spec.dst)
          : at?.dst === e.spec.dst
          ? at
          : undefined;
        if (!f) return false;
        this.#claimed.add(f);
        return true;
      }
      case "driver": {
        const id = `${e.driver} ${e.key}`;
        this.#claimedDrivers.add(id);
        return this.driverEntries.get(id) === e.value;
      }
    }
  }

  /** Routes no wanted entry claimed. */
  *unclaimedRoutes(): Iterable<RouteInfo> {
    for (const r of this.routes.values()) if (!this.#claimed.has(r)) yield r;
  }

  /** Neighbours no wanted entry claimed. */
  *unclaimedNeighs(): Iterable<NeighInfo> {
    for (const byIp of this.neighs.values()) {
      for (const n of byIp.values()) if (!this.#claimed.has(n)) yield n;
    }
  }

  /** FDB entries (with a remote) no wanted entry claimed. */
  *unclaimedFdbs(): Iterable<FdbInfo> {
    for (const byMac of this.fdbs.values()) {
      for (const at of byMac.values()) {
        if (!Array.isArray(at)) {
          if (!this.#claimed.has(at)) yield at;
        } else {
          for (const f of at) if (!this.#claimed.has(f)) yield f;
        }
      }
    }
  }

  /** Driver entries (`driver key` → value) no wanted entry claimed. */
  *unclaimedDriverEntries(): Iterable<[string, string]> {
    for (const kv of this.driverEntries) if (!this.#claimedDrivers.has(kv[0])) yield kv;
  }
}
