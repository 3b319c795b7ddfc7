/**
 * The lease watch over any store that lists with a revision and watches from it (a {@linkcode Registry}:
 * etcd, memory; the Kubernetes source adapts its node list/watch to the same two calls).
 *
 * Snapshot + revision, then a watch from the next revision; when the watch ends (store unreachable,
 * member lost, compaction past the revision) or {@linkcode LeaseWatch.relist} is called, it re-lists
 * and diffs against what it delivered, so removals and changes made meanwhile are delivered too.
 * Failures back off 100 ms → 5 s. The own lease, and old leases carrying the own PublicIP, are
 * filtered here and only here.
 *
 * @module
 */
import { Backoff, sleep } from "../../async.ts";
import { log, RepeatedFailure } from "../../log.ts";
import { type Lease, leaseAttrsJSON, type LeaseEvent } from "../lease.ts";
import { entryForParse, leaseOf, type Registry, type RegistryEntry } from "./registry.ts";
import type { LeaseWatch, WatchOptions } from "../source.ts";
import { type LeaseRejection, parseLeaseEntry } from "../validate.ts";

const logger = log("subnet");

/** The two calls a watch needs from a store. */
export type WatchableStore = Pick<Registry, "listSubnets" | "watchSubnets">;

/** Every lease the store holds that parses, with the revision it was read at. */
export async function listStoreLeases(store: WatchableStore): Promise<{ leases: Lease[]; revision: number }> {
  const { entries, revision } = await store.listSubnets();
  const leases: Lease[] = [];
  for (const e of entries) {
    const l = leaseOf(e);
    if (l) leases.push(l);
  }
  return { leases, revision };
}

/** Entries that are not leases, as reported: key → the rejection's text (to report each value once). */
class Invalid {
  readonly #known = new Map<string, string>();

  constructor(private readonly report?: (key: string, why: LeaseRejection | undefined) => void) {}

  /** Looks at one entry: reports it when it does not parse (anew), returns the lease when it does. */
  see(e: RegistryEntry): Lease | undefined {
    const p = parseLeaseEntry(entryForParse(e));
    if (p.ok) {
      this.forget(e.key);
      return p.lease;
    }
    const text = `${p.rejection.message} ${e.value.length}`;
    if (this.#known.get(e.key) !== text) {
      this.#known.set(e.key, text);
      this.report?.(e.key, p.rejection);
    }
    return undefined;
  }

  /** The key is gone (deleted, or a lease now). */
  forget(key: string): void {
    if (this.#known.delete(key)) this.report?.(key, undefined);
  }

  /** After a re-list: keys no longer listed are gone. */
  keepOnly(keys: Set<string>): void {
    for (const k of [...this.#known.keys()]) if (!keys.has(k)) this.forget(k);
  }
}

/**
 * Watches every lease but the own one until `opts.signal` aborts: first the snapshot as one `added`
 * batch, then changes as they happen, in batches. A lease whose attributes changed comes as `added`
 * with `previous` set (consumers that treat `added` as an upsert need nothing else, as in flannel);
 * a re-put of the same value (a peer renewing) is not an event.
 */
export function watchStoreLeases(
  store: WatchableStore,
  onBatch: (events: LeaseEvent[]) => void,
  opts: WatchOptions,
): LeaseWatch {
  const kick = { wanted: Promise.withResolvers<"relist">() };
  const done = runWatch(store, onBatch, opts, kick);
  return Object.assign(done, { relist: () => kick.wanted.resolve("relist") });
}

/** What a watch has delivered, to diff a re-list or a change against. */
class Delivered {
  readonly #known = new Map<string, Lease>();

  /**
   * An event for `l` against what is known, or undefined when nothing changed. An unchanged lease keeps
   * the object already delivered (the consumer holds that one: a re-list must not leave a second copy
   * of every lease alive).
   */
  upsert(l: Lease): LeaseEvent | undefined {
    const prev = this.#known.get(l.key);
    if (prev && leaseAttrsJSON(prev.attrs) === leaseAttrsJSON(l.attrs)) return undefined;
    this.#known.set(l.key, l);
    if (!prev) return { type: "added", lease: l };
    return { type: "added", lease: l, previous: prev };
  }

  /** The removal of `key`, or undefined when it was not known. */
  remove(key: string): LeaseEvent | undefined {
    const l = this.#known.get(key);
    if (!l) return undefined;
    this.#known.delete(key);
    return { type: "removed", lease: l };
  }

  /** The events that turn what was delivered into a full list `leases`. */
  relisted(leases: Lease[]): LeaseEvent[] {
    const seen = new Set<string>();
    const events: LeaseEvent[] = [];
    for (const l of leases) {
      seen.add(l.key);
      const ev = this.upsert(l);
      if (ev) events.push(ev);
    }
    for (const k of [...this.#known.keys()]) {
      if (!seen.has(k)) events.push(this.remove(k)!);
    }
    return events;
  }
}

/**
 * Lists the store and delivers the difference to what was delivered before; returns the revision read
 * at. A function of its own so that the list is not kept alive by the watch loop's frame while it
 * waits on the watch (5000 leases would stay in memory twice).
 */
async function relist(
  store: WatchableStore,
  known: Delivered,
  invalid: Invalid,
  deliver: (events: LeaseEvent[]) => void,
): Promise<number> {
  const { entries, revision } = await store.listSubnets();
  const leases: Lease[] = [];
  for (const e of entries) {
    const l = invalid.see(e);
    if (l) leases.push(l);
  }
  invalid.keepOnly(new Set(entries.map((e) => e.key)));
  // Diff the snapshot against what we already delivered (a re-list after an error).
  const events = known.relisted(leases);
  if (events.length) deliver(events);
  return revision;
}

async function runWatch(
  store: WatchableStore,
  onBatch: (events: LeaseEvent[]) => void,
  opts: WatchOptions,
  kick: { wanted: PromiseWithResolvers<"relist"> },
): Promise<void> {
  const known = new Delivered();
  const invalid = new Invalid(opts.onInvalid);
  const backoff = new Backoff(100, 5000);
  const deliver = (events: LeaseEvent[]) => {
    const own = opts.ownKey?.();
    const others = events.filter((e) => {
      if (e.lease.key === own) {
        opts.onOwn?.(e);
        return false;
      }
      return !(opts.ownPublicIP && e.lease.attrs.PublicIP === opts.ownPublicIP); // an old lease of ours
    });
    if (others.length) onBatch(others);
  };
  // Logged once, then at growing intervals with a count, while the store stays away (log.ts).
  const failure = new RepeatedFailure(logger, {
    what: "lease watch",
    fix: "retrying with back-off; the datapath keeps forwarding as programmed",
  });
  const backOff = async (why: string) => {
    const ms = backoff.next();
    failure.failed(why);
    await Promise.race([sleep(ms, opts.signal), kick.wanted.promise]); // relist() cuts the wait short
  };
  // One listener for the whole watch, not one per reconnect.
  const aborted = new Promise<undefined>((r) => {
    if (opts.signal.aborted) r(undefined);
    opts.signal.addEventListener("abort", () => r(undefined), { once: true });
  });
  while (!opts.signal.aborted) {
    let stop: (() => Promise<void>) | undefined;
    kick.wanted = Promise.withResolvers<"relist">(); // this (re-)list serves any earlier request
    try {
      const revision = await relist(store, known, invalid, deliver);
      failure.succeeded();
      opts.onSync?.();
      opts.onConnectivity?.(true);
      if (opts.signal.aborted) break;
      const ended = Promise.withResolvers<Error>();
      stop = await store.watchSubnets(revision, (raw) => {
        const batch: LeaseEvent[] = [];
        for (const ev of raw) {
          if (ev.type === "delete") invalid.forget(ev.entry.key);
          const l = ev.type === "put" ? invalid.see(ev.entry) : undefined;
          // A put that does not parse removes what the key held before, like a delete.
          const e = l ? known.upsert(l) : known.remove(ev.entry.key);
          if (e) batch.push(e);
        }
        if (batch.length) deliver(batch);
      }, (err) => ended.resolve(err));
      const started = Date.now();
      const why = await Promise.race([ended.promise, aborted, kick.wanted.promise]);
      if (!why) break;
      if (why === "relist") {
        logger.info("lease watch: re-listing on request");
        backoff.reset();
        continue;
      }
      // A watch that ends at once again and again (a flapping member) must not spin.
      if (Date.now() - started < 1000) await backOff(`the watch ended within a second: ${why.message}`);
      else {
        logger.warn("lease watch ended ({error}): re-listing", { error: why.message });
        backoff.reset();
      }
    } catch (err) {
      opts.onConnectivity?.(false);
      await backOff((err as Error).message);
    } finally {
      await stop?.();
    }
  }
}
