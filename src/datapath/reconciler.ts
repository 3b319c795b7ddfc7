/**
 * The reconciler (the Calico/Cilium model): lease events only change a desired-state map; one loop
 * applies the difference idempotently (replace, never add); a periodic full pass re-reads the kernel,
 * repairs drift, recreates the device when it is gone or altered (and replays every entry), and prunes
 * entries weft owns that no lease wants — including those of nodes that vanished while weft was down.
 * One failing peer never blocks the others: it is retried with backoff.
 *
 * @module
 */
import { Backoff } from "../async.ts";
import { type Lease, leaseAttrsJSON } from "../lease/lease.ts";
import { log, RepeatedFailure } from "../log.ts";
import {
  type Entry,
  type EntryDriver,
  entryId,
  type KernelEntry,
  KernelIndex,
  type KernelState,
  NUD_PERMANENT,
} from "./entries.ts";
import type { IPNet } from "../net/ip.ts";
import { formatNet, netContains, parseCIDR } from "../net/ip.ts";

const logger = log("datapath");

/** What a backend had to do to its device: nothing, fix it in place, or create it (entries lost). */
export type DeviceChange = "unchanged" | "repaired" | "created";

/** How a backend turns leases into entries (its device is kept by the agent's node state). */
export interface DatapathBackend {
  /** Entries wanted for a remote lease; undefined when it needs none. */
  entriesFor(lease: Lease): Entry[] | undefined;
  /** Devices whose neighbour/FDB entries weft owns. */
  ownedDevices(): number[];
  /** Drivers of the backend's own entry kinds (WireGuard peers, …), if it has any. */
  drivers?(): EntryDriver[];
}

/** The kernel operations the reconciler needs (the real one is the Netlink handle; tests fake it). */
export interface KernelOps {
  /** Installs or replaces an entry. */
  apply(e: KernelEntry): void;
  /**
   * Optional: installs many peers' entries (a group each) as `apply` on each entry of each group would,
   * in fewer round trips; returns each group's first error (undefined: all in place). After a failed
   * entry its group's routes are not tried (they would point at an unresolved peer).
   */
  applyMany?(groups: readonly (readonly KernelEntry[])[]): (Error | undefined)[];
  /** Deletes an entry (absent is fine). */
  remove(e: KernelEntry): void;
  /** Reads weft's routes and the entries on `devices`. */
  read(devices: ReadonlySet<number>): KernelState;
  /**
   * Optional: whether the kernel may have changed a route, a next-hop object, a link, an address or an
   * entry on `devices` since the last call (it says so itself: ffi/rtnl/changes.ts). Asked at the start
   * of every full pass, before its read; without it every pass reads.
   */
  changed?(devices: ReadonlySet<number>): boolean;
}

/** A peer's entries a full pass applies: what was missing of what its lease wants. */
interface PeerApply {
  key: string;
  lease: Lease;
  /** Waiting for its first apply (new or changed), so not drift. */
  fresh: boolean;
  missing: Entry[];
  want: Entry[];
}

/** Counters the reconciler keeps (exported as metrics by the agent). */
export interface ReconcileStats {
  /** Full passes run. */
  passes: number;
  /** Of those, passes that trusted the last read of the kernel instead of reading it again. */
  readsSkipped: number;
  /** Objects repaired because the kernel had lost or changed them (entries, and the device itself). */
  driftRepaired: number;
  /** Entries pruned (owned by weft, wanted by nobody). */
  pruned: number;
  /** Times the device had to be recreated after the first pass. */
  deviceRecreated: number;
  /** Failed kernel operations. */
  errors: number;
  /** Duration of the last full pass, seconds. */
  lastPassSeconds: number;
  /** Peers whose entries are all in place. */
  peersProgrammed: number;
  /** Peers whose last apply failed (retrying with backoff). */
  peersFailing: number;
}

/** A peer whose last apply failed. */
interface FailingPeer {
  /** Entries that may be in the kernel (what to remove when the lease goes or changes). */
  applied: Entry[];
  /** Consecutive failures. */
  failures: number;
  /**
   * Its back-off: a ceiling of 200 ms doubling up to 30 s, each delay drawn from its upper half ("equal"
   * jitter: never an immediate retry, and peers that failed together do not retry in step).
   */
  backoff: Backoff;
  /** Its failures, logged once, then at growing intervals with a count, then when it works. */
  report: RepeatedFailure;
  /** Not before this time (ms since epoch). */
  retryAt: number;
  /** Last error, for logs. */
  error: string;
}

function sameLease(a: Lease, b: Lease): boolean {
  return a === b || leaseAttrsJSON(a.attrs) === leaseAttrsJSON(b.attrs) &&
      (a.subnet && formatNet(a.subnet)) === (b.subnet && formatNet(b.subnet));
}

/**
 * Passes in a row that may trust the last read of the kernel (it announced no change, weft changed
 * nothing): then one reads again regardless. At the default 10 s resync, a read at least every minute.
 */
const TRUSTED_PASSES = 5;

/** First and longest back-off between retries of one failing peer, ms. */
const FIRST_BACKOFF_MS = 200;
const MAX_BACKOFF_MS = 30_000;

/** Counters all at zero. */
export function emptyReconcileStats(): ReconcileStats {
  return {
    passes: 0,
    readsSkipped: 0,
    driftRepaired: 0,
    pruned: 0,
    deviceRecreated: 0,
    errors: 0,
    lastPassSeconds: 0,
    peersProgrammed: 0,
    peersFailing: 0,
  };
}

/**
 * Reconciles desired peers with the kernel.
 *
 * Per peer it keeps references, not copies: the desired lease (the watch's own object), and for a peer
 * whose entries are all in, the lease they were made from — its entries are the backend's
 * `entriesFor(lease)`, computed again when they are needed (the lease changes or goes; a full pass)
 * instead of being kept: ~1 KB less per peer (bench/agent_scale.ts). Only a failing peer (rare) keeps
 * its entry list.
 */
export class Reconciler {
  readonly #desired = new Map<string, Lease>();
  /** Peers whose entries are all in the kernel → the lease they were made from. */
  readonly #applied = new Map<string, Lease>();
  /** Peers whose last apply failed. */
  readonly #failing = new Map<string, FailingPeer>();
  readonly #dirty = new Set<string>();
  /** The node's own entries of the last full pass (one missing since then is drift). */
  #localIds = new Set<string>();
  /** Bumped whenever the wanted leases change, and its value at the last read of the kernel. */
  #wantedVersion = 0;
  #readAtVersion = -1;
  /** Passes in a row that trusted the last read ({@linkcode TRUSTED_PASSES}). */
  #trusted = 0;
  #scheduled = false;
  /** While above 0, applies wait: a full pass is about to make them ({@linkcode hold}). */
  #held = 0;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #running: Promise<void> = Promise.resolve();
  /** Counters. */
  readonly stats: ReconcileStats = emptyReconcileStats();

  /**
   * @param backend turns leases into entries
   * @param kernel applies entries
   * @param cluster the cluster networks: weft's routes outside them are never pruned
   * @param local the entries the node wants for itself, for its current lease (`--ip-blackhole-route`'s
   *   blackhole route): kept by every full pass like the peers' entries
   */
  constructor(
    private readonly backend: DatapathBackend,
    private readonly kernel: KernelOps,
    private readonly cluster: IPNet[],
    private readonly local: () => Entry[] = () => [],
  ) {
    for (const d of backend.drivers?.() ?? []) this.#drivers.set(d.name, d);
  }

  readonly #drivers = new Map<string, EntryDriver>();

  #driver(name: string): EntryDriver {
    const d = this.#drivers.get(name);
    if (!d) throw new Error(`no entry driver ${name}`);
    return d;
  }

  /** Installs or replaces `e` through the kernel or its driver. */
  #apply(e: Entry): void {
    if (e.kind === "driver") this.#driver(e.driver).apply(e.key, e.value);
    else this.kernel.apply(e);
  }

  /** Removes `e` through the kernel or its driver. */
  #remove(e: Entry): void {
    if (e.kind === "driver") this.#driver(e.driver).remove(e.key);
    else this.kernel.remove(e);
  }

  /** The kernel's entries and the drivers' entries. */
  #read(devices: ReadonlySet<number>): KernelState {
    const state = this.kernel.read(devices);
    if (!this.#drivers.size) return state;
    const driverEntries = new Map<string, string>();
    for (const d of this.#drivers.values()) {
      for (const [k, v] of d.list()) driverEntries.set(`${d.name} ${k}`, v);
    }
    return { ...state, driverEntries };
  }

  /** Leases currently wanted. */
  get desiredCount(): number {
    return this.#desired.size;
  }

  /** Keys of the leases currently wanted. */
  desiredKeys(): string[] {
    return [...this.#desired.keys()];
  }

  /**
   * Sets (or with `undefined` removes) the desired lease for `key`, and schedules an apply. A lease equal
   * to the one already in place is a no-op (a re-list after an outage repeats every lease).
   */
  setPeer(key: string, lease: Lease | undefined): void {
    if (lease) {
      const prev = this.#desired.get(key);
      if (prev && this.#applied.has(key) && !this.#dirty.has(key) && sameLease(prev, lease)) return;
      this.#desired.set(key, lease);
    } else if (!this.#desired.delete(key) && !this.#applied.has(key) && !this.#failing.has(key)) return;
    this.#wantedVersion++;
    this.#dirty.add(key);
    const st = this.#failing.get(key);
    if (st) st.retryAt = 0; // a new lease value deserves an immediate try
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

  /**
   * Until {@linkcode release}, scheduled applies wait for the full pass the caller is about to run: it
   * makes them from one read of the kernel. At start that is one read of an empty table instead of a
   * replace of every entry and then a read of all of them (5000 peers: ~0.2 s less); after a restart,
   * one read that finds every entry in place instead of 20000 replaces.
   */
  hold(): void {
    this.#held++;
  }

  /** Ends a {@linkcode hold}: what the pass left dirty is applied now. */
  release(): void {
    if (this.#held > 0 && --this.#held === 0 && this.#dirty.size) this.#schedule();
  }

  /** Resolves when the applies scheduled so far have run. */
  async settled(): Promise<void> {
    await new Promise<void>((r) => queueMicrotask(r));
    await this.#running;
  }

  /**
   * Adds the node's own entries the kernel lacks (at the first pass, and whenever they went missing or
   * the lease changed), claiming theirs in `idx`: never pruned. Those of a previous lease are not
   * wanted any more, so the pass prunes them.
   */
  #keepLocal(idx: KernelIndex): number {
    let repaired = 0;
    const before = this.#localIds;
    this.#localIds = new Set(this.local().map(entryId));
    for (const e of this.local()) {
      if (idx.has(e)) continue;
      try {
        this.#apply(e);
        if (before.has(entryId(e))) {
          repaired++;
          logger.warn("drift: {id} was missing or altered, re-added", { id: entryId(e) });
        }
      } catch (err) {
        this.stats.errors++;
        logger.warn("re-adding {id}: {error}", { id: entryId(e), error: (err as Error).message });
      }
    }
    return repaired;
  }

  /** Stops pending retry timers (the agent is exiting). */
  stop(): void {
    clearTimeout(this.#retryTimer);
    this.#retryTimer = undefined;
  }

  /** The entries `key` may have in the kernel now (none for a peer never applied). */
  #appliedEntries(key: string): Entry[] {
    const lease = this.#applied.get(key);
    if (lease) return this.backend.entriesFor(lease) ?? [];
    return this.#failing.get(key)?.applied ?? [];
  }

  /** Records that every entry of `key`'s `lease` is in the kernel. */
  #ok(key: string, lease: Lease): void {
    this.#applied.set(key, lease);
    this.#failing.get(key)?.report.succeeded();
    this.#failing.delete(key);
  }

  /**
   * Applies one peer's desired state: removes what it no longer wants, replaces what it wants — at once,
   * or, given a `batch` and a kernel that takes many (every entry the kernel's), by adding the peer to
   * `batch` for one `applyMany` after the others (#applyDirty settles it).
   */
  #applyPeer(key: string, batch?: PeerApply[]): void {
    const lease = this.#desired.get(key);
    const want = lease ? this.backend.entriesFor(lease) : undefined;
    const before = this.#appliedEntries(key);
    if (before.length) {
      const wantIds = new Set((want ?? []).map(entryId));
      // Remove what was applied before and is no longer wanted; in reverse order: the route goes first.
      for (const e of [...before].reverse()) {
        if (!wantIds.has(entryId(e))) this.#remove(e);
      }
    }
    if (!want) {
      this.#applied.delete(key);
      this.#failing.delete(key);
      return;
    }
    if (batch && this.kernel.applyMany && want.every((e) => e.kind !== "driver")) {
      batch.push({ key, lease: lease!, fresh: true, missing: want, want });
      return;
    }
    // Neighbour and FDB entries before the route, so the route never points at an unresolved peer.
    for (const e of want) this.#apply(e);
    this.#ok(key, lease!);
  }

  /** Records a failure of `key` and arranges a retry with exponential back-off. */
  #failed(key: string, err: unknown, applied: Entry[]): void {
    this.stats.errors++;
    const prev = this.#failing.get(key);
    const failures = (prev?.failures ?? 0) + 1;
    const backoff = prev?.backoff ?? new Backoff(FIRST_BACKOFF_MS, MAX_BACKOFF_MS, { jitter: "equal" });
    const report = prev?.report ??
      new RepeatedFailure(logger, { what: `peer ${key}`, fix: "retrying with back-off (up to 30 s)" });
    const delay = backoff.next();
    const error = err instanceof Error ? err.message : String(err);
    this.#applied.delete(key);
    this.#failing.set(key, { applied, failures, backoff, report, retryAt: Date.now() + delay, error });
    this.#dirty.add(key);
    this.#armRetry(delay);
    report.failed(error);
  }

  #armRetry(delay: number): void {
    if (this.#retryTimer !== undefined) return; // an earlier retry will pick every dirty key up
    this.#retryTimer = setTimeout(() => {
      this.#retryTimer = undefined;
      this.#schedule();
    }, delay);
  }

  #applyDirty(): Promise<void> {
    if (this.#held) return Promise.resolve(); // the full pass applies them; release() schedules the rest
    const now = Date.now();
    const keys = [...this.#dirty];
    this.#dirty.clear();
    const batch: PeerApply[] = [];
    let nextRetry = Infinity;
    for (const key of keys) {
      const st = this.#failing.get(key);
      if (st && st.retryAt > now) {
        this.#dirty.add(key); // still backing off
        nextRetry = Math.min(nextRetry, st.retryAt - now);
        continue;
      }
      try {
        this.#applyPeer(key, batch);
      } catch (err) {
        // Keep the entries we know were there, plus the wanted ones (some may be in): both get removed
        // if the lease goes away before a retry succeeds.
        const lease = this.#desired.get(key);
        const want = lease ? this.backend.entriesFor(lease) ?? [] : [];
        const applied = [...this.#appliedEntries(key), ...want];
        if (lease) this.#failed(key, err, applied);
        else {
          // Gone from etcd: what is left in the kernel is weft's and unwanted, so the next pass prunes it.
          this.stats.errors++;
          this.#applied.delete(key);
          this.#failing.delete(key);
          logger.warn("peer {key}: removing its entries failed: {error}; the next full pass prunes them", {
            key,
            error: (err as Error).message,
          });
        }
      }
    }
    // A burst (a re-list, nodes joining) goes to the kernel together, each peer then settled alone.
    if (batch.length) {
      const errors = this.#applyMany(batch);
      batch.forEach((p, i) => {
        if (errors[i] === undefined) this.#ok(p.key, p.lease);
        else this.#failed(p.key, errors[i], [...this.#appliedEntries(p.key), ...p.want]);
      });
    }
    if (nextRetry !== Infinity) this.#armRetry(nextRetry);
    this.#countProgrammed();
    return Promise.resolve();
  }

  #countProgrammed(): void {
    let ok = 0, failing = 0;
    for (const k of this.#applied.keys()) if (this.#desired.has(k)) ok++;
    for (const k of this.#failing.keys()) if (this.#desired.has(k)) failing++;
    this.stats.peersProgrammed = ok;
    this.stats.peersFailing = failing;
  }

  /**
   * One full pass after the node state made sure of the device (`change`: what that took; "created"
   * means every entry is replayed): read the kernel, repair missing or altered entries, prune what weft
   * owns and nobody wants. Returns false when the kernel could not be read (the next pass tries again).
   */
  fullPass(change: DeviceChange = "unchanged"): boolean {
    const t0 = performance.now();
    this.stats.passes++;
    const first = this.stats.passes === 1;
    if (change !== "unchanged" && !first) {
      this.stats.driftRepaired++;
      if (change === "created") {
        this.stats.deviceRecreated++;
        logger.warn("device was missing or incompatible: recreated it, replaying {n} peers", {
          n: this.#desired.size,
        });
      }
    }
    const owned = new Set(this.backend.ownedDevices());
    if (this.#mayTrustLastRead(change, owned)) {
      this.stats.readsSkipped++;
      this.stats.lastPassSeconds = (performance.now() - t0) / 1000;
      return true;
    }
    let idx: KernelIndex;
    try {
      this.#readAtVersion = this.#wantedVersion;
      idx = new KernelIndex(this.#read(owned));
    } catch (err) {
      this.stats.errors++;
      logger.error("reading the kernel: {error}", { error: (err as Error).message });
      return false;
    }
    let repaired = 0;
    const batch: PeerApply[] = [];
    for (const [key, lease] of this.#desired) {
      const want = this.backend.entriesFor(lease);
      if (!want) continue;
      const st = this.#failing.get(key);
      // A peer waiting for its apply (new, or changed, since) is applied here: that is not drift.
      const fresh = this.#dirty.delete(key);
      // Every wanted entry is looked up (claimed), so that what is left unclaimed is what #prune may remove.
      const missing = want.filter((e) => !idx.has(e));
      if (!missing.length) {
        if (st || fresh) this.#ok(key, lease);
        continue;
      }
      if (st && st.retryAt > Date.now()) {
        if (fresh) this.#dirty.add(key);
        continue; // backing off; its timer retries it
      }
      const kernelOnly = missing.every((e): e is KernelEntry => e.kind !== "driver");
      if (this.kernel.applyMany && kernelOnly) {
        batch.push({ key, lease, fresh, missing, want });
        continue;
      }
      let error: unknown;
      try {
        for (const e of missing) this.#apply(e);
      } catch (err) {
        error = err ?? new Error("failed");
      }
      repaired += this.#settle({ key, lease, fresh, missing, want }, error, change);
    }
    // Peers whose entries are all the kernel's go in together (NetlinkKernel: the neighbour and FDB entries
    // of thousands of peers in a few datagrams), each then settled as if applied alone.
    if (batch.length) {
      const errors = this.#applyMany(batch);
      batch.forEach((p, i) => repaired += this.#settle(p, errors[i], change));
    }
    this.stats.driftRepaired += repaired + this.#keepLocal(idx);
    this.#prune(idx, owned);
    this.#countProgrammed();
    this.stats.lastPassSeconds = (performance.now() - t0) / 1000;
    return true;
  }

  /**
   * Whether this pass may skip reading the kernel: the kernel announced no change since the last pass
   * (asked every pass, so its queue always starts at the previous one) and weft has nothing to do either
   * — no device change, no peer waiting or failing, the wanted leases and the node's own entries as at
   * the last read, no driver entries (WireGuard peers, the udp table: the kernel announces none of
   * those) — and fewer than {@linkcode TRUSTED_PASSES} passes trusted it in a row. An idle node at 5000
   * peers then spends a few milliseconds per pass instead of ~0.1 s, and makes no garbage.
   */
  #mayTrustLastRead(change: DeviceChange, owned: ReadonlySet<number>): boolean {
    let changed = true;
    try {
      changed = this.kernel.changed?.(owned) ?? true;
    } catch {
      // The notifications could not be read: read the kernel instead.
    }
    const local = this.local();
    const trust = !changed && change === "unchanged" && this.stats.passes > 1 && !this.#dirty.size &&
      !this.#failing.size && !this.#drivers.size && this.#readAtVersion === this.#wantedVersion &&
      this.#trusted < TRUSTED_PASSES && local.length === this.#localIds.size &&
      local.every((e) => this.#localIds.has(entryId(e)));
    this.#trusted = trust ? this.#trusted + 1 : 0;
    return trust;
  }

  /**
   * `kernel.applyMany` on the peers of `batch`: each peer's first error. When the call itself fails (the
   * netlink socket could not send or receive), every peer of it failed with that error, and backs off.
   */
  #applyMany(batch: PeerApply[]): unknown[] {
    try {
      return this.kernel.applyMany!(batch.map((p) => p.missing as KernelEntry[]));
    } catch (err) {
      return batch.map(() => err ?? new Error("applying a batch failed"));
    }
  }

  /**
   * After a full pass applied `p.missing` (`error`: the first failure, if any): records the peer as in
   * place or failing, and returns how many entries count as drift repaired.
   */
  #settle(p: PeerApply, error: unknown, change: DeviceChange): number {
    if (error !== undefined) {
      this.#failed(p.key, error, [...this.#appliedEntries(p.key), ...p.want]);
      return 0;
    }
    this.#ok(p.key, p.lease);
    if (p.fresh) return 0;
    if (change !== "created") {
      logger.info("drift: {n} entries of {key} were missing or altered, repaired", {
        n: p.missing.length,
        key: p.key,
      });
    }
    return p.missing.length;
  }

  /** Removes what weft owns in the kernel and no wanted entry claimed in this pass (`idx.has`). */
  #prune(idx: KernelIndex, owned: ReadonlySet<number>): void {
    const stale: Entry[] = [];
    for (const r of idx.unclaimedRoutes()) {
      const { ip } = parseCIDR(r.dst);
      if (!this.cluster.some((n) => netContains(n, ip))) continue; // weft's, but not of this network
      stale.push({ kind: "route", spec: { dst: r.dst, dev: r.index } });
    }
    for (const n of idx.unclaimedNeighs()) {
      if (!owned.has(n.index) || !(n.state & NUD_PERMANENT)) continue;
      stale.push({ kind: "neigh", spec: { dev: n.index, ip: n.ip, mac: n.mac } });
    }
    for (const f of idx.unclaimedFdbs()) {
      if (!owned.has(f.index) || !(f.state & NUD_PERMANENT)) continue;
      stale.push({ kind: "fdb", spec: { dev: f.index, mac: f.mac, dst: f.dst! } });
    }
    for (const [id, value] of idx.unclaimedDriverEntries()) {
      const [driver, key] = [id.slice(0, id.indexOf(" ")), id.slice(id.indexOf(" ") + 1)];
      stale.push({ kind: "driver", driver, key, value });
    }
    for (const e of stale) {
      try {
        this.#remove(e);
        this.stats.pruned++;
        logger.info("pruned stale {id} (no lease wants it)", { id: entryId(e) });
      } catch (err) {
        this.stats.errors++;
        logger.warn("prune {id} failed: {error}", { id: entryId(e), error: (err as Error).message });
      }
    }
  }
}
