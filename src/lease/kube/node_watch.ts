/**
 * The node watch behind `KubeLeaseSource.watchLeases`: the shared reflector (src/kube/reflector.ts:
 * list from the watch cache, watch with bookmarks, resume from the last resourceVersion, re-list only
 * on 410, jittered back-off with Retry-After as floor, dead-watch detection) over `/api/v1/nodes`, with
 * every Node trimmed on arrival to what a lease is made of (node_lease.ts `slimNode`: ~0.3 KB kept of a
 * ~13 KB Node).
 *
 * An event costs a comparison when it changes nothing weft routes on: each node's lease-relevant
 * fields (podCIDRs, flannel's annotations, identity) are kept as one fingerprint's digest, and a kubelet
 * heartbeat — a new resourceVersion, new condition timestamps — matches it and stops there: no lease
 * parsed, no batch delivered, no log line, so no reconcile and no netlink call. A re-list is diffed
 * against what was delivered, so a node deleted meanwhile is removed. Events go out in batches, one
 * per chunk read, through a synchronous callback: handling never blocks the stream (flannel #2251).
 * The own node goes to `onOwnNode` (every change of it that matters, and its deletion), not to peers.
 *
 * @module
 */
import type { NetworkConfig } from "../../config/net_conf.ts";
import { log } from "../../log.ts";
import { type Lease, leaseAttrsJSON, type LeaseEvent } from "../lease.ts";
import type { WatchOptions } from "../source.ts";
import type { KubeClient } from "../../kube/client.ts";
import { Reflector, type ReflectorHealth } from "../../kube/reflector.ts";
import { digest53 } from "../../net/hash.ts";
import {
  type AnnotationKeys,
  type KubeNode,
  NODE_PRUNE,
  nodeFingerprint,
  nodeToLease,
  slimNode,
} from "./node_lease.ts";

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
  /** The own node: its events go to `onOwnNode` and `onOwn`. */
  nodeName: string;
  /** The API server's bookmark interval, ms (default 60 s): a watch silent twice as long is dead. */
  bookmarkIntervalMs?: number;
  /** Back-off ceilings, ms (default 800 → 30 000). */
  backoffMs?: [number, number];
  /**
   * A list made just before (the agent's start-up listing, already trimmed), used once instead of the
   * first list: the watch then starts from its resourceVersion (410 there re-lists as usual).
   */
  primed?: () =>
    | { items: KubeNode[]; resourceVersion: string }
    | undefined
    | Promise<{ items: KubeNode[]; resourceVersion: string } | undefined>;
  /** The own node as the watch sees it (trimmed), whenever its fingerprint changes; undefined: deleted. */
  onOwnNode?: (node: KubeNode | undefined) => void;
  /** Every health change of the watch. */
  onHealth?: (h: ReflectorHealth) => void;
}

/** One node watch (see the module comment). */
export class NodeWatch {
  /** Leases delivered, by node name. */
  readonly #known = new Map<string, NodeLease>();
  /**
   * Digest of each node's fingerprint as last handled, by name: an event that matches it costs nothing
   * more. A number, not the ~350-character fingerprint itself (1.7 MB less live heap at 5000 Nodes).
   */
  readonly #seen = new Map<string, number>();
  readonly #warned = new Set<string>();
  readonly #reflector: Reflector<KubeNode>;
  #batch: LeaseEvent[] = [];
  #queued = false;

  /** A watch delivering to `onBatch` as `opts` says. */
  constructor(
    private readonly ctx: NodeWatchContext,
    private readonly onBatch: (events: LeaseEvent[]) => void,
    private readonly opts: WatchOptions,
  ) {
    this.#reflector = new Reflector(ctx.client, {
      path: "/api/v1/nodes",
      name: "node watch",
      transform: (raw) => slimNode(raw as unknown as KubeNode, ctx.keys, ctx.nodeName),
      prune: NODE_PRUNE,
      ...(ctx.bookmarkIntervalMs ? { bookmarkIntervalMs: ctx.bookmarkIntervalMs } : {}),
      ...(ctx.backoffMs ? { backoffMs: ctx.backoffMs } : {}),
      ...(ctx.primed ? { initial: ctx.primed } : {}),
    }, {
      onList: (items) => this.#listed(items),
      onEvent: (type, n) => this.#event(type, n),
      onHealth: (h) => {
        ctx.onHealth?.(h);
        this.opts.onConnectivity?.(h.up);
      },
    });
  }

  /** The reflector's counters (lists, watches, events, bookmarks, failures). */
  get stats(): Reflector<KubeNode>["stats"] {
    return this.#reflector.stats;
  }

  /**
   * Reconnect now (the agent thinks the store is back): the watch resumes from the last resourceVersion
   * at once — no list; only the server's 410 makes one.
   */
  relist(): void {
    this.#reflector.resume();
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

  #own(n: KubeNode | undefined): void {
    this.ctx.onOwnNode?.(n);
  }

  /** The events for node `n` against what was delivered (none when nothing routed on changed). */
  #upsert(n: KubeNode): LeaseEvent[] {
    const name = n.metadata.name;
    const fp = digest53(nodeFingerprint(n));
    if (this.#seen.get(name) === fp) return []; // a heartbeat: nothing weft routes on changed
    this.#seen.set(name, fp);
    if (name === this.ctx.nodeName) this.#own(n);
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

  #remove(name: string): LeaseEvent[] {
    this.#seen.delete(name);
    this.#warned.delete(name);
    if (name === this.ctx.nodeName) this.#own(undefined);
    const prev = this.#known.get(name);
    if (!prev) return [];
    this.#known.delete(name);
    return [{ type: "removed", lease: prev }];
  }

  /** A complete list: delivered as the difference to what was delivered before. */
  #listed(items: KubeNode[]): void {
    const events: LeaseEvent[] = [];
    const names = new Set<string>();
    for (const n of items) {
      names.add(n.metadata.name);
      events.push(...this.#upsert(n));
    }
    for (const name of [...this.#seen.keys()]) if (!names.has(name)) events.push(...this.#remove(name));
    if (!names.has(this.ctx.nodeName)) this.#own(undefined);
    if (events.length) this.#deliver(events);
    this.opts.onSync?.();
  }

  #event(type: "ADDED" | "MODIFIED" | "DELETED", n: KubeNode): void {
    const es = type === "DELETED" ? this.#remove(n.metadata.name) : this.#upsert(n);
    if (!es.length) return;
    this.#batch.push(...es);
    // One batch per chunk read: the events of one chunk arrive synchronously before this runs.
    if (!this.#queued) {
      this.#queued = true;
      queueMicrotask(() => this.#flush());
    }
  }

  #flush(): void {
    this.#queued = false;
    if (!this.#batch.length) return;
    const b = this.#batch;
    this.#batch = [];
    this.#deliver(b);
  }

  /** Runs until `opts.signal` aborts. */
  async run(): Promise<void> {
    await this.#reflector.run(this.opts.signal);
    this.#flush();
  }
}
