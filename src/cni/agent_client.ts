/**
 * The plugin side of the thin call into the agent (see agent_protocol.ts): connect, send one request,
 * read one reply. {@linkcode askAgent} does that for any request kind; {@linkcode callAgent} is the CNI
 * call on top of it, where `undefined` means "run the command yourself": no agent listening, or one that
 * cannot serve this call (including an agent that does not know the kind). Once the request is sent the
 * plugin never runs the command as well — two ADDs of one container would race — so an agent that dies
 * mid-call is answered with code 11, try again later.
 *
 * @module
 */
import {
  type AgentReply,
  type AgentRequest,
  CNI_CALL_KIND,
  forwardedEnv,
  isUnsupported,
  PROTOCOL_VERSION,
} from "./agent_protocol.ts";
import type { CniOutcome } from "./execute.ts";
import { requestedVersion } from "./types.ts";

const enc = new TextEncoder();

async function readLine(conn: Deno.Conn): Promise<string> {
  const chunks: Uint8Array[] = [];
  const buf = new Uint8Array(64 << 10);
  for (;;) {
    const n = await conn.read(buf);
    if (n === null) break;
    const part = buf.slice(0, n);
    chunks.push(part);
    if (part.includes(10)) break;
  }
  let text = "";
  const dec = new TextDecoder();
  for (const c of chunks) text += dec.decode(c, { stream: true });
  return text + dec.decode();
}

/** What asking the agent gave. */
export type AgentAnswer =
  /** No agent listening (no socket, a stale one), or the request was not delivered: nothing happened. */
  | { status: "unreachable" }
  /**
   * The request was sent and the connection closed without an answer: the agent died mid-call, or (for
   * a kind other than the CNI call) it is a version 0 agent, which cannot parse such a request.
   */
  | { status: "lost" }
  /** The agent does not serve this kind (`v` is its protocol version). */
  | { status: "unsupported"; why: string; v: number }
  /** The agent's reply (`v`: its protocol version, 0 when it sent none). */
  | { status: "answered"; reply: Record<string, unknown>; v: number };

/**
 * Sends one request of `kind` (its own fields in `body`) to the agent at `path` and reads its reply.
 * A request of another kind than the CNI call must not carry `env` or `stdin` (agent_protocol.ts).
 */
export async function askAgent(
  path: string,
  kind: string,
  body: object,
): Promise<AgentAnswer> {
  if (kind !== CNI_CALL_KIND && ("env" in body || "stdin" in body)) {
    throw new Error(`a ${kind} request must not carry env or stdin (a version 0 agent would run it as CNI)`);
  }
  let conn: Deno.Conn;
  try {
    conn = await Deno.connect({ transport: "unix", path });
  } catch {
    return { status: "unreachable" }; // no agent (a stale socket file: connection refused)
  }
  try {
    const request = JSON.stringify({ v: PROTOCOL_VERSION, kind, pid: Deno.pid, ...body });
    try {
      const data = enc.encode(request + "\n");
      for (let off = 0; off < data.length;) off += await conn.write(data.subarray(off));
    } catch {
      return { status: "unreachable" }; // not delivered: the agent went away before reading it
    }
    const line = await readLine(conn).catch(() => "");
    let reply: unknown;
    try {
      reply = JSON.parse(line);
    } catch {
      return { status: "lost" };
    }
    if (!reply || typeof reply !== "object") return { status: "lost" };
    const v = typeof (reply as { v?: unknown }).v === "number" ? (reply as { v: number }).v : 0;
    if (isUnsupported(reply)) return { status: "unsupported", why: reply.unsupported, v };
    return { status: "answered", reply: reply as Record<string, unknown>, v };
  } finally {
    try {
      conn.close();
    } catch { /* already closed */ }
  }
}

/** Runs the CNI call in the agent at `path`; `undefined` when the plugin must run it itself. */
export async function callAgent(
  path: string,
  getEnv: (k: string) => string | undefined,
  stdin: string,
): Promise<CniOutcome | undefined> {
  const body: Omit<AgentRequest, "pid"> = { env: forwardedEnv(getEnv), stdin };
  const answer = await askAgent(path, CNI_CALL_KIND, body);
  if (answer.status === "unreachable" || answer.status === "unsupported") return undefined;
  if (answer.status === "answered") {
    const reply = answer.reply as AgentReply;
    if ("fallback" in reply) return undefined;
    if ("code" in reply && typeof reply.code === "number") {
      return { code: reply.code, stdout: String(reply.stdout ?? ""), log: String(reply.log ?? "") };
    }
  }
  // Sent, and no usable answer: the agent may have done the work, so the plugin must not do it again.
  const cmd = getEnv("CNI_COMMAND") ?? "?";
  const msg = `${cmd}: the weft agent (${path}) closed the call without an answer; try again later`;
  return {
    code: 1,
    stdout: JSON.stringify({ cniVersion: requestedVersion(stdin) ?? "1.1.0", code: 11, msg }) + "\n",
    log: `${new Date().toISOString()} weft-cni[${Deno.pid}] ${msg}\n`,
  };
}
