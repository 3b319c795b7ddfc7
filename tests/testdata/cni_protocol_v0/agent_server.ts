/**
 * The agent side of the thin CNI call (see agent_protocol.ts): a unix socket (mode 0600) on which the
 * running agent executes CNI commands for the plugin process, with the same code the plugin would run
 * (src/cni/execute.ts) — warm, its libraries open — one call at a time.
 *
 * It must never hurt the agent: every connection's errors are caught and counted, a request is read
 * with a size cap and a deadline, and a call it cannot serve correctly (the plugin in another network
 * namespace, or seeing other files behind the call's paths) is sent back to be run by the plugin itself.
 *
 * `deno run -A src/cni/agent_server.ts [socket]` serves on its own (tests, benchmarks); the agent starts
 * it with {@linkcode serveCni}.
 *
 * @module
 */
import {
  type AgentReply,
  type AgentRequest,
  callPaths,
  DEFAULT_AGENT_SOCKET,
  MAX_REQUEST_BYTES,
  nsId,
  pathIdentity,
} from "./agent_protocol.ts";
import { executeCni } from "./execute.ts";

/** How long a connected client may take to send its request. */
const REQUEST_DEADLINE_MS = 5000;

/** A running CNI server. */
export interface CniServer extends AsyncDisposable {
  /** The socket path. */
  readonly path: string;
  /** Calls served, sent back to the plugin, and failed connections. */
  readonly counts: { served: number; fallback: number; errors: number };
  /** Stops listening, waits for the call in progress and removes the socket. */
  close(): Promise<void>;
}

async function readRequest(conn: Deno.Conn): Promise<AgentRequest> {
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
  const req = JSON.parse(new TextDecoder().decode(all)) as AgentRequest;
  if (
    typeof req?.stdin !== "string" || typeof req.env !== "object" || req.env === null ||
    !Number.isInteger(req.pid) || req.pid <= 0
  ) {
    throw new Error("malformed request");
  }
  return req;
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

/** Starts serving CNI calls on `path`. */
export function serveCni(path: string = DEFAULT_AGENT_SOCKET): CniServer {
  clearStale(path);
  const listener = Deno.listen({ transport: "unix", path });
  Deno.chmodSync(path, 0o600);
  const ours = Deno.lstatSync(path).ino;
  const ownNet = nsId("/proc/thread-self/ns/net");
  /** Why this agent cannot serve `req` (it would see other files or another network), if so. */
  const cannotServe = (req: AgentRequest): string | undefined => {
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
  };
  const counts = { served: 0, fallback: 0, errors: 0 };
  // One call at a time: commands are written for one process each (flock on the IPAM store, setns of
  // the JS thread), and a call's work is a few milliseconds.
  let queue: Promise<unknown> = Promise.resolve();
  const handle = async (conn: Deno.Conn) => {
    try {
      const req = await readRequest(conn);
      let reply: AgentReply;
      const why = cannotServe(req);
      if (why) {
        counts.fallback++;
        reply = { fallback: why };
      } else {
        const t0 = performance.now();
        const run = queue.then(() => executeCni((k) => req.env[k], req.stdin, t0));
        queue = run.catch(() => {});
        reply = await run;
        counts.served++;
      }
      const data = new TextEncoder().encode(JSON.stringify(reply) + "\n");
      for (let off = 0; off < data.length;) off += await conn.write(data.subarray(off));
    } catch {
      counts.errors++;
    } finally {
      try {
        conn.close();
      } catch { /* closed by the deadline */ }
    }
  };
  const accepting = (async () => {
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
  })();
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
