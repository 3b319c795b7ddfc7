/**
 * The agent side of the thin CNI call (see agent_protocol.ts): a unix socket (mode 0600) on which the
 * running agent executes CNI commands for the plugin process, with the same code the plugin would run
 * (src/cni/execute.ts) — warm, its libraries open — one call at a time.
 *
 * It must never hurt the agent: every connection's errors are caught and counted, a request is read
 * with a size cap and a deadline, and a call it cannot serve correctly (the plugin in another network
 * namespace, or seeing other files behind the call's paths) is sent back to be run by the plugin itself.
 *
 * Other request kinds (agent_protocol.ts "Versions") are served by the handlers the agent registers
 * ({@linkcode CniServerOptions.kinds}); any other kind is answered "unsupported", which every client of
 * version 1 or later understands. Every kind runs in the one queue, one request at a time.
 *
 * `deno run -A src/cni/agent_server.ts [socket]` serves on its own (tests, benchmarks); the agent starts
 * it with {@linkcode serveCni}.
 *
 * @module
 */
import {
  type AgentReply,
  type AgentRequest,
  type AgentRequestHead,
  callPaths,
  CNI_CALL_KIND,
  DEFAULT_AGENT_SOCKET,
  MAX_REQUEST_BYTES,
  nsId,
  pathIdentity,
  PROTOCOL_VERSION,
  unsupportedReply,
} from "./agent_protocol.ts";
import { executeCni } from "./execute.ts";

/** How long a connected client may take to send its request. */
const REQUEST_DEADLINE_MS = 5000;

/** A running CNI server. */
export interface CniServer extends AsyncDisposable {
  /** The socket path. */
  readonly path: string;
  /**
   * Calls served, sent back to the plugin, requests of kinds not served, failed connections, and the
   * requests by the sender's protocol version (`v0`, `v1`, …: during an upgrade, which plugins call).
   */
  readonly counts: {
    served: number;
    fallback: number;
    unsupported: number;
    errors: number;
    byVersion: Record<string, number>;
  };
  /** Stops listening, waits for the call in progress and removes the socket. */
  close(): Promise<void>;
}

/**
 * A handler for a request kind other than the CNI call: gets the parsed request, returns the reply's
 * fields (`v` is added). Throwing closes the connection without an answer (counted as an error).
 */
export type KindHandler = (
  req: AgentRequestHead & Record<string, unknown>,
) => Promise<Record<string, unknown>>;

/** Options of {@linkcode serveCni}. */
export interface CniServerOptions {
  /** Handlers of further request kinds, by kind (the CNI call is always served). */
  kinds?: Record<string, KindHandler>;
}

async function readRequest(conn: Deno.Conn): Promise<AgentRequestHead & Record<string, unknown>> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  const buf = new Uint8Array(64 << 10);
  const deadline = setTimeout(() => conn.close(), REQUEST_DEADLINE_MS);
  try {
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      const part = buf.slice(0, n);
      chunks.push(part);
      size += n;
      if (size > MAX_REQUEST_BYTES) throw new Error(`request larger than ${MAX_REQUEST_BYTES} bytes`);
      if (part.includes(10)) break;
    }
  } finally {
    clearTimeout(deadline);
  }
  const all = new Uint8Array(size);
  let off = 0;
  for (const c of chunks) all.set(c, (off += c.length) - c.length);
  const req = JSON.parse(new TextDecoder().decode(all));
  if (
    !req || typeof req !== "object" || Array.isArray(req) ||
    (req.kind !== undefined && typeof req.kind !== "string") ||
    !Number.isInteger(req.pid) || req.pid <= 0
  ) {
    throw new Error("malformed request");
  }
  return req;
}

/** A CNI call's request, checked (a version 0 agent checked the same). */
function cniRequest(req: AgentRequestHead & Record<string, unknown>): AgentRequest {
  if (typeof req.stdin !== "string" || typeof req.env !== "object" || req.env === null) {
    throw new Error("malformed request");
  }
  return req as unknown as AgentRequest;
}

/** Removes a stale socket left by a previous run; refuses to remove anything that is not a socket. */
function clearStale(path: string): void {
  let st: Deno.FileInfo;
  try {
    st = Deno.lstatSync(path);
  } catch {
    return;
  }
  if (!st.isSocket) throw new Error(`${path} exists and is not a socket: not removing it`);
  Deno.removeSync(path);
}

/** Why an agent in network namespace `ownNet` cannot serve `req` (it would see other files or another network). */
function cannotServe(req: AgentRequest, ownNet: string): string | undefined {
  const root = `/proc/${req.pid}/root`;
  try {
    if (nsId(`/proc/${req.pid}/ns/net`) !== ownNet) {
      return "the plugin runs in another network namespace than the agent";
    }
  } catch {
    return `cannot see the plugin (pid ${req.pid})`;
  }
  for (const p of callPaths(req.stdin, req.env.CNI_NETNS)) {
    if (pathIdentity(p) !== pathIdentity(p, root)) {
      return `the agent sees another file at ${p} than the plugin`;
    }
  }
  return undefined;
}

/** Accepts connections until the listener is closed; errors of accept() are counted, never fatal. */
async function acceptLoop(
  listener: Deno.Listener,
  handle: (conn: Deno.Conn) => Promise<void>,
  counts: { errors: number },
): Promise<void> {
  for (;;) {
    let conn: Deno.Conn;
    try {
      conn = await listener.accept();
    } catch (err) {
      if (err instanceof Deno.errors.BadResource) return; // closed
      counts.errors++; // EMFILE and the like: keep serving
      await new Promise((r) => setTimeout(r, 50));
      continue;
    }
    handle(conn);
  }
}

/** Writes the reply line and closes the connection; a failure is counted. */
async function respond(
  conn: Deno.Conn,
  reply: () => Promise<object>,
  counts: { errors: number },
): Promise<void> {
  try {
    const data = new TextEncoder().encode(JSON.stringify({ ...await reply(), v: PROTOCOL_VERSION }) + "\n");
    for (let off = 0; off < data.length;) off += await conn.write(data.subarray(off));
  } catch {
    counts.errors++;
  } finally {
    try {
      conn.close();
    } catch { /* closed by the deadline */ }
  }
}

/** Starts serving CNI calls (and the kinds in `opts.kinds`) on `path`. */
export function serveCni(path: string = DEFAULT_AGENT_SOCKET, opts: CniServerOptions = {}): CniServer {
  const handlers = opts.kinds ?? {};
  const kinds = [CNI_CALL_KIND, ...Object.keys(handlers).filter((k) => k !== CNI_CALL_KIND)];
  clearStale(path);
  const listener = Deno.listen({ transport: "unix", path });
  Deno.chmodSync(path, 0o600);
  const ours = Deno.lstatSync(path).ino;
  const ownNet = nsId("/proc/thread-self/ns/net");
  const counts = {
    served: 0,
    fallback: 0,
    unsupported: 0,
    errors: 0,
    byVersion: {} as Record<string, number>,
  };
  // One call at a time: commands are written for one process each (flock on the IPAM store, setns of
  // the JS thread), and a call's work is a few milliseconds.
  let queue: Promise<unknown> = Promise.resolve();
  const inQueue = <T>(work: () => Promise<T>): Promise<T> => {
    const run = queue.then(work);
    queue = run.catch(() => {});
    return run;
  };
  const cniCall = async (req: AgentRequest): Promise<AgentReply> => {
    const why = cannotServe(req, ownNet);
    if (why) {
      counts.fallback++;
      return { fallback: why };
    }
    const t0 = performance.now();
    const outcome = await inQueue(() => executeCni((k) => req.env[k], req.stdin, t0));
    counts.served++;
    return outcome;
  };
  const answer = async (req: AgentRequestHead & Record<string, unknown>): Promise<object> => {
    const v = `v${typeof req.v === "number" ? req.v : 0}`;
    counts.byVersion[v] = (counts.byVersion[v] ?? 0) + 1;
    const kind = req.kind ?? CNI_CALL_KIND;
    if (kind === CNI_CALL_KIND) return await cniCall(cniRequest(req));
    const handler = Object.hasOwn(handlers, kind) ? handlers[kind] : undefined;
    if (!handler) {
      counts.unsupported++;
      return unsupportedReply(kind, kinds);
    }
    return await inQueue(() => handler(req));
  };
  const accepting = acceptLoop(
    listener,
    (conn) => respond(conn, async () => answer(await readRequest(conn)), counts),
    counts,
  );
  const close = async () => {
    try {
      listener.close();
    } catch { /* closed */ }
    await accepting;
    await queue;
    try {
      // Only our own socket: another agent may have taken the path over since.
      if (Deno.lstatSync(path).ino === ours) Deno.removeSync(path);
    } catch { /* gone */ }
  };
  return { path, counts, close, [Symbol.asyncDispose]: close };
}

if (import.meta.main) {
  const server = serveCni(Deno.args[0] ?? DEFAULT_AGENT_SOCKET);
  const stop = () => server.close().then(() => Deno.exit(0));
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
  console.error(`weft CNI server on ${server.path}`);
}
