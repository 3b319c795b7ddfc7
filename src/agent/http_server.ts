/**
 * A small HTTP/1.1 server for the agent's health and metrics endpoints that cannot hurt the agent.
 *
 * Why not `Deno.serve`: measured with Deno 2.9.6, it has no cap on open connections and no header or
 * idle timeout (20 idle connections and 20 with half-sent headers were all still open after 35 s), and
 * when `accept()` fails with EMFILE its accept loop ends: `server.finished` rejects ("Http: Too many open
 * files") — unhandled, that ends the process; handled, the server is gone for good. With a 512 fd limit,
 * 700 idle connections did exactly that to the agent. `Deno.listen` reports the same EMFILE as a catchable
 * error on one `accept()` and keeps listening, so this server runs its own accept loop on it:
 *
 * - at most `maxConnections` open connections; a new one beyond that evicts the connection idle the
 *   longest (waiting for a request), or is closed at once when none is idle;
 * - `idleTimeoutMs` for the first byte of a request (after connect, or between keep-alive requests),
 *   `headerTimeoutMs` from the first byte to the end of the headers (slow-loris), `writeTimeoutMs` for
 *   the response; headers above `maxHeaderBytes` are refused (431);
 * - `accept()` errors (EMFILE, ENFILE, ENOBUFS…) back off 10 ms → 1 s and are counted; I/O errors of a
 *   connection (resets, broken pipes) close that connection and are counted; a handler that throws
 *   answers 500. Nothing here rejects into the agent.
 *
 * Only what the endpoints need: GET and HEAD without a body, keep-alive, `Content-Length` responses.
 *
 * @module
 */
import { Backoff, sleep } from "../async.ts";
import { log } from "../log.ts";

const logger = log("agent", "http");

/** Options of {@linkcode serveHttp}. */
export interface HttpServerOptions {
  /** Listen address. */
  hostname: string;
  /** Listen port (0: any free port; see {@linkcode HttpServer.port}). */
  port: number;
  /** Open connections at most (default 32). */
  maxConnections?: number;
  /** Wait this long for the first byte of a request, ms (default 30 000). */
  idleTimeoutMs?: number;
  /** Then this long for the rest of the headers, ms (default 5 000). */
  headerTimeoutMs?: number;
  /** Time to write a response, ms (default 5 000). */
  writeTimeoutMs?: number;
  /** Largest request head, bytes (default 8 192). */
  maxHeaderBytes?: number;
}

/** A parsed request (GET or HEAD). */
export interface HttpRequest {
  /** `GET` or `HEAD`. */
  method: string;
  /** The path without the query string, e.g. `/metrics`. */
  path: string;
  /** Headers, names lowercased. */
  headers: Map<string, string>;
}

/** What a handler answers. */
export interface HttpResponse {
  /** Status code. */
  status: number;
  /** Extra headers (Content-Length and Connection are set by the server). */
  headers?: Record<string, string>;
  /** The body. */
  body: string;
}

/** Why connections were closed by the server, and errors seen; read by the metrics. */
export interface HttpServerStats {
  /** Connections open now. */
  open: number;
  /** Connections accepted since start. */
  accepted: number;
  /** Requests answered. */
  requests: number;
  /** Connections closed by the server, by reason. */
  dropped: {
    /** Closed at once: the cap was reached and no connection was idle. */
    limit: number;
    /** Idle connections closed to make room for a new one. */
    evicted: number;
    /** No request within the idle timeout. */
    idleTimeout: number;
    /** Headers not complete within the header timeout. */
    headerTimeout: number;
    /** Response not written within the write timeout. */
    writeTimeout: number;
  };
  /** Errors, by kind. */
  errors: {
    /** `accept()` failed (EMFILE …). */
    accept: number;
    /** A connection's read or write failed (reset, broken pipe …). */
    io: number;
    /** Malformed or unsupported requests (answered 400/405/431/505). */
    badRequest: number;
    /** The handler threw (answered 500). */
    handler: number;
  };
}

/** A running server. */
export interface HttpServer {
  /** The bound port. */
  readonly port: number;
  /** Counters. */
  readonly stats: HttpServerStats;
  /** Stops accepting, closes every connection; resolves when the accept loop has ended. */
  shutdown(): Promise<void>;
}

const REASONS: Record<number, string> = {
  200: "OK",
  400: "Bad Request",
  404: "Not Found",
  405: "Method Not Allowed",
  431: "Request Header Fields Too Large",
  500: "Internal Server Error",
  503: "Service Unavailable",
  505: "HTTP Version Not Supported",
};

type Phase = "idle" | "head" | "busy";

interface Conn {
  conn: Deno.Conn;
  phase: Phase;
  /** When it became idle (for eviction: the longest idle goes first). */
  idleSince: number;
  /** Why the server closed it, when it did. */
  closedFor?: keyof HttpServerStats["dropped"];
  timer?: ReturnType<typeof setTimeout>;
}

const enc = new TextEncoder();
const dec = new TextDecoder("latin1");

function emptyStats(): HttpServerStats {
  return {
    open: 0,
    accepted: 0,
    requests: 0,
    dropped: { limit: 0, evicted: 0, idleTimeout: 0, headerTimeout: 0, writeTimeout: 0 },
    errors: { accept: 0, io: 0, badRequest: 0, handler: 0 },
  };
}

/** Index of `\r\n\r\n` in `b` (from `from`), or -1. */
function headEnd(b: Uint8Array, from: number): number {
  for (let i = Math.max(0, from - 3); i + 3 < b.length; i++) {
    if (b[i] === 13 && b[i + 1] === 10 && b[i + 2] === 13 && b[i + 3] === 10) return i;
  }
  return -1;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (!a.length) return b;
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** A request head that could not be served, answered with `status` and then the connection closed. */
class Refusal implements HttpResponse {
  /** Headers of the answer. */
  readonly headers: Record<string, string>;
  /** Answers `status` with `body` (and `headers`). */
  constructor(readonly status: number, readonly body: string, headers: Record<string, string> = {}) {
    this.headers = headers;
  }
}

/** Parses a request head (without the blank line); a {@linkcode Refusal} when it cannot be served. */
export function parseHead(text: string): { req: HttpRequest; keepAlive: boolean } | Refusal {
  const [requestLine = "", ...headerLines] = text.split("\r\n");
  const m = /^([A-Z]+) (\S+) HTTP\/1\.([01])$/.exec(requestLine);
  if (!m) return new Refusal(/^[A-Z]+ \S+ HTTP\/\d/.test(requestLine) ? 505 : 400, "bad request\n");
  const headers = new Map<string, string>();
  for (const line of headerLines) {
    const colon = line.indexOf(":");
    if (colon <= 0) return new Refusal(400, "bad header line\n");
    headers.set(line.slice(0, colon).trim().toLowerCase(), line.slice(colon + 1).trim());
  }
  const method = m[1]!;
  if (method !== "GET" && method !== "HEAD") {
    return new Refusal(405, "GET or HEAD only\n", { Allow: "GET, HEAD" });
  }
  let path = m[2]!;
  if (!path.startsWith("/")) {
    try {
      path = new URL(path).pathname; // absolute-form
    } catch {
      return new Refusal(400, "bad request target\n");
    }
  }
  const q = path.indexOf("?");
  if (q >= 0) path = path.slice(0, q);
  const conn = (headers.get("connection") ?? "").toLowerCase();
  // A body we would have to skip (or cannot frame) ends the connection after the answer.
  const hasBody = headers.has("transfer-encoding") || Number(headers.get("content-length") ?? "0") !== 0;
  const keepAlive = !hasBody && (m[3] === "1" ? conn !== "close" : conn === "keep-alive");
  return { req: { method, path, headers }, keepAlive };
}

type Handler = (req: HttpRequest) => HttpResponse | Promise<HttpResponse>;

/** The server behind {@linkcode serveHttp}. */
class Server implements HttpServer {
  readonly stats = emptyStats();
  readonly port: number;
  readonly #max: number;
  readonly #idleMs: number;
  readonly #headerMs: number;
  readonly #writeMs: number;
  readonly #maxHead: number;
  readonly #listener: Deno.TcpListener;
  readonly #conns = new Set<Conn>();
  #closing = false;
  #lastAcceptLog = 0;
  #acceptErrorsLogged = 0;
  readonly #loop: Promise<void>;

  constructor(opts: HttpServerOptions, private readonly handler: Handler) {
    this.#max = opts.maxConnections ?? 32;
    this.#idleMs = opts.idleTimeoutMs ?? 30_000;
    this.#headerMs = opts.headerTimeoutMs ?? 5_000;
    this.#writeMs = opts.writeTimeoutMs ?? 5_000;
    this.#maxHead = opts.maxHeaderBytes ?? 8192;
    this.#listener = Deno.listen({ hostname: opts.hostname, port: opts.port, transport: "tcp" });
    this.port = this.#listener.addr.port;
    this.#loop = this.#acceptLoop().catch((err) => {
      logger.error("health server accept loop ended: {error}", { error: (err as Error).message });
    });
  }

  #drop(c: Conn, why: keyof HttpServerStats["dropped"]): void {
    if (c.closedFor) return;
    c.closedFor = why;
    this.stats.dropped[why]++;
    try {
      c.conn.close();
    } catch { /* already closed */ }
  }

  #arm(c: Conn, ms: number, why: keyof HttpServerStats["dropped"]): void {
    clearTimeout(c.timer);
    c.timer = setTimeout(() => this.#drop(c, why), ms);
  }

  async #write(c: Conn, res: HttpResponse, head: boolean, keepAlive: boolean): Promise<void> {
    const body = enc.encode(res.body);
    const lines = [`HTTP/1.1 ${res.status} ${REASONS[res.status] ?? "Status"}`];
    for (const [k, v] of Object.entries(res.headers ?? {})) lines.push(`${k}: ${v}`);
    lines.push(`Content-Length: ${body.length}`, `Connection: ${keepAlive ? "keep-alive" : "close"}`, "", "");
    const bytes = head ? enc.encode(lines.join("\r\n")) : concat(enc.encode(lines.join("\r\n")), body);
    this.#arm(c, this.#writeMs, "writeTimeout");
    let off = 0;
    while (off < bytes.length) off += await c.conn.write(bytes.subarray(off));
    clearTimeout(c.timer);
  }

  /**
   * Reads one request head: its first byte within the idle timeout, the rest within the header timeout.
   * Returns the head's text and what followed it, undefined when the client closed, or a Refusal.
   */
  async #readHead(c: Conn, pending: Uint8Array): Promise<[string, Uint8Array] | undefined | Refusal> {
    const buf = new Uint8Array(4096);
    c.phase = pending.length ? "head" : "idle";
    c.idleSince = Date.now();
    this.#arm(
      c,
      pending.length ? this.#headerMs : this.#idleMs,
      pending.length ? "headerTimeout" : "idleTimeout",
    );
    let end = headEnd(pending, 0);
    while (end < 0) {
      if (pending.length > this.#maxHead) return new Refusal(431, "request head too large\n");
      const n = await c.conn.read(buf);
      if (n === null) return undefined; // the client closed
      if (c.phase === "idle") {
        c.phase = "head";
        this.#arm(c, this.#headerMs, "headerTimeout");
      }
      const from = pending.length;
      pending = concat(pending, buf.slice(0, n));
      end = headEnd(pending, from);
    }
    if (end > this.#maxHead) return new Refusal(431, "request head too large\n");
    clearTimeout(c.timer);
    c.phase = "busy";
    return [dec.decode(pending.subarray(0, end)), pending.slice(end + 4)];
  }

  async #answer(req: HttpRequest): Promise<HttpResponse> {
    try {
      return await this.handler(req);
    } catch (err) {
      this.stats.errors.handler++;
      logger.error("handler for {path} failed: {error}", { path: req.path, error: (err as Error).message });
      return { status: 500, body: "internal error\n" };
    }
  }

  /** Serves requests on one connection until it closes, times out or errs. Never throws. */
  async #session(c: Conn): Promise<void> {
    let pending: Uint8Array = new Uint8Array(0);
    try {
      for (;;) {
        const got = await this.#readHead(c, pending);
        if (got === undefined) return;
        const parsed = got instanceof Refusal ? got : parseHead(got[0]);
        if (parsed instanceof Refusal) {
          this.stats.errors.badRequest++;
          await this.#write(c, parsed, false, false);
          return;
        }
        pending = (got as [string, Uint8Array])[1];
        const res = await this.#answer(parsed.req);
        if (c.closedFor) return;
        await this.#write(c, res, parsed.req.method === "HEAD", parsed.keepAlive);
        this.stats.requests++;
        if (!parsed.keepAlive) return;
      }
    } catch (err) {
      // A close by a timer or an eviction makes the pending read/write fail: not an I/O error.
      if (!c.closedFor && !this.#closing) {
        this.stats.errors.io++;
        logger.debug("connection error: {error}", { error: (err as Error).message });
      }
    } finally {
      clearTimeout(c.timer);
      this.#conns.delete(c);
      this.stats.open = this.#conns.size;
      try {
        c.conn.close();
      } catch { /* closed already */ }
    }
  }

  /** Makes room for one more connection: evicts the longest-idle one; false when none is idle. */
  #makeRoom(): boolean {
    let oldest: Conn | undefined;
    for (const c of this.#conns) {
      if (c.phase === "idle" && !c.closedFor && (!oldest || c.idleSince < oldest.idleSince)) oldest = c;
    }
    if (!oldest) return false;
    this.#drop(oldest, "evicted");
    this.#conns.delete(oldest);
    return true;
  }

  /** After a failed accept: log (at most every 10 s), and how long to wait before the next. */
  #acceptFailed(err: Error, backoff: Backoff): number {
    this.stats.errors.accept++;
    const now = Date.now();
    if (now - this.#lastAcceptLog > 10_000) {
      logger.warn("accept failed {n} times ({error}); backing off, the agent is unaffected", {
        n: this.stats.errors.accept - this.#acceptErrorsLogged,
        error: err.message,
      });
      this.#lastAcceptLog = now;
      this.#acceptErrorsLogged = this.stats.errors.accept;
    }
    // Out of descriptors: an idle connection is the cheapest one to give back, and then there is no
    // need to wait long (the descriptor is free once its pending read has been dropped).
    if (/too many open files/i.test(err.message) && this.#makeRoom()) return 0;
    return backoff.next();
  }

  async #acceptLoop(): Promise<void> {
    const backoff = new Backoff(10, 1000, { jitter: "none" });
    while (!this.#closing) {
      let conn: Deno.Conn;
      try {
        conn = await this.#listener.accept();
      } catch (err) {
        if (this.#closing || err instanceof Deno.errors.BadResource) return; // the listener was closed
        const wait = this.#acceptFailed(err as Error, backoff);
        await sleep(wait);
        continue;
      }
      backoff.reset();
      this.stats.accepted++;
      if (this.#conns.size >= this.#max && !this.#makeRoom()) {
        this.stats.dropped.limit++;
        try {
          conn.close();
        } catch { /* gone */ }
        continue;
      }
      const c: Conn = { conn, phase: "idle", idleSince: Date.now() };
      this.#conns.add(c);
      this.stats.open = this.#conns.size;
      this.#session(c);
    }
  }

  async shutdown(): Promise<void> {
    if (!this.#closing) {
      this.#closing = true;
      try {
        this.#listener.close();
      } catch { /* closed */ }
      for (const c of this.#conns) {
        clearTimeout(c.timer);
        try {
          c.conn.close();
        } catch { /* closed */ }
      }
      this.#conns.clear();
      this.stats.open = 0;
    }
    await this.#loop;
  }
}

/** Starts the server. It runs until {@linkcode HttpServer.shutdown}; nothing it does throws to the caller. */
export function serveHttp(opts: HttpServerOptions, handler: Handler): HttpServer {
  return new Server(opts, handler);
}
