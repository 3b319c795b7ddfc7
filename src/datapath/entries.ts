/**
 * Datapath entries (route, neighbour, FDB) that a backend wants for a remote lease, how they are keyed,
 * and how they compare with what the kernel reports.
 *
 * @module
 */
import type { FdbInfo, FdbSpec, NeighInfo, NeighSpec, RouteInfo, RouteSpec } from "../../ffi/mod.ts";

/** One kernel entry weft installs. Devices are ifindexes (resolved by the backend). */
export type Entry =
  | { kind: "neigh"; spec: NeighSpec & { dev: number } }
  | { kind: "fdb"; spec: FdbSpec & { dev: number } }
  | { kind: "route"; spec: RouteSpec & { dev: number } };

/** What the kernel has, as read in one full pass. */
export interface KernelState {
  /** weft's routes (protocol 87) in the main table. */
  routes: RouteInfo[];
  /** Neighbour entries on weft's devices. */
  neighs: NeighInfo[];
  /** FDB entries on weft's devices. */
  fdbs: FdbInfo[];
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
  }
}

/** NUD_PERMANENT: the entries weft installs (and the only ones it may prune). */
export const NUD_PERMANENT = 0x80;

/** Whether the kernel holds `e` exactly. */
export function kernelHas(state: KernelIndex, e: Entry): boolean {
  switch (e.kind) {
    case "route": {
      const r = state.routes.get(e.spec.dst);
      return !!r && r.index === e.spec.dev && r.gateway === e.spec.gateway && r.onlink === !!e.spec.onlink;
    }
    case "neigh": {
      const n = state.neighs.get(`${e.spec.dev} ${e.spec.ip}`);
      return !!n && n.mac === e.spec.mac && (n.state & NUD_PERMANENT) !== 0;
    }
    case "fdb":
      return state.fdbs.has(`${e.spec.dev} ${e.spec.mac} ${e.spec.dst}`);
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
}

/** Indexes a kernel read. */
export function indexKernel(s: KernelState): KernelIndex {
  return {
    routes: new Map(s.routes.map((r) => [r.dst, r])),
    neighs: new Map(s.neighs.map((n) => [`${n.index} ${n.ip}`, n])),
    fdbs: new Map(s.fdbs.filter((f) => f.dst).map((f) => [`${f.index} ${f.mac} ${f.dst}`, f])),
  };
}
