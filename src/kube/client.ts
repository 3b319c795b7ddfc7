/**
 * A small Kubernetes API client on Deno's `fetch`: JSON requests, lists streamed item by item, streaming
 * watches, the three patch types, `Status` errors as {@linkcode KubeApiError}. It replaces
 * `@kubernetes/client-node`, whose import costs ~0.6 s of CPU and ~80 MB of RSS in this Deno
 * (BENCHMARKS.md, "Kubernetes client"): more than the whole agent's budget for 1000 peers.
 *
 * Every request has a time limit: a plain request its whole answer (default 10 s), a list each piece of
 * its answer (a 65 MB list may take longer than 10 s on a loaded node, but never stalls that long), a
 * watch its headers and then each line (the caller's idle limit: a dead connection is noticed). An
 * answer's `Retry-After` (429 from API Priority and Fairness, 5xx) travels in the error, so retry loops
 * wait at least that long (`Backoff.next`'s floor). The client itself never retries: its
 * callers back off.
 *
 * TLS and credentials: the kubeconfig's or service account's CA and client certificate go to
 * `Deno.createHttpClient`; `insecure-skip-tls-verify` (which `fetch` cannot do per client) goes through
 * `node:https` with `rejectUnauthorized: false`, imported only then. Rotated credentials are used without
 * a restart: a token file is re-read when it changes, client certificate and key files (the kubelet's
 * rotation) and the kubeconfig itself (inline credentials) when theirs do — a `stat` per request, and
 * requests are rare in steady state — and all of them once more on a 401.
 *
 * @module
 */
import { log } from "../log.ts";
import { type KubeConnection, loadKubeconfig } from "./config.ts";
import { type JsonPath, pruneJson } from "./json_prune.ts";
import { ListScanner } from "./list_scanner.ts";

const logger = log("kube");

/** A failure answered by the API server, from its `Status` object. */
export class KubeApiError extends Error {
  /**
   * `code` is the HTTP status, `reason` the Status reason (`NotFound`, `Forbidden`, `Expired`…),
   * `retryAfterMs` the answer's `Retry-After` (429, 5xx), when it had one.
   */
  constructor(
    readonly code: number,
    readonly reason: string,
    message: string,
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = "KubeApiError";
  }
}

/** One watch event. */
export interface WatchEvent<T = Record<string, unknown>> {
  /** ADDED, MODIFIED, DELETED, BOOKMARK (ERROR events are thrown as {@linkcode KubeApiError}). */
  type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK";
  /** The object (for BOOKMARK only `metadata.resourceVersion` is meaningful). */
  object: T;
}

/** Options of {@linkcode KubeClient.request}. */
export interface RequestOptions {
  /** Query parameters. */
  query?: Record<string, string | undefined>;
  /** JSON body. */
  body?: unknown;
  /** Body content type (default application/json). */
  contentType?: string;
  /** Cancels the request. */
  signal?: AbortSignal;
  /** Gives up after this long (default: the client's). */
  timeoutMs?: number;
}

/** Options of {@linkcode KubeClient.list}. */
export interface ListOptions {
  /** `resourceVersion` of the first page: "0" is served from the API server's watch cache. */
  resourceVersion?: string;
  /** Label selector. */
  labelSelector?: string;
  /** Field selector. */
  fieldSelector?: string;
  /** Items a page (default 500, as client-go's reflector); a server may ignore it (rv=0 does). */
  limit?: number;
  /** Cancels the list. */
  signal?: AbortSignal;
  /** Gives up when no byte arrives for this long (default: the client's timeout). */
  timeoutMs?: number;
  /** Receives each item as it is parsed (then `items` stays empty): trim it to what you keep. */
  onItem?: (item: Record<string, unknown>) => void;
  /** Parts of each item dropped before it is parsed (json_prune.ts), e.g. `["status", "images"]`. */
  prune?: readonly JsonPath[];
}

/** Options of {@linkcode KubeClient.watch}. */
export interface WatchOptions {
  /** Where to start (absent: every current object first, as ADDED). */
  resourceVersion?: string;
  /** Ask for BOOKMARK events. */
  allowWatchBookmarks?: boolean;
  /** The server ends the watch after this long. */
  timeoutSeconds?: number;
  /** Label selector. */
  labelSelector?: string;
  /** Field selector. */
  fieldSelector?: string;
  /** A stream silent this long (no event, no bookmark) is dead (default 90 s). */
  idleMs?: number;
  /** Stops the watch (it then resolves). */
  signal: AbortSignal;
  /** Called once the server accepted the watch (its headers arrived). */
  onOpen?: () => void;
  /** Parts of each event's object dropped before it is parsed (json_prune.ts). */
  prune?: readonly JsonPath[];
}

/** The patch types the API accepts. */
export const PATCH_TYPES = {
  strategic: "application/strategic-merge-patch+json",
  merge: "application/merge-patch+json",
  json: "application/json-patch+json",
} as const;

/** Requests sent, by verb (for tests, benches and metrics). */
export interface ClientStats {
  /** GETs of one object. */
  get: number;
  /** List pages. */
  list: number;
  /** Watches opened. */
  watch: number;
  /** PATCHes. */
  patch: number;
  /** Other methods. */
  other: number;
}

interface Raw {
  status: number;
  body: ReadableStream<Uint8Array>;
  retryAfter: string | null;
}

/** A `Retry-After` header (seconds, or an HTTP date) in ms; undefined when absent or unreadable. */
export function parseRetryAfter(v: string | null, now = Date.now()): number | undefined {
  if (!v) return undefined;
  const s = Number(v.trim());
  if (Number.isFinite(s) && s >= 0) return Math.round(s * 1000);
  const t = Date.parse(v);
  return Number.isFinite(t) ? Math.max(0, t - now) : undefined;
}

function statusError(code: number, text: string, what: string, retryAfter: string | null): KubeApiError {
  const ra = parseRetryAfter(retryAfter);
  try {
    const s = JSON.parse(text);
    if (s?.kind === "Status") {
      return new KubeApiError(s.code ?? code, s.reason ?? "", s.message ?? `${what}: HTTP ${code}`, ra);
    }
  } catch { /* not JSON */ }
  return new KubeApiError(
    code,
    code === 401 ? "Unauthorized" : code === 429 ? "TooManyRequests" : "",
    `${what}: HTTP ${code} ${text.slice(0, 200)}`,
    ra,
  );
}

/**
 * A signal that aborts when any of `signals` does (or `ms` pass), held by plain listeners: the result of
 * `AbortSignal.any` is only weakly held by its sources, and a watch lost its abort that way (a watch that
 * never ended). Call `done()` to detach.
 */
function linkedSignal(signals: AbortSignal[], ms?: number): { signal: AbortSignal; done: () => void } {
  const ac = new AbortController();
  const abort = () => ac.abort();
  for (const s of signals) {
    if (s.aborted) ac.abort();
    else s.addEventListener("abort", abort, { once: true });
  }
  const timer = ms !== undefined ? setTimeout(abort, ms) : undefined;
  return {
    signal: ac.signal,
    done() {
      clearTimeout(timer);
      for (const s of signals) s.removeEventListener("abort", abort);
    },
  };
}

/**
 * A timer that aborts `ac` unless re-armed within its period (a stall detector). A re-arm only moves the
 * deadline: it is called for every piece of a body (~1600 for a 26 MB list of 2000 Nodes), and a
 * clearTimeout + setTimeout each time cost ~10 ms of that start (CPU profile). The one timer, when it
 * fires before the deadline, waits for the rest.
 */
function stallTimer(ac: AbortController, ms: number) {
  let deadline = performance.now() + ms;
  let firesAt = deadline;
  let t: ReturnType<typeof setTimeout> | undefined;
  const arm = (delay: number) => {
    firesAt = performance.now() + delay;
    t = setTimeout(fire, delay);
  };
  const fire = () => {
    t = undefined;
    const left = deadline - performance.now();
    if (left <= 0) ac.abort();
    else arm(left);
  };
  arm(ms);
  return {
    rearm(next = ms) {
      deadline = performance.now() + next;
      if (t === undefined || deadline >= firesAt) return; // fired, cleared, or it will look again in time
      clearTimeout(t);
      arm(next);
    },
    clear() {
      if (t !== undefined) clearTimeout(t);
      t = undefined;
    },
  };
}

function fileStamp(path: string): string {
  try {
    const st = Deno.statSync(path);
    return `${st.mtime?.getTime()}:${st.size}:${st.ino}`;
  } catch {
    return "missing";
  }
}

/** A connection to one API server. */
export class KubeClient {
  #client: Deno.HttpClient | undefined;
  /** Clients replaced by a credential rotation: watches opened on them may still run. */
  readonly #retired: Deno.HttpClient[] = [];
  #conn: KubeConnection;
  #token: string | undefined;
  #tokenStamp = "";
  #credStamp: string;
  #https?: typeof import("node:https");
  readonly #timeoutMs: number;
  /** Requests sent so far, by verb. */
  readonly stats: ClientStats = { get: 0, list: 0, watch: 0, patch: 0, other: 0 };

  /** A client for `conn`; requests give up after `timeoutMs` (default 10 s). */
  constructor(conn: KubeConnection, opts: { timeoutMs?: number } = {}) {
    this.#conn = conn;
    this.#timeoutMs = opts.timeoutMs ?? 10_000;
    this.#client = this.#httpClient();
    if (conn.token !== undefined) this.#token = conn.token;
    this.#credStamp = this.#credFiles().map(fileStamp).join("|");
  }

  /** The connection in use (credentials as last re-read). */
  get conn(): KubeConnection {
    return this.#conn;
  }

  /** The request time limit, ms. */
  get timeoutMs(): number {
    return this.#timeoutMs;
  }

  #httpClient(): Deno.HttpClient | undefined {
    const c = this.#conn;
    if (c.insecure || !(c.caPem || c.certPem)) return undefined;
    return Deno.createHttpClient({
      ...(c.caPem ? { caCerts: [c.caPem] } : {}),
      ...(c.certPem && c.keyPem ? { cert: c.certPem, key: c.keyPem } : {}),
    });
  }

  #credFiles(): string[] {
    const c = this.#conn;
    return [c.certFile, c.keyFile, c.kubeconfig?.path].filter((f): f is string => !!f);
  }

  /**
   * Re-reads rotated credentials when their files changed (or `force`): the client certificate and key
   * files, the kubeconfig (inline data); the server URL stays. Returns whether anything was re-read.
   */
  async #refreshCredentials(force = false): Promise<boolean> {
    const files = this.#credFiles();
    if (!files.length) return false;
    const stamp = files.map(fileStamp).join("|");
    if (stamp === this.#credStamp && !force) return false;
    this.#credStamp = stamp;
    const c = this.#conn;
    let next: KubeConnection = { ...c };
    try {
      if (c.kubeconfig) {
        const k = await loadKubeconfig(c.kubeconfig.path, c.kubeconfig.context);
        next = { ...k, server: c.server, source: c.source };
      } else {
        if (c.certFile) next.certPem = Deno.readTextFileSync(c.certFile);
        if (c.keyFile) next.keyPem = Deno.readTextFileSync(c.keyFile);
      }
    } catch (err) {
      logger.warn("re-reading the API credentials ({source}): {error}", {
        source: c.source,
        error: (err as Error).message,
      });
      return false;
    }
    const changed = next.certPem !== c.certPem || next.keyPem !== c.keyPem || next.caPem !== c.caPem ||
      next.token !== c.token || next.tokenFile !== c.tokenFile;
    if (!changed) return false;
    this.#conn = next;
    if (next.token !== c.token) this.#token = next.token;
    if (next.tokenFile !== c.tokenFile) this.#tokenStamp = "";
    if (this.#client) this.#retired.push(this.#client);
    this.#client = this.#httpClient();
    logger.info("API credentials changed ({source}): using the new ones", { source: c.source });
    return true;
  }

  /** The bearer token, re-read from its file when the file changed (or `force`). */
  #bearer(force = false): string | undefined {
    const file = this.#conn.tokenFile;
    if (!file) return this.#token;
    const stamp = fileStamp(file);
    if (force || stamp !== this.#tokenStamp || this.#token === undefined) {
      try {
        this.#token = Deno.readTextFileSync(file).trim();
        this.#tokenStamp = stamp;
      } catch (err) {
        throw new Error(`reading the API token ${file}: ${(err as Error).message}`);
      }
    }
    return this.#token;
  }

  #headers(contentType?: string, forceToken = false): Record<string, string> {
    const h: Record<string, string> = { accept: "application/json", "user-agent": "weft" };
    if (contentType) h["content-type"] = contentType;
    const token = this.#bearer(forceToken);
    if (token) h.authorization = `Bearer ${token}`;
    else if (this.#conn.basic) {
      h.authorization = `Basic ${btoa(`${this.#conn.basic.username}:${this.#conn.basic.password}`)}`;
    }
    return h;
  }

  async #send(
    method: string,
    url: string,
    headers: Record<string, string>,
    body: string | undefined,
    signal: AbortSignal,
  ): Promise<Raw> {
    const conn = this.#conn;
    if (!conn.insecure) {
      const r = await fetch(url, {
        method,
        headers,
        ...(body !== undefined ? { body } : {}),
        signal,
        ...(this.#client ? { client: this.#client } : {}),
      });
      return {
        status: r.status,
        body: r.body ?? new ReadableStream({ start: (c) => c.close() }),
        retryAfter: r.headers.get("retry-after"),
      };
    }
    this.#https ??= await import("node:https");
    const https = this.#https;
    return await new Promise<Raw>((resolve, reject) => {
      const req = https.request(url, {
        method,
        headers,
        rejectUnauthorized: false,
        ...(conn.certPem && conn.keyPem ? { cert: conn.certPem, key: conn.keyPem } : {}),
        signal,
      }, (res) => {
        const stream = new ReadableStream<Uint8Array>({
          start(c) {
            res.on("data", (d: Uint8Array) => c.enqueue(new Uint8Array(d)));
            res.on("end", () => c.close());
            res.on("error", (e: Error) => c.error(e));
          },
          cancel() {
            res.destroy();
          },
        });
        const ra = res.headers["retry-after"];
        resolve({
          status: res.statusCode ?? 0,
          body: stream,
          retryAfter: typeof ra === "string" ? ra : null,
        });
      });
      req.on("error", reject);
      if (body !== undefined) req.write(body);
      req.end();
    });
  }

  #url(path: string, query?: Record<string, string | undefined>): string {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) q.set(k, v);
    const qs = q.toString();
    return `${this.#conn.server}${path}${qs ? `?${qs}` : ""}`;
  }

  #count(method: string, verb?: keyof ClientStats): void {
    const k = verb ?? (method === "PATCH" ? "patch" : method === "GET" ? "get" : "other");
    this.stats[k]++;
  }

  /**
   * Sends a request and returns the answer's status and body stream; on a 401 re-reads the credentials
   * and, when they changed, tries once more.
   */
  async #raw(
    method: string,
    path: string,
    opts: RequestOptions,
    signal: AbortSignal,
    verb?: keyof ClientStats,
  ): Promise<Raw> {
    await this.#refreshCredentials();
    const body = opts.body === undefined ? undefined : JSON.stringify(opts.body);
    const ct = body !== undefined ? opts.contentType ?? "application/json" : undefined;
    const url = this.#url(path, opts.query);
    this.#count(method, verb);
    let r = await this.#send(method, url, this.#headers(ct), body, signal);
    if (r.status === 401) {
      const rotated = await this.#refreshCredentials(true);
      if (rotated || this.#conn.tokenFile) {
        await r.body.cancel();
        this.#count(method, verb);
        r = await this.#send(method, url, this.#headers(ct, true), body, signal);
      }
    }
    return r;
  }

  /** Turns a transport failure into an error naming the request and the server. */
  #failed(err: unknown, what: string, timedOut: boolean, limit: number): Error {
    if (err instanceof KubeApiError) return err;
    if (timedOut) return new Error(`${what}: no answer from ${this.#conn.server} in ${limit} ms`);
    return new Error(`${what}: ${this.#conn.server} unreachable: ${(err as Error).message}`, { cause: err });
  }

  /** A JSON request; throws {@linkcode KubeApiError} for an error answer. */
  async request<T = Record<string, unknown>>(
    method: string,
    path: string,
    opts: RequestOptions = {},
  ): Promise<T> {
    const limit = opts.timeoutMs ?? this.#timeoutMs;
    const { signal, done } = linkedSignal(opts.signal ? [opts.signal] : [], limit);
    const what = `${method} ${path}`;
    try {
      const r = await this.#raw(method, path, opts, signal);
      const text = await new Response(r.body).text();
      if (r.status >= 300) throw statusError(r.status, text, what, r.retryAfter);
      return JSON.parse(text) as T;
    } catch (err) {
      throw this.#failed(err, what, signal.aborted && !opts.signal?.aborted, limit);
    } finally {
      done();
    }
  }

  /** GET. */
  get<T = Record<string, unknown>>(path: string, opts: RequestOptions = {}): Promise<T> {
    return this.request<T>("GET", path, opts);
  }

  /** PATCH with the given patch type (default strategic merge, as flannel sends). */
  patch<T = Record<string, unknown>>(
    path: string,
    body: unknown,
    type: keyof typeof PATCH_TYPES = "strategic",
    opts: Omit<RequestOptions, "body" | "contentType"> = {},
  ): Promise<T> {
    return this.request<T>("PATCH", path, { ...opts, body, contentType: PATCH_TYPES[type] });
  }

  /**
   * Lists a collection and returns its items with the list's resourceVersion. The answer is parsed item
   * by item as it arrives (list_scanner.ts); with `onItem` the items go there instead of the result.
   * Pages are followed only when the server cuts the list (`continue`).
   */
  async list<T = Record<string, unknown>>(
    path: string,
    opts: ListOptions = {},
  ): Promise<{ items: T[]; resourceVersion: string; pages: number }> {
    const items: T[] = [];
    const onItem = opts.onItem ?? ((i: Record<string, unknown>) => void items.push(i as T));
    let cont: string | undefined;
    let rv = "", pages = 0;
    do {
      const meta = await this.#listPage(
        path,
        {
          labelSelector: opts.labelSelector,
          fieldSelector: opts.fieldSelector,
          limit: String(opts.limit ?? 500),
          // A continued page carries no resourceVersion (the server refuses both).
          ...(cont ? { continue: cont } : { resourceVersion: opts.resourceVersion }),
        },
        opts,
        onItem,
      );
      pages++;
      if (!rv) rv = meta.resourceVersion ?? "";
      cont = meta.continue || undefined;
    } while (cont);
    return { items, resourceVersion: rv, pages };
  }

  /** One page of a list, streamed into `onItem`; returns its metadata. */
  async #listPage(
    path: string,
    query: Record<string, string | undefined>,
    opts: ListOptions,
    onItem: (item: Record<string, unknown>) => void,
  ): Promise<ListScanner["metadata"]> {
    const limit = opts.timeoutMs ?? this.#timeoutMs;
    const stalled = new AbortController();
    const { signal, done } = linkedSignal([...(opts.signal ? [opts.signal] : []), stalled.signal]);
    const timer = stallTimer(stalled, limit);
    const what = `list ${path}`;
    try {
      const r = await this.#raw("GET", path, { query }, signal, "list");
      if (r.status >= 300) {
        throw statusError(r.status, await new Response(r.body).text(), what, r.retryAfter);
      }
      const scanner = new ListScanner(opts.prune);
      const dec = new TextDecoder();
      const reader = r.body.getReader();
      const cancel = () => void reader.cancel().catch(() => {});
      signal.addEventListener("abort", cancel, { once: true });
      const parse = (json: string) => onItem(JSON.parse(json));
      for (;;) {
        timer.rearm();
        const { value, done: ended } = await reader.read();
        if (ended) break;
        scanner.feed(dec.decode(value, { stream: true }), parse, 64 * 1024);
      }
      if (signal.aborted) throw new Error("aborted");
      scanner.finish(parse);
      return scanner.metadata;
    } catch (err) {
      throw this.#failed(err, what, stalled.signal.aborted && !opts.signal?.aborted, limit);
    } finally {
      timer.clear();
      done();
    }
  }

  /**
   * Watches a collection from `resourceVersion` and calls `onEvent` for each event until the server
   * ends the stream (resolves), the stream breaks or stays silent longer than `idleMs` (rejects), an
   * ERROR event arrives (rejects with its {@linkcode KubeApiError}: 410 Expired means re-list), or
   * `signal` aborts (resolves). The headers must come within the client's timeout.
   */
  async watch<T = Record<string, unknown>>(
    path: string,
    opts: WatchOptions,
    onEvent: (ev: WatchEvent<T>) => void,
  ): Promise<void> {
    const idle = new AbortController();
    const { signal, done } = linkedSignal([opts.signal, idle.signal]);
    const idleMs = opts.idleMs ?? 90_000;
    const timer = stallTimer(idle, Math.min(idleMs, this.#timeoutMs));
    let opened = false;
    try {
      const r = await this.#raw(
        "GET",
        path,
        {
          query: {
            watch: "true",
            resourceVersion: opts.resourceVersion,
            allowWatchBookmarks: opts.allowWatchBookmarks ? "true" : undefined,
            timeoutSeconds: opts.timeoutSeconds ? String(opts.timeoutSeconds) : undefined,
            labelSelector: opts.labelSelector,
            fieldSelector: opts.fieldSelector,
          },
        },
        signal,
        "watch",
      );
      if (r.status >= 300) {
        throw statusError(r.status, await new Response(r.body).text(), `watch ${path}`, r.retryAfter);
      }
      opened = true;
      timer.rearm(idleMs);
      opts.onOpen?.();
      const prune = opts.prune?.map((p) => ["object", ...p]) ?? [];
      await this.#readEvents(r.body, signal, () => timer.rearm(idleMs), onEvent, prune);
      if (signal.aborted && !opts.signal.aborted) throw new Error("aborted");
    } catch (err) {
      if (opts.signal.aborted) return;
      if (err instanceof KubeApiError) throw err;
      if (idle.signal.aborted) {
        throw new Error(
          opened
            ? `watch ${path}: nothing from ${this.#conn.server} in ${idleMs} ms (no event, no bookmark): the connection is dead`
            : `watch ${path}: no answer from ${this.#conn.server} in ${Math.min(idleMs, this.#timeoutMs)} ms`,
        );
      }
      throw new Error(`watch ${path}: ${(err as Error).message}`, { cause: err });
    } finally {
      timer.clear();
      done();
    }
  }

  /** Reads a watch stream line by line until it ends (or `signal` aborts it). */
  async #readEvents<T>(
    body: ReadableStream<Uint8Array>,
    signal: AbortSignal,
    alive: () => void,
    onEvent: (ev: WatchEvent<T>) => void,
    prune: readonly JsonPath[],
  ): Promise<void> {
    const dec = new TextDecoder();
    let buf = "";
    // Cancel the reader itself on abort: seen here, an aborted fetch could leave a pending body read
    // of an open watch unresolved (the watch then never ended).
    const reader = body.getReader();
    const cancel = () => void reader.cancel().catch(() => {});
    signal.addEventListener("abort", cancel, { once: true });
    if (signal.aborted) cancel();
    try {
      for (;;) {
        const { value: chunk, done: ended } = await reader.read();
        if (ended) return;
        alive();
        buf += dec.decode(chunk, { stream: true });
        let from = 0, nl;
        while ((nl = buf.indexOf("\n", from)) >= 0) {
          const line = buf.slice(from, nl);
          from = nl + 1;
          if (!line.trim()) continue;
          const ev = JSON.parse(prune.length ? pruneJson(line, prune) : line) as {
            type: string;
            object: Record<string, unknown>;
          };
          if (ev.type === "ERROR") {
            const s = ev.object as { code?: number; reason?: string; message?: string };
            throw new KubeApiError(s.code ?? 500, s.reason ?? "", s.message ?? "watch error");
          }
          onEvent(ev as WatchEvent<T>);
        }
        buf = from ? buf.slice(from) : buf;
      }
    } finally {
      signal.removeEventListener("abort", cancel);
    }
  }

  /** Releases the connection pools. */
  close(): void {
    this.#client?.close();
    for (const c of this.#retired.splice(0)) c.close();
  }
}
