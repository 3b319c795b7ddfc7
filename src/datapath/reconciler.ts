/**
 * The reconciler (the Calico/Cilium model): lease events only change a desired-state map; one loop
 * applies the difference idempotently (replace, never add); a periodic full pass re-reads the kernel,
 * repairs drift, recreates the device when it is gone or altered (and replays every entry), and prunes
 * entries weft owns that no lease wants — including those of nodes that vanished while weft was down.
 * One failing peer never blocks the others: it is retried with backoff.
 *
 * @module
 */
import type { Lease } from "../subnet/lease.ts";
import { log } from "../log.ts";
import { type Entry, entryId, indexKernel, kernelHas, type KernelState } from "./entries.ts";
import type { IPNet } from "../net/ip.ts";
import { netContains, parseCIDR } from "../net/ip.ts";

const logger = log("datapath");

/** How a backend turns leases into entries and keeps its device. */
export interface DatapathBackend {
  /** Backend type, e.g. `vxlan`. */
  readonly type: string;
  /** Ensures the device (and its address); true when it was (re)created, so all entries need replaying. */
  ensureDevice(): boolean;
  /** Entries wanted for a remote lease; undefined when the lease is not for this backend. */
  entriesFor(lease: Lease): Entry[] | undefined;
  /** Devices whose neighbour/FDB entries weft owns. */
  ownedDevices(): number[];
}

/** The kernel operations the reconciler needs (the real one is the Netlink handle; tests fake it). */
export interface KernelOps {
  /** Installs or replaces an entry. */
  apply(e: Entry): void;
  /** Deletes an entry (absent is fine). */
  remove(e: Entry): void;
  /** Reads weft's routes and the entries on `devices`. */
  read(devices: number[]): KernelState;
}

/** Counters the reconciler keeps (exported as metrics by the agent). */
export interface ReconcileStats {
  /** Full passes run. */
  passes: number;
  /** Entries repaired because the kernel had lost or changed them. */
  driftRepaired: number;
  /** Entries pruned (owned by weft, wanted by nobody). */
  pruned: number;
  /** Times the device had to be recreated. */
  deviceRecreated: number;
  /** Failed entry operations. */
  errors: number;
  /** Duration of the last full pass, seconds. */
  lastPassSeconds: number;
  /** Peers whose entries are all in place. */
  peersProgrammed: number;
}

interface PeerStatus {
  lease: Lease;
  applied: Entry[];
  ok: boolean;
  failures: number;
  retryAt: number;
}

/** Reconciles desired peers with the kernel. */
export class Reconciler {
  readonly #desired = new Map<string, Lease>();
  readonly #status = new Map<string, PeerStatus>();
  readonly #dirty = new Set<string>();
  #scheduled = false;
  #running: Promise<void> = Promise.resolve();
  /** Counters. */
  readonly stats: ReconcileStats = {
    passes: 0,
    driftRepaired: 0,
    pruned: 0,
    deviceRecreated: 0,
    errors: 0,
    lastPassSeconds: 0,
    peersProgrammed: 0,
  };

  /**
   * @param backend turns leases into entries
   * @param kernel applies entries
   * @param cluster the cluster networks: weft's routes outside them are never pruned
   */
  constructor(
    private readonly backend: DatapathBackend,
    private readonly kernel: KernelOps,
    private readonly cluster: IPNet[],
  ) {}

  /** Leases currently wanted. */
  get desiredCount(): number {
    return this.#desired.size;
  }

  /** Sets (or with `undefined` removes) the desired lease for `key`, and schedules an apply. */
  setPeer(key: string, lease: Lease | undefined): void {
    if (lease) this.#desired.set(key, lease);
    else this.#desired.delete(key);
    this.#dirty.add(key);
    this.#schedule();
  }

  #schedule(): void {
    if (this.#scheduled) return;
    this.#scheduled = true;
    // Coalesce a burst of events (a snapshot of 5000 leases) into one apply.
    queueMicrotask(() => {
      this.#scheduled = false;
      this.#running = this.#running.then(() => this.#applyDirty());
    });
  }

  /** Resolves when the applies scheduled so far have run. */
  async settled(): Promise<void> {
    await new Promise<void>((r) => queueMicrotask(r));
    await this.#running;
  }

  #applyPeer(key: string): void {
    const lease = this.#desired.get(key);
    const st = this.#status.get(key);
    const want = lease ? this.backend.entriesFor(lease) : undefined;
    const wantIds = new Set((want ?? []).map(entryId));
    // Remove what was applied before and is no longer wanted (routes last-in-first-out: route first).
    for (const e of [...(st?.applied ?? [])].reverse()) {
      if (!wantIds.has(entryId(e))) this.kernel.remove(e);
    }
    if (!lease || !want) {
      this.#status.delete(key);
      return;
    }
    // Neighbour and FDB entries before the route, so the route never points at an unresolved peer.
    for (const e of want) this.kernel.apply(e);
    this.#status.set(key, { lease, applied: want, ok: true, failures: 0, retryAt: 0 });
  }

  async #applyDirty(): Promise<void> {
    const now = Date.now();
    const keys = [...this.#dirty];
    this.#dirty.clear();
    for (const key of keys) {
      const st = this.#status.get(key);
      if (st && !st.ok && st.retryAt > now) {
        this.#dirty.add(key); // still backing off
        continue;
      }
      try {
        this.#applyPeer(key);
      } catch (err) {
        this.stats.errors++;
        const failures = (st?.failures ?? 0) + 1;
        const delay = Math.min(100 * 2 ** failures, 30_000);
        const lease = this.#desired.get(key);
        if (lease) {
          this.#status.set(key, {
            lease,
            applied: st?.applied ?? [],
            ok: false,
            failures,
            retryAt: Date.now() + delay,
          });
          this.#dirty.add(key);
          setTimeout(() => this.#schedule(), delay);
        }
        logger.warn("peer {key}: {error} (retry in {ms} ms)", {
          key,
          error: (err as Error).message,
          ms: delay,
        });
      }
    }
    this.#countProgrammed();
    await Promise.resolve();
  }

  #countProgrammed(): void {
    let n = 0;
    for (const [k, st] of this.#status) if (st.ok && this.#desired.has(k)) n++;
    this.stats.peersProgrammed = n;
  }

  /**
   * One full pass: ensure the device (replaying everything if it was recreated), read the kernel,
   * repair missing or altered entries, prune what weft owns and nobody wants.
   */
  fullPass(): void {
    const t0 = performance.now();
    this.stats.passes++;
    let recreated = false;
    try {
      recreated = this.backend.ensureDevice();
    } catch (err) {
      this.stats.errors++;
      logger.error("device: {error}", { error: (err as Error).message });
      return;
    }
    if (recreated && this.stats.passes > 1) {
      this.stats.deviceRecreated++;
      logger.warn("device was missing or altered: recreated it, replaying {n} peers", {
        n: this.#desired.size,
      });
    }
    const devices = this.backend.ownedDevices();
    const idx = indexKernel(this.kernel.read(devices));
    const wanted = new Set<string>();
    for (const [key, lease] of this.#desired) {
      const want = this.backend.entriesFor(lease);
      if (!want) continue;
      for (const e of want) wanted.add(entryId(e));
      const missing = want.filter((e) => !kernelHas(idx, e));
      if (!missing.length) continue;
      if (!recreated) {
        this.stats.driftRepaired += missing.length;
        logger.info("drift: {n} entries of {key} missing or altered, repairing", { n: missing.length, key });
      }
      try {
        for (const e of missing) this.kernel.apply(e);
        this.#status.set(key, { lease, applied: want, ok: true, failures: 0, retryAt: 0 });
      } catch (err) {
        this.stats.errors++;
        logger.warn("peer {key}: repair failed: {error}", { key, error: (err as Error).message });
        this.#dirty.add(key);
      }
    }
    this.#prune(idx, wanted, devices);
    this.#countProgrammed();
    this.stats.lastPassSeconds = (performance.now() - t0) / 1000;
  }

  #prune(idx: ReturnType<typeof indexKernel>, wanted: Set<string>, devices: number[]): void {
    const owned = new Set(devices);
    const stale: Entry[] = [];
    for (const r of idx.routes.values()) {
      if (wanted.has(`route ${r.dst}`)) continue;
      const { ip } = parseCIDR(r.dst);
      if (!this.cluster.some((n) => netContains(n, ip))) continue; // weft's, but not of this network
      stale.push({ kind: "route", spec: { dst: r.dst, dev: r.index } });
    }
    for (const n of idx.neighs.values()) {
      if (!owned.has(n.index) || !(n.state & 0x80) || wanted.has(`neigh ${n.index} ${n.ip}`)) continue;
      stale.push({ kind: "neigh", spec: { dev: n.index, ip: n.ip, mac: n.mac } });
    }
    for (const f of idx.fdbs.values()) {
      if (!owned.has(f.index) || !(f.state & 0x80) || wanted.has(`fdb ${f.index} ${f.mac} ${f.dst}`)) {
        continue;
      }
      stale.push({ kind: "fdb", spec: { dev: f.index, mac: f.mac, dst: f.dst! } });
    }
    for (const e of stale) {
      try {
        this.kernel.remove(e);
        this.stats.pruned++;
        logger.info("pruned stale {id}", { id: entryId(e) });
      } catch (err) {
        this.stats.errors++;
        logger.warn("prune {id} failed: {error}", { id: entryId(e), error: (err as Error).message });
      }
    }
  }
}
