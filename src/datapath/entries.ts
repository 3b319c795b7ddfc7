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

/** Whether the kernel holds `e` exactly. */
export function kernelHas(state: KernelIndex, e: Entry): boolean {
  switch (e.kind) {
    case "route": {
      const r = state.routes.get(e.spec.dst);
      if (!r || r.type !== (e.spec.type ?? "unicast")) return false;
      if (e.spec.metric !== undefined && r.metric !== e.spec.metric) return false;
      // A blackhole has no next hop (IPv6 reports it on lo).
      if (r.type === "blackhole") return true;
      return r.index === e.spec.dev && r.gateway === e.spec.gateway && r.onlink === !!e.spec.onlink;
    }
    case "neigh": {
      const n = state.neighs.get(`${e.spec.dev} ${e.spec.ip}`);
      return !!n && n.mac === e.spec.mac && (n.state & NUD_PERMANENT) !== 0;
    }
    case "fdb":
      return state.fdbs.has(`${e.spec.dev} ${e.spec.mac} ${e.spec.dst}`);
    case "driver":
      return state.driverEntries.get(`${e.driver} ${e.key}`) === e.value;
  }
}

/** Kernel state indexed for lookups. */
export interface KernelIndex {
  /** Routes by destination. */
  routes: Map<string, RouteInfo>;
  /** Neighbours by `dev ip`. */
  neighs: Map<string, NeighInfo>;
  /** FDB entries by `dev mac dst`. */
  fdbs: Map<string, FdbInfo>;
  /** Driver entries by `driver key`. */
  driverEntries: Map<string, string>;
}

/** Indexes a kernel read. */
export function indexKernel(s: KernelState): KernelIndex {
  return {
    routes: new Map(s.routes.map((r) => [r.dst, r])),
    neighs: new Map(s.neighs.map((n) => [`${n.index} ${n.ip}`, n])),
    fdbs: new Map(s.fdbs.filter((f) => f.dst).map((f) => [`${f.index} ${f.mac} ${f.dst}`, f])),
    driverEntries: s.driverEntries ?? new Map(),
  };
}
