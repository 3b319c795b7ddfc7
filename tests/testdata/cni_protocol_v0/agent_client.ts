/**
 * The plugin side of the thin call into the agent (see agent_protocol.ts): connect, send one request,
 * read one reply. `undefined` means "run the command yourself": no agent listening, or one that cannot
 * serve this call. Once the request is sent the plugin never runs the command as well — two ADDs of one
 * container would race — so an agent that dies mid-call is answered with code 11, try again later.
 *
 * @module
 */
import { type AgentReply, type AgentRequest, forwardedEnv } from "./agent_protocol.ts";
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

/** Runs the call in the agent at `path`; `undefined` when the plugin must run it itself. */
export async function callAgent(
  path: string,
  getEnv: (k: string) => string | undefined,
  stdin: string,
): Promise<CniOutcome | undefined> {
  let conn: Deno.Conn;
  try {
    conn = await Deno.connect({ transport: "unix", path });
  } catch {
    return undefined; // no agent (a stale socket file: connection refused)
  }
  try {
    const req: AgentRequest = { env: forwardedEnv(getEnv), stdin, pid: Deno.pid };
    const request = JSON.stringify(req);
    try {
      const data = enc.encode(request + "\n");
      for (let off = 0; off < data.length;) off += await conn.write(data.subarray(off));
    } catch {
      return undefined; // not delivered: the agent went away before reading it
    }
    const line = await readLine(conn).catch(() => "");
    let reply: AgentReply;
    try {
      reply = JSON.parse(line);
    } catch {
      const cmd = getEnv("CNI_COMMAND") ?? "?";
      const msg = `${cmd}: the weft agent (${path}) closed the call without an answer; try again later`;
      return {
        code: 1,
        stdout: JSON.stringify({ cniVersion: requestedVersion(stdin) ?? "1.1.0", code: 11, msg }) + "\n",
        log: `${new Date().toISOString()} weft-cni[${Deno.pid}] ${msg}\n`,
      };
    }
    return "fallback" in reply ? undefined : reply;
  } finally {
    try {
      conn.close();
    } catch { /* already closed */ }
  }
}
