/**
 * The tiny storage interface under the subnet manager (flannel's `Registry`): lease logic is written
 * once, unit-tested against {@linkcode MemoryRegistry}, and run against etcd (etcd_registry.ts).
 *
 * @module
 */
import type { Lease } from "../lease.ts";
import { parseLeaseEntry, type RawLeaseEntry } from "../validate.ts";

/** A raw subnet entry: key suffix, JSON value, expiry (undefined = reservation). */
export interface RegistryEntry {
  /** Key suffix (`10.244.3.0-24`). */
  key: string;
  /** The JSON value. */
  value: string;
  /** Expiry; undefined for an entry without a TTL (a reservation). */
  expiration?: Date;
  /** Backend-specific lease id. */
  leaseId?: string;
  /**
   * When the key was created, in store order (etcd: its create revision; a put to an existing key keeps
   * it). The same on every node: it decides which of two conflicting leases is older.
   */
  createRevision?: number;
}

/** A raw change. */
export interface RegistryEvent {
  /** Put or delete. */
  type: "put" | "delete";
  /** The entry (for deletes, the key and the last known value when the store has it). */
  entry: RegistryEntry;
}

/**
 * The lease an entry holds, or undefined when its key or value cannot be read (see
 * {@linkcode parseLeaseEntry}; peer sync reports those, once, through the lease filter).
 */
export function leaseOf(e: RegistryEntry): Lease | undefined {
  const p = parseLeaseEntry(entryForParse(e));
  return p.ok ? p.lease : undefined;
}

/** The entry as the lease parser takes it (the create revision is the lease's age). */
export function entryForParse(e: RegistryEntry): RawLeaseEntry {
  return {
    key: e.key,
    value: e.value,
    ...(e.expiration ? { expiration: e.expiration } : {}),
    ...(e.leaseId ? { leaseId: e.leaseId } : {}),
    ...(e.createRevision !== undefined ? { createOrder: e.createRevision } : {}),
  };
}

/** Storage for the config and subnet entries. */
export interface Registry {
  /** The network config text, or undefined when none is set. */
  getConfig(): Promise<string | undefined>;
  /** Writes the network config. */
  setConfig(text: string): Promise<void>;
  /** Every subnet entry and the store revision it was read at. */
  listSubnets(): Promise<{ entries: RegistryEntry[]; revision: number }>;
  /** One subnet entry, or undefined when absent. */
  getSubnet(key: string): Promise<RegistryEntry | undefined>;
  /** Creates `key` with a TTL only if it does not exist; undefined when it does. */
  createSubnet(key: string, value: string, ttlSeconds: number): Promise<RegistryEntry | undefined>;
  /**
   * Re-writes `key` with a fresh TTL (a new lease), only if it still exists with value `expect`
   * (or, when `expect` is undefined, only if it does not exist). Returns undefined when the condition failed.
   */
  renewSubnet(
    key: string,
    value: string,
    ttlSeconds: number,
    expect: string | undefined,
    oldLeaseId?: string,
  ): Promise<RegistryEntry | undefined>;
  /** Writes `key` without TTL (a reservation). */
  reserveSubnet(key: string, value: string): Promise<void>;
  /** Deletes `key`; false when absent. */
  deleteSubnet(key: string): Promise<boolean>;
  /**
   * Watches subnet entries from `revision + 1`, calling `onEvents` per batch. When the watch ends by
   * itself (compaction past `revision`, lost connection) `onReset` is called once and no more events
   * come: the caller re-lists and watches again. Resolves once the watch is established (rejects when it
   * cannot be) with a function that stops it.
   */
  watchSubnets(
    revision: number,
    onEvents: (events: RegistryEvent[], revision: number) => void,
    onReset: (err: Error) => void,
  ): Promise<() => Promise<void>>;
  /** Releases connections (and revokes nothing). */
  close(): Promise<void>;
}

/** An in-memory registry with etcd-like semantics (TTLs, revisions, watches), for unit tests. */
export class MemoryRegistry implements Registry {
  #config: string | undefined;
  #entries = new Map<string, RegistryEntry>();
  #revision = 1;
  #watchers = new Map<(events: RegistryEvent[], revision: number) => void, (err: Error) => void>();
  #nextLease = 1;
  /** Every change with its revision, so a watch can start in the past like etcd's. */
  #history: { revision: number; events: RegistryEvent[] }[] = [];
  #compacted = 0;

  /** Drops entries whose TTL passed (call it to simulate time going by). */
  expire(now = new Date()): void {
    for (const [k, e] of this.#entries) {
      if (e.expiration && e.expiration <= now) {
        this.#entries.delete(k);
        this.#emit([{ type: "delete", entry: e }]);
      }
    }
  }

  #emit(events: RegistryEvent[]): void {
    this.#revision++;
    this.#history.push({ revision: this.#revision, events });
    for (const w of this.#watchers.keys()) w(events, this.#revision);
  }

  #put(key: string, value: string, ttl?: number): RegistryEntry {
    // As in etcd: a put to an existing key keeps its create revision; a new key gets the put's revision.
    const e: RegistryEntry = {
      key,
      value,
      createRevision: this.#entries.get(key)?.createRevision ?? this.#revision + 1,
    };
    if (ttl !== undefined) {
      e.expiration = new Date(Date.now() + ttl * 1000);
      e.leaseId = String(this.#nextLease++);
    }
    this.#entries.set(key, e);
    this.#emit([{ type: "put", entry: e }]);
    return e;
  }

  /** Ends every watch as a lost connection or a compaction would (tests of re-listing). */
  resetWatches(err = new Error("watch reset")): void {
    const resets = [...this.#watchers.values()];
    this.#watchers.clear();
    for (const r of resets) r(err);
  }

  /** Forgets the history up to the current revision, like `etcdctl compaction`. */
  compact(): void {
    this.#compacted = this.#revision;
    this.#history = [];
  }

  /** Open watches (tests check that stopped watches are gone). */
  get watchCount(): number {
    return this.#watchers.size;
  }

  getConfig(): Promise<string | undefined> {
    return Promise.resolve(this.#config);
  }

  setConfig(text: string): Promise<void> {
    this.#config = text;
    return Promise.resolve();
  }

  listSubnets(): Promise<{ entries: RegistryEntry[]; revision: number }> {
    this.expire();
    return Promise.resolve({ entries: [...this.#entries.values()], revision: this.#revision });
  }

  getSubnet(key: string): Promise<RegistryEntry | undefined> {
    this.expire();
    return Promise.resolve(this.#entries.get(key));
  }

  createSubnet(key: string, value: string, ttlSeconds: number): Promise<RegistryEntry | undefined> {
    this.expire();
    if (this.#entries.has(key)) return Promise.resolve(undefined);
    return Promise.resolve(this.#put(key, value, ttlSeconds));
  }

  renewSubnet(
    key: string,
    value: string,
    ttl: number,
    expect: string | undefined,
    _oldLeaseId?: string, // nothing to revoke: the entry's TTL is replaced in place
  ): Promise<RegistryEntry | undefined> {
    this.expire();
    const cur = this.#entries.get(key);
    if (expect === undefined ? cur !== undefined : cur?.value !== expect) return Promise.resolve(undefined);
    return Promise.resolve(this.#put(key, value, ttl));
  }

  reserveSubnet(key: string, value: string): Promise<void> {
    this.#put(key, value);
    return Promise.resolve();
  }

  deleteSubnet(key: string): Promise<boolean> {
    const e = this.#entries.get(key);
    if (!e) return Promise.resolve(false);
    this.#entries.delete(key);
    this.#emit([{ type: "delete", entry: e }]);
    return Promise.resolve(true);
  }

  watchSubnets(
    revision: number,
    onEvents: (events: RegistryEvent[], revision: number) => void,
    onReset: (err: Error) => void,
  ): Promise<() => Promise<void>> {
    if (revision + 1 <= this.#compacted) {
      // etcd accepts the watch, then cancels it: the caller learns through onReset.
      queueMicrotask(() => onReset(new Error("mvcc: required revision has been compacted")));
      return Promise.resolve(() => Promise.resolve());
    }
    for (const h of this.#history) if (h.revision > revision) onEvents(h.events, h.revision);
    this.#watchers.set(onEvents, onReset);
    return Promise.resolve(() => {
      this.#watchers.delete(onEvents);
      return Promise.resolve();
    });
  }

  close(): Promise<void> {
    this.#watchers.clear();
    return Promise.resolve();
  }
}
