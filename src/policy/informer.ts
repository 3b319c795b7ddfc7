/**
 * A client-go style informer for one kind, on src/kube's reflector (the one the lease store watches nodes
 * with: list from the watch cache, bookmarks, jittered back-off with Retry-After as floor, dead-watch
 * detection): a reflector that lists the collection, then watches from
 * the list's resourceVersion (with bookmarks keeping the resume point fresh), resumes the watch where
 * it left off when the stream ends or breaks, and re-lists when the server says the resume point is
 * gone (410 Expired), replacing its store by a diff so deletions made meanwhile are seen. The store is
 * only ever updated in place, synchronously, and `onChange` only signals: whatever is slow (compiling,
 * programming the kernel) runs in the consumer's own worker, so handling never blocks the watch.
 *
 * While the API is unreachable the store keeps the last known state; consumers keep enforcing it.
 *
 * @module
 */
import { Reflector, type ReflectorClient } from "../kube/reflector.ts";

/** One watch event (the API's JSON). */
export interface WatchEvent<T> {
  /** ADDED, MODIFIED, DELETED or BOOKMARK. */
  type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK";
  /** The object (for BOOKMARK only its resourceVersion). */
  object: T;
}

/** What the informer needs from an API client (src/kube's KubeClient has this shape). */
export interface ListWatchClient {
  /** Lists a collection (every page) with the list's resourceVersion. */
  list<T>(
    path: string,
    opts?: { signal?: AbortSignal; timeoutMs?: number },
  ): Promise<{ items: T[]; resourceVersion: string }>;
  /**
   * Watches from `resourceVersion`, calling `onEvent` per event; resolves when the server ends the
   * stream or `signal` aborts, rejects when it breaks (an error with `code` 410 means: re-list).
   */
  watch<T>(
    path: string,
    opts: {
      resourceVersion?: string;
      allowWatchBookmarks?: boolean;
      timeoutSeconds?: number;
      idleMs?: number;
      signal: AbortSignal;
      /** Called once the watch is established (the reflector's health comes from it). */
      onOpen?: () => void;
    },
    onEvent: (ev: WatchEvent<T>) => void,
  ): Promise<void>;
}

/** The part of an object the informer reads. */
export interface KubeObject {
  /** Identity and version. */
  metadata: { name: string; namespace?: string | undefined; resourceVersion?: string | undefined };
}

/** Options of {@linkcode Informer}. */
export interface InformerOptions {
  /** Called (synchronously, must be cheap) after the store changed. */
  onChange(): void;
  /** Called when listing or watching failed (before the back-off). */
  onError?(err: unknown): void;
  /** Called when the API answers again after a failure. */
  onRecover?(): void;
  /** Back-off after a failure: first and longest wait, ms (default 250 and 10 000). */
  backoffMs?: [number, number];
  /** Longest watch the server is asked for, s (default 300; each watch takes 50–100 % of it). */
  watchTimeoutSeconds?: number;
  /** A watch silent this long is dropped and resumed, ms (bookmarks arrive about every minute). */
  idleMs?: number;
  /** Trims each object before it is stored (keep only what the consumer reads: memory at scale). */
  transform?(o: KubeObject): KubeObject;
}

/** `namespace/name` (or `name` for cluster-scoped kinds): the store key. */
export function objectKey(o: KubeObject): string {
  return o.metadata.namespace ? `${o.metadata.namespace}/${o.metadata.name}` : o.metadata.name;
}

/** An informer over one collection path, e.g. `/apis/networking.k8s.io/v1/networkpolicies`. */
export class Informer<T extends KubeObject> {
  /** The objects, by {@linkcode objectKey}. */
  readonly store = new Map<string, T>();
  /** True once the first list arrived (before that the store means nothing). */
  synced = false;
  /** True while the last list or watch call succeeded. */
  connected = false;
  /** Lists done (the first one and every re-list). */
  lists = 0;
  /** Watch events applied. */
  events = 0;
  /** The last failure, for status output. */
  lastError: string | undefined;

  /** @param client the API; @param path the collection's path */
  constructor(
    private readonly client: ListWatchClient,
    readonly path: string,
    private readonly opts: InformerOptions,
  ) {}

  /** Runs until `signal` aborts: src/kube's reflector does the listing and watching. */
  async run(signal: AbortSignal): Promise<void> {
    const timeout = this.opts.watchTimeoutSeconds ?? 300;
    const reflector = new Reflector<T>(this.client as unknown as ReflectorClient, {
      path: this.path,
      backoffMs: this.opts.backoffMs ?? [250, 10_000],
      watchTimeoutSeconds: Math.max(1, Math.floor(timeout / 2)), // each watch asks for 1–2× this
      ...(this.opts.idleMs ? { bookmarkIntervalMs: this.opts.idleMs / 2 } : {}),
      transform: (o) => this.#trim(o as unknown as T),
    }, {
      onList: (items) => {
        this.#replace(items);
        this.lists++;
        this.synced = true;
      },
      onEvent: (type, object) => this.#apply({ type, object }),
      onHealth: (h) => {
        if (h.up) this.#up();
      },
      onRetry: (_ms, err) => {
        this.lastError = err instanceof Error ? err.message : String(err);
        this.connected = false;
        this.opts.onError?.(err);
      },
    });
    await reflector.run(signal);
  }

  #up(): void {
    if (!this.connected) {
      const wasDown = this.lastError !== undefined;
      this.connected = true;
      if (wasDown) this.opts.onRecover?.();
    }
  }

  #apply(ev: WatchEvent<T>): void {
    if (ev.type === "BOOKMARK") return;
    this.events++;
    const key = objectKey(ev.object);
    const obj = ev.object; // trimmed by the reflector
    if (ev.type === "DELETED") {
      if (this.store.delete(key)) this.opts.onChange();
      return;
    }
    this.store.set(key, obj);
    this.opts.onChange();
  }

  #trim(o: T): T {
    return this.opts.transform ? this.opts.transform(o) as T : o;
  }

  /** Replaces the store with a list (already trimmed), telling the consumer only when something differs. */
  #replace(items: T[]): void {
    let changed = items.length !== this.store.size;
    const next = new Map<string, T>();
    for (const o of items) {
      const key = objectKey(o);
      next.set(key, o);
      const had = this.store.get(key);
      if (!had || had.metadata.resourceVersion !== o.metadata.resourceVersion) changed = true;
    }
    this.store.clear();
    for (const [k, v] of next) this.store.set(k, v);
    if (changed || !this.synced) this.opts.onChange();
  }
}
