/**
 * client-go's reflector, the one way weft watches a Kubernetes collection (nodes for the lease store,
 * NetworkPolicies, pods and namespaces for the policy engine), held to the API server's contract
 * (shared/ANCHORS.md §11):
 *
 * - List once with `resourceVersion=0` — served from the API server's watch cache, not etcd — streamed
 *   item by item and trimmed on arrival ({@linkcode ReflectorOptions.transform}); pages only when the
 *   server cuts the list.
 * - Watch from the list's resourceVersion with bookmarks; every event and bookmark moves the resume
 *   point. A watch the server ends (its timeout, a restart) or that breaks is resumed from the last
 *   resourceVersion — no list. Only `410 Gone`/`Expired` (the resume point fell out of the server's
 *   history) lists again, and the consumer diffs that list against what it had.
 * - A watch silent for twice the bookmark interval (no event, no bookmark: the server's host vanished,
 *   a half-open connection) is dead and re-opened; every request has a time limit (the client's).
 * - Failures wait a full-jitter exponential back-off, 0.8 s → 30 s (src/async.ts `Backoff`), never less
 *   than the server's `Retry-After` (429 from API Priority and Fairness, 5xx): after an API server
 *   restart, 5000 nodes come back spread over the window, not in lock-step. The back-off starts over
 *   once a watch has lived a while. Nothing here is ever fatal: it retries until stopped.
 * - Health comes from the stream itself ({@linkcode ReflectorHandlers.onHealth}): up while the list
 *   or watch is established, down with the reason when it cannot be (re-)established, and `refused`
 *   when the server rejects the credentials or RBAC forbids the request (401/403), which no retry fixes.
 *   No request is made to find this out: in steady state the only traffic is the one watch.
 *
 * Handlers are called synchronously from the stream and must be cheap (flannel #2251: a handler that
 * blocks the watch stalls every node); the events of one chunk arrive back to back, so a consumer can
 * batch them with a microtask.
 *
 * @module
 */
import { Backoff, sleep } from "../async.ts";
import { log, RepeatedFailure } from "../log.ts";
import { KubeApiError, type ListOptions, type WatchEvent, type WatchOptions } from "./client.ts";
import type { JsonPath } from "./json_prune.ts";

const DEFAULT_PRUNE: readonly JsonPath[] = [["metadata", "managedFields"]];

const logger = log("kube");

/** How the collection's watch is doing. */
export interface ReflectorHealth {
  /** The list or watch is established. */
  up: boolean;
  /** Why not: the last failure. */
  why?: string;
  /** The server refused the request itself (401 credentials, 403 RBAC): retries alone will not help. */
  refused?: KubeApiError;
}

/** What the reflector calls. */
export interface ReflectorHandlers<T> {
  /** A complete list (the first one, or after 410): every object now. The consumer diffs. */
  onList(items: T[], resourceVersion: string): void;
  /** One change seen by the watch. */
  onEvent(type: "ADDED" | "MODIFIED" | "DELETED", object: T): void;
  /** Health changes (see {@linkcode ReflectorHealth}). */
  onHealth?(health: ReflectorHealth): void;
  /** A failure, and the back-off about to be waited (ms). */
  onRetry?(ms: number, err: unknown): void;
}

/** Options of a {@linkcode Reflector}. */
export interface ReflectorOptions<T> {
  /** The collection, e.g. `/api/v1/nodes`. */
  path: string;
  /** Label selector. */
  labelSelector?: string;
  /** Field selector. */
  fieldSelector?: string;
  /** Trims each object to what the consumer keeps (memory at 5000 Nodes); identity by default. */
  transform?: (raw: Record<string, unknown>) => T;
  /**
   * Parts of every object dropped from the JSON before it is parsed (default `metadata.managedFields`,
   * which no consumer reads): the bulk of a Node never costs a parse or garbage.
   */
  prune?: readonly JsonPath[];
  /** The server's bookmark interval, ms (kube-apiserver: about a minute); a watch silent 2× this is dead. */
  bookmarkIntervalMs?: number;
  /** First and largest back-off ceiling, ms (default 800 and 30 000). */
  backoffMs?: [number, number];
  /** Each watch asks the server to end it after 1–2× this, s (client-go: 5 min). */
  watchTimeoutSeconds?: number;
  /** A list made just before (start-up's, perhaps still arriving), used once instead of the first list. */
  initial?: () =>
    | { items: T[]; resourceVersion: string }
    | undefined
    | Promise<{ items: T[]; resourceVersion: string } | undefined>;
  /** A name for logs (default: the path). */
  name?: string;
  /** [0, 1) (tests). */
  random?: () => number;
}

/** Counters of one reflector. */
export interface ReflectorStats {
  /** Lists made (first and after 410). */
  lists: number;
  /** Watches opened. */
  watches: number;
  /** Events delivered. */
  events: number;
  /** Bookmarks received. */
  bookmarks: number;
  /** Failed lists and watches. */
  failures: number;
}

/**
 * What the reflector needs of an API client: src/kube's `KubeClient` (tests pass fakes). A client that
 * ignores `onItem` may return the items instead.
 */
export interface ReflectorClient {
  /** Lists the collection. */
  list(path: string, opts: ListOptions): Promise<{ items: unknown[]; resourceVersion: string }>;
  /** Watches it. */
  watch(
    path: string,
    opts: WatchOptions,
    onEvent: (ev: WatchEvent<Record<string, unknown>>) => void,
  ): Promise<void>;
}

/** An error's HTTP status (`KubeApiError.code`, or a `code` a test's fake attaches). */
function codeOf(err: unknown): number | undefined {
  const c = (err as { code?: unknown } | null)?.code;
  return typeof c === "number" ? c : undefined;
}

/** Whether the server rejected the request itself: credentials (401) or RBAC (403). */
export function isRefused(err: unknown): err is KubeApiError {
  return err instanceof KubeApiError && (err.code === 401 || err.code === 403);
}

/** A reflector over one collection (see the module comment). */
export class Reflector<T> {
  /** The resume point: the last resourceVersion seen (list, event or bookmark). */
  resourceVersion: string | undefined;
  /** Counters. */
  readonly stats: ReflectorStats = { lists: 0, watches: 0, events: 0, bookmarks: 0, failures: 0 };
  readonly #backoff: Backoff;
  readonly #name: string;
  /** Ends the current list, watch or wait (relist(), resume()). */
  #cut = new AbortController();
  #health: ReflectorHealth | undefined;
  /** Failures since the last success: one warning per outage, a reminder per growing gap, "works again". */
  readonly #failure: RepeatedFailure;
  /** The current watch: when it opened (0: not yet) and whether anything came through it. */
  #current: { openedAt: number; heard: boolean } = { openedAt: 0, heard: false };

  /**
   * @param client the API client
   * @param opts what to watch and how
   * @param handlers where the objects go
   */
  constructor(
    private readonly client: ReflectorClient,
    private readonly opts: ReflectorOptions<T>,
    private readonly handlers: ReflectorHandlers<T>,
  ) {
    const [first, max] = opts.backoffMs ?? [800, 30_000];
    this.#backoff = new Backoff(first, max, opts.random ? { random: opts.random } : {});
    this.#name = opts.name ?? opts.path;
    this.#failure = new RepeatedFailure(logger, { what: this.#name });
  }

  /** The last health reported. */
  get health(): ReflectorHealth | undefined {
    return this.#health;
  }

  /** Lists again now (diffed by the consumer); normally only a 410 does this. */
  relist(): void {
    this.resourceVersion = undefined;
    this.#cut.abort();
  }

  /** Ends a back-off wait (or the current watch) and resumes from the last resourceVersion now. */
  resume(): void {
    this.#cut.abort();
  }

  #report(h: ReflectorHealth): void {
    const prev = this.#health;
    if (prev && prev.up === h.up && prev.why === h.why && prev.refused?.code === h.refused?.code) return;
    this.#health = h;
    this.handlers.onHealth?.(h);
  }

  #transform(raw: Record<string, unknown>): T {
    return this.opts.transform ? this.opts.transform(raw) : raw as T;
  }

  async #list(signal: AbortSignal): Promise<void> {
    const primed = await this.opts.initial?.();
    if (primed) {
      this.resourceVersion = primed.resourceVersion;
      this.handlers.onList(primed.items, primed.resourceVersion);
      return;
    }
    const items: T[] = [];
    const { items: returned, resourceVersion } = await this.client.list(this.opts.path, {
      resourceVersion: "0",
      ...(this.opts.labelSelector ? { labelSelector: this.opts.labelSelector } : {}),
      ...(this.opts.fieldSelector ? { fieldSelector: this.opts.fieldSelector } : {}),
      signal,
      onItem: (raw) => items.push(this.#transform(raw)),
      prune: this.opts.prune ?? DEFAULT_PRUNE,
    });
    for (const raw of returned) items.push(this.#transform(raw as Record<string, unknown>));
    this.stats.lists++;
    this.resourceVersion = resourceVersion;
    this.#recovered();
    this.#report({ up: true });
    this.handlers.onList(items, resourceVersion);
  }

  /** One watch from the resume point, until the server ends it (resolves) or it fails (throws). */
  async #watch(signal: AbortSignal): Promise<void> {
    const base = this.opts.watchTimeoutSeconds ?? 300;
    const random = this.opts.random ?? Math.random;
    const out: { openedAt: number; heard: boolean } = { openedAt: 0, heard: false };
    this.#current = out;
    await this.client.watch(this.opts.path, {
      resourceVersion: this.resourceVersion!,
      allowWatchBookmarks: true,
      timeoutSeconds: Math.floor(base * (1 + random())),
      idleMs: 2 * (this.opts.bookmarkIntervalMs ?? 60_000),
      ...(this.opts.labelSelector ? { labelSelector: this.opts.labelSelector } : {}),
      ...(this.opts.fieldSelector ? { fieldSelector: this.opts.fieldSelector } : {}),
      signal,
      prune: this.opts.prune ?? DEFAULT_PRUNE,
      onOpen: () => {
        out.openedAt = Date.now();
        this.stats.watches++;
        this.#recovered();
        this.#report({ up: true });
      },
    }, (ev) => {
      out.heard = true;
      const md = (ev.object as { metadata?: { resourceVersion?: string } }).metadata;
      if (md?.resourceVersion) this.resourceVersion = md.resourceVersion;
      if (ev.type === "BOOKMARK") {
        this.stats.bookmarks++;
        return;
      }
      this.stats.events++;
      this.handlers.onEvent(ev.type, this.#transform(ev.object));
    });
  }

  /** Whether the last watch lived: it said something, or stayed open a second (then back-off starts over). */
  #lived(): boolean {
    const w = this.#current;
    return w.heard || (w.openedAt > 0 && Date.now() - w.openedAt >= 1000);
  }

  #recovered(): void {
    this.#failure.succeeded();
  }

  /** Runs until `signal` aborts; never throws. */
  async run(signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      if (this.#cut.signal.aborted) this.#cut = new AbortController();
      // One signal per round: stop, relist() or resume() aborts it (a plain listener, not
      // AbortSignal.any, whose result its sources hold only weakly).
      const round = this.#cut;
      const onStop = () => round.abort();
      signal.addEventListener("abort", onStop, { once: true });
      this.#current = { openedAt: 0, heard: false };
      try {
        if (this.resourceVersion === undefined) await this.#list(round.signal);
        await this.#watch(round.signal);
        // The server ended the watch (its timeout, or it is going down): resume from the resume point.
        // A watch that ends at once, having said nothing, is a failure in disguise: back off.
        if (this.#lived()) this.#backoff.reset();
        else if (!round.signal.aborted) await sleep(this.#backoff.next(), round.signal);
      } catch (err) {
        if (signal.aborted) break;
        if (round.signal.aborted) continue; // relist() or resume()
        await this.#failed(err, round.signal);
      } finally {
        signal.removeEventListener("abort", onStop);
      }
    }
  }

  /** Handles a failed list or watch: 410 re-lists, anything else backs off (Retry-After as floor). */
  async #failed(err: unknown, signal: AbortSignal): Promise<void> {
    if (codeOf(err) === 410) {
      logger.info("{name}: {error}: listing again", { name: this.#name, error: (err as Error).message });
      this.resourceVersion = undefined;
      return;
    }
    this.stats.failures++;
    if (this.#lived()) this.#backoff.reset(); // a watch that served a while: this is a new outage
    const why = (err as Error).message;
    this.#report({ up: false, why, ...(isRefused(err) ? { refused: err } : {}) });
    const ms = this.#backoff.next(err instanceof KubeApiError ? err.retryAfterMs : undefined);
    this.handlers.onRetry?.(ms, err);
    // One warning per outage, then reminders at growing gaps (a long outage must not fill disks); every
    // attempt at debug level.
    this.#failure.failed(why);
    logger.debug("{name}: retrying in {ms} ms (attempt {n})", {
      name: this.#name,
      ms,
      n: this.#failure.attempts,
    });
    await sleep(ms, signal);
  }
}
