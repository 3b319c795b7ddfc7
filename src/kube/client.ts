/**
 * A small Kubernetes API client on Deno's `fetch`: JSON requests, paged lists, streaming watches, the
 * three patch types, `Status` errors as {@linkcode KubeApiError}. It replaces `@kubernetes/client-node`,
 * whose import costs ~0.6 s of CPU and ~80 MB of RSS in this Deno (BENCHMARKS.md, "Kubernetes client"):
 * more than the whole agent's budget for 1000 peers.
 *
 * TLS: the kubeconfig's or service account's CA and client certificate go to
 * `Deno.createHttpClient`; `insecure-skip-tls-verify` (which `fetch` cannot do per client) goes through
 * `node:https` with `rejectUnauthorized: false`, imported only then. A token file is re-read whenever
 * it changes (service-account token rotation), and once more on a 401.
 *
 * @module
 */
import type { KubeConnection } from "./config.ts";

/** A failure answered by the API server, from its `Status` object. */
export class KubeApiError extends Error {
  /** `code` is the HTTP status, `reason` the Status reason (`NotFound`, `Forbidden`, `Expired`…). */
  constructor(readonly code: number, readonly reason: string, message: string) {
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

/** The patch types the API accepts. */
export const PATCH_TYPES = {
  strategic: "application/strategic-merge-patch+json",
  merge: "application/merge-patch+json",
  json: "application/json-patch+json",
} as const;

interface Raw {
  status: number;
  body: ReadableStream<Uint8Array>;
}

function statusError(code: number, text: string, what: string): KubeApiError {
  try {
    const s = JSON.parse(text);
    if (s?.kind === "Status") {
      return new KubeApiError(s.code ?? code, s.reason ?? "", s.message ?? `${what}: HTTP ${code}`);
    }
  } catch { /* not JSON */ }
  return new KubeApiError(
    code,
    code === 401 ? "Unauthorized" : "",
    `${what}: HTTP ${code} ${text.slice(0, 200)}`,
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

/** A connection to one API server. */
export class KubeClient {
  #client?: Deno.HttpClient;
  #token?: string;
  #tokenStamp = "";
  #https?: typeof import("node:https");
  readonly #timeoutMs: number;

  /** A client for `conn`; requests give up after `timeoutMs` (default 10 s). */
  constructor(readonly conn: KubeConnection, opts: { timeoutMs?: number } = {}) {
    this.#timeoutMs = opts.timeoutMs ?? 10_000;
    if (!conn.insecure && (conn.caPem || conn.certPem)) {
      this.#client = Deno.createHttpClient({
        ...(conn.caPem ? { caCerts: [conn.caPem] } : {}),
        ...(conn.certPem && conn.keyPem ? { cert: conn.certPem, key: conn.keyPem } : {}),
      });
    }
    if (conn.token !== undefined) this.#token = conn.token;
  }

  /** The bearer token, re-read from its file when the file changed (or `force`). */
  #bearer(force = false): string | undefined {
    const file = this.conn.tokenFile;
    if (!file) return this.#token;
    let stamp = "";
    try {
      const st = Deno.statSync(file);
      stamp = `${st.mtime?.getTime()}:${st.size}:${st.ino}`;
    } catch { /* re-read below fails the same way */ }
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
    else if (this.conn.basic) {
      h.authorization = `Basic ${btoa(`${this.conn.basic.username}:${this.conn.basic.password}`)}`;
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
    if (!this.conn.insecure) {
      const r = await fetch(url, {
        method,
        headers,
        ...(body !== undefined ? { body } : {}),
        signal,
        ...(this.#client ? { client: this.#client } : {}),
      });
      return { status: r.status, body: r.body ?? new ReadableStream({ start: (c) => c.close() }) };
    }
    this.#https ??= await import("node:https");
    const https = this.#https;
    return await new Promise<Raw>((resolve, reject) => {
      const req = https.request(url, {
        method,
        headers,
        rejectUnauthorized: false,
        ...(this.conn.certPem && this.conn.keyPem ? { cert: this.conn.certPem, key: this.conn.keyPem } : {}),
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
        resolve({ status: res.statusCode ?? 0, body: stream });
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
    return `${this.conn.server}${path}${qs ? `?${qs}` : ""}`;
  }

  /** Sends a request and returns the answer's status and body stream (retrying once on a 401). */
  async #raw(method: string, path: string, opts: RequestOptions, signal: AbortSignal): Promise<Raw> {
    const body = opts.body === undefined ? undefined : JSON.stringify(opts.body);
    const ct = body !== undefined ? opts.contentType ?? "application/json" : undefined;
    const url = this.#url(path, opts.query);
    let r = await this.#send(method, url, this.#headers(ct), body, signal);
    if (r.status === 401 && this.conn.tokenFile) {
      await r.body.cancel();
      r = await this.#send(method, url, this.#headers(ct, true), body, signal);
    }
    return r;
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
      if (r.status >= 300) throw statusError(r.status, text, what);
      return JSON.parse(text) as T;
    } catch (err) {
      if (err instanceof KubeApiError) throw err;
      if (signal.aborted && !opts.signal?.aborted) {
        throw new Error(`${what}: no answer from ${this.conn.server} in ${limit} ms`);
      }
      throw new Error(`${what}: ${this.conn.server} unreachable: ${(err as Error).message}`, { cause: err });
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
   * Lists a collection, `limit` items a page (default 500, as client-go's reflector), and returns every
   * item with the list's resourceVersion.
   */
  async list<T = Record<string, unknown>>(
    path: string,
    opts: {
      labelSelector?: string;
      fieldSelector?: string;
      limit?: number;
      signal?: AbortSignal;
      timeoutMs?: number;
    } = {},
  ): Promise<{ items: T[]; resourceVersion: string }> {
    const items: T[] = [];
    let cont: string | undefined;
    let rv = "";
    do {
      const page = await this.get<
        { items?: T[]; metadata?: { resourceVersion?: string; continue?: string } }
      >(path, {
        query: {
          labelSelector: opts.labelSelector,
          fieldSelector: opts.fieldSelector,
          limit: String(opts.limit ?? 500),
          continue: cont,
        },
        ...(opts.signal ? { signal: opts.signal } : {}),
        ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}),
      });
      for (const i of page.items ?? []) items.push(i);
      if (!rv) rv = page.metadata?.resourceVersion ?? "";
      cont = page.metadata?.continue || undefined;
    } while (cont);
    return { items, resourceVersion: rv };
  }

  /**
   * Watches a collection from `resourceVersion` and calls `onEvent` for each event until the server
   * ends the stream (resolves), the stream breaks or stays silent longer than `idleMs` (rejects), an
   * ERROR event arrives (rejects with its {@linkcode KubeApiError}: 410 Expired means re-list), or
   * `signal` aborts (resolves).
   */
  async watch<T = Record<string, unknown>>(
    path: string,
    opts: {
      resourceVersion?: string;
      allowWatchBookmarks?: boolean;
      timeoutSeconds?: number;
      labelSelector?: string;
      fieldSelector?: string;
      idleMs?: number;
      signal: AbortSignal;
    },
    onEvent: (ev: WatchEvent<T>) => void,
  ): Promise<void> {
    const idle = new AbortController();
    const { signal, done } = linkedSignal([opts.signal, idle.signal]);
    const idleMs = opts.idleMs ?? 90_000;
    let timer = setTimeout(() => idle.abort(), Math.min(idleMs, this.#timeoutMs));
    const rearm = () => {
      clearTimeout(timer);
      timer = setTimeout(() => idle.abort(), idleMs);
    };
    try {
      const r = await this.#raw("GET", path, {
        query: {
          watch: "true",
          resourceVersion: opts.resourceVersion,
          allowWatchBookmarks: opts.allowWatchBookmarks ? "true" : undefined,
          timeoutSeconds: opts.timeoutSeconds ? String(opts.timeoutSeconds) : undefined,
          labelSelector: opts.labelSelector,
          fieldSelector: opts.fieldSelector,
        },
      }, signal);
      if (r.status >= 300) throw statusError(r.status, await new Response(r.body).text(), `watch ${path}`);
      rearm();
      const dec = new TextDecoder();
      let buf = "";
      // Cancel the reader itself on abort: seen here, an aborted fetch could leave a pending body read
      // of an open watch unresolved (the watch then never ended).
      const reader = r.body.getReader();
      const cancel = () => void reader.cancel().catch(() => {});
      signal.addEventListener("abort", cancel, { once: true });
      if (signal.aborted) cancel();
      for (;;) {
        const { value: chunk, done: ended } = await reader.read();
        if (ended) {
          if (signal.aborted && !opts.signal.aborted) throw new Error("aborted");
          break;
        }
        rearm();
        buf += dec.decode(chunk, { stream: true });
        let nl;
        while ((nl = buf.indexOf("\n")) >= 0) {
          const line = buf.slice(0, nl).trim();
          buf = buf.slice(nl + 1);
          if (!line) continue;
          const ev = JSON.parse(line) as { type: string; object: Record<string, unknown> };
          if (ev.type === "ERROR") {
            const s = ev.object as { code?: number; reason?: string; message?: string };
            throw new KubeApiError(s.code ?? 500, s.reason ?? "", s.message ?? "watch error");
          }
          onEvent(ev as WatchEvent<T>);
        }
      }
    } catch (err) {
      if (opts.signal.aborted) return;
      if (err instanceof KubeApiError) throw err;
      if (idle.signal.aborted) {
        throw new Error(`watch ${path}: nothing from ${this.conn.server} in ${idleMs} ms`);
      }
      throw new Error(`watch ${path}: ${(err as Error).message}`, { cause: err });
    } finally {
      clearTimeout(timer);
      done();
    }
  }

  /** Releases the connection pool. */
  close(): void {
    this.#client?.close();
  }
}
