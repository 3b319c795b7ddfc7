/**
 * The node watch behind `KubeLeaseSource.watchLeases`, client-go's reflector in small: list (paged),
 * then watch from the list's resourceVersion with bookmarks; a stream that ends or breaks is resumed
 * from the last resourceVersion seen (back-off 100 ms → 5 s while the API is unreachable); `410 Gone`
 * (or `relist()`) re-lists, and the re-list is diffed against what was delivered, so a node deleted
 * meanwhile is removed. Events go out in batches, one per chunk read, through a synchronous callback:
 * handling never blocks the stream (flannel #2251).
 *
 * @module
 */
import { Backoff, sleep } from "../../async.ts";
import type { NetworkConfig } from "../../config/net_conf.ts";
import { log } from "../../log.ts";
import { type Lease, leaseAttrsJSON, type LeaseEvent } from "../lease.ts";
import type { WatchOptions } from "../source.ts";
import { KubeApiError, type KubeClient } from "../../kube/client.ts";
import { type AnnotationKeys, type KubeNode, nodeToLease } from "./node_lease.ts";

const logger = log("kube");

type NodeLease = Lease & { node: string };

/** What the watch needs to know. */
export interface NodeWatchContext {
  /** The API client. */
  client: KubeClient;
  /** The network config (which families a lease has). */
  cfg: NetworkConfig;
  /** Annotation names. */
  keys: AnnotationKeys;
  /** The own node: its events go to `onOwn`. */
  nodeName: string;
  /** A watch silent this long is broken (default 90 s). */
  idleMs?: number;
  /**
   * A list made just before (the agent's start-up listing), used once instead of the first list: the
   * watch then starts from its resourceVersion (410 there re-lists as usual).
   */
  primed?: () => { items: KubeNode[]; resourceVersion: string } | undefined;
}

/** One node watch (see the module comment). */
export class NodeWatch {
  /** Leases delivered, by node name. */
  readonly #known = new Map<string, NodeLease>();
  readonly #warned = new Set<string>();
  readonly #backoff = new Backoff(100, 5000);
  #rv: string | undefined;
  /** Ends the current list, stream or wait (relist()). */
  #cut = new AbortController();
  #up: boolean | undefined;

  /** A watch delivering to `onBatch` as `opts` says. */
  constructor(
    private readonly ctx: NodeWatchContext,
    private readonly onBatch: (events: LeaseEvent[]) => void,
    private readonly opts: WatchOptions,
  ) {}

  /** Re-list now (the store is back after an outage). */
  relist(): void {
    this.#rv = undefined;
    this.#cut.abort();
  }

  #connectivity(up: boolean): void {
    if (up === this.#up) return;
    this.#up = up;
    this.opts.onConnectivity?.(up);
  }

  #deliver(events: LeaseEvent[]): void {
    const own = this.opts.ownKey?.();
    const others = events.filter((e) => {
      if ((e.lease as Partial<NodeLease>).node !== this.ctx.nodeName && e.lease.key !== own) return true;
      this.opts.onOwn?.(e);
      return false;
    });
    if (others.length) this.onBatch(others);
  }

  /** The events for node `n` against what was delivered (none when nothing changed). */
  #upsert(n: KubeNode): LeaseEvent[] {
    const name = n.metadata.name;
    let l: NodeLease | undefined;
    try {
      l = nodeToLease(n, this.ctx.keys, this.ctx.cfg);
      this.#warned.delete(name);
    } catch (err) {
      // flannel skips such a node; a peer already known keeps its last good lease.
      if (!this.#warned.has(name)) {
        this.#warned.add(name);
        logger.warn("node {node} is not a usable peer: {error}", {
          node: name,
          error: (err as Error).message,
        });
      }
      return [];
    }
    const prev = this.#known.get(name);
    if (!l) {
      if (!prev) return [];
      this.#known.delete(name);
      return [{ type: "removed", lease: prev }];
    }
    this.#known.set(name, l);
    if (!prev) return [{ type: "added", lease: l }];
    // A podCIDR never changes; a node deleted and created again between two lists may bring another.
    if (prev.key !== l.key) return [{ type: "removed", lease: prev }, { type: "added", lease: l }];
    if (leaseAttrsJSON(prev.attrs) === leaseAttrsJSON(l.attrs)) return [];
    return [{ type: "added", lease: l, previous: prev }];
  }

  /** Lists every node and delivers the difference to what was delivered before. */
  async #relist(signal: AbortSignal): Promise<void> {
    const { items, resourceVersion } = this.ctx.primed?.() ??
      await this.ctx.client.list<KubeNode>("/api/v1/nodes", { signal });
    const events: LeaseEvent[] = [];
    const seen = new Set<string>();
    for (const n of items) {
      seen.add(n.metadata.name);
      events.push(...this.#upsert(n));
    }
    for (const [name, l] of this.#known) {
      if (seen.has(name)) continue;
      this.#known.delete(name);
      events.push({ type: "removed", lease: l });
    }
    if (events.length) this.#deliver(events);
    this.#rv = resourceVersion;
    this.opts.onSync?.();
  }

  /** Watches from the last resourceVersion until the stream ends (resolves) or fails (throws). */
  async #stream(signal: AbortSignal): Promise<void> {
    let batch: LeaseEvent[] = [];
    let queued = false;
    const flush = () => {
      queued = false;
      if (!batch.length) return;
      const b = batch;
      batch = [];
      this.#deliver(b);
    };
    try {
      await this.ctx.client.watch<KubeNode>("/api/v1/nodes", {
        resourceVersion: this.#rv!,
        allowWatchBookmarks: true,
        timeoutSeconds: 300 + Math.floor(Math.random() * 300),
        ...(this.ctx.idleMs ? { idleMs: this.ctx.idleMs } : {}),
        signal,
      }, (ev) => {
        this.#rv = ev.object.metadata?.resourceVersion ?? this.#rv;
        if (ev.type === "BOOKMARK") return;
        let es: LeaseEvent[] = [];
        if (ev.type !== "DELETED") es = this.#upsert(ev.object);
        else {
          const prev = this.#known.get(ev.object.metadata.name);
          if (prev) {
            this.#known.delete(prev.node);
            es = [{ type: "removed", lease: prev }];
          }
        }
        if (!es.length) return;
        batch.push(...es);
        // One batch per chunk read: the events of one chunk arrive synchronously before this runs.
        if (!queued) {
          queued = true;
          queueMicrotask(flush);
        }
      });
    } finally {
      flush();
    }
  }

  /** Runs until `opts.signal` aborts. */
  async run(): Promise<void> {
    const { signal: stop } = this.opts;
    while (!stop.aborted) {
      if (this.#cut.signal.aborted) this.#cut = new AbortController();
      // One signal for this round: relist() or stop aborts it (a plain listener, not AbortSignal.any,
      // whose result its sources hold only weakly).
      const round = this.#cut;
      const cut = round.signal;
      const signal = cut;
      const onStop = () => round.abort();
      stop.addEventListener("abort", onStop, { once: true });
      try {
        if (this.#rv === undefined) await this.#relist(signal);
        this.#connectivity(true);
        this.#backoff.reset();
        if (stop.aborted) break;
        const started = Date.now();
        await this.#stream(signal);
        // The server ended the watch (its timeout): resume from the last resourceVersion.
        if (Date.now() - started < 1000 && !cut.aborted) await sleep(this.#backoff.next(), signal);
      } catch (err) {
        if (stop.aborted) break;
        if (cut.aborted) continue; // relist() asked for a fresh list
        if (err instanceof KubeApiError && err.code === 410) {
          logger.info("node watch: {error}: re-listing", { error: err.message });
          this.#rv = undefined;
          continue;
        }
        // An answer other than a server error means the API is reachable.
        this.#connectivity(err instanceof KubeApiError && err.code < 500 && err.code !== 429);
        const ms = this.#backoff.next();
        logger.warn("node watch: {error}; retrying in {ms} ms", { error: (err as Error).message, ms });
        await sleep(ms, signal);
      } finally {
        stop.removeEventListener("abort", onStop);
      }
    }
  }
}
