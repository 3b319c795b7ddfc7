/**
 * CNI plugin mode, chosen by main.ts when `CNI_COMMAND` is set: reads the config on stdin and the CNI_*
 * environment, runs the command, writes the result (or the spec's error JSON) on stdout — libcni reads
 * the error code from stdout, so it must never go to stderr only. Log lines go to stderr and to the
 * config's `logFile`. The command runs in the agent when it serves CNI calls (a thin call over a local
 * socket, src/cni/agent_client.ts), else here (src/cni/execute.ts).
 *
 * Kept lean on purpose: kubelet execs the plugin for every pod, so this path imports no CLI framework,
 * no etcd client and no logging library (a line on stderr is all a plugin needs), and each command loads
 * only its own modules: VERSION loads none, ADD the netlink layer (raw rtnetlink, ffi/rtnl: two FFI
 * symbols) and libnftables only when it masquerades.
 *
 * @module
 */
import type { CniOutcome } from "./execute.ts";
import { versionAnswer } from "./types.ts";

const enc = new TextEncoder();

/** Reads all of stdin synchronously (web streams cost several ms to set up in a fresh process). */
function readStdin(): string {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const buf = new Uint8Array(64 * 1024);
    const n = Deno.stdin.readSync(buf);
    if (n === null || n === 0) break;
    chunks.push(buf.subarray(0, n));
    size += n;
  }
  const all = new Uint8Array(size);
  let off = 0;
  for (const c of chunks) {
    all.set(c, off);
    off += c.length;
  }
  return new TextDecoder().decode(all);
}

function writeAll(f: { writeSync(p: Uint8Array): number }, text: string): void {
  const data = enc.encode(text);
  try {
    for (let off = 0; off < data.length;) off += f.writeSync(data.subarray(off));
  } catch { /* closed */ }
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/**
 * Runs one CNI command from the process environment and stdin; resolves to the exit code. VERSION
 * loads nothing beyond this module (start-up is all it costs). Any other command goes to the running
 * agent when it listens on the config's socket and can serve it (src/cni/agent_protocol.ts), else runs
 * here, with the same code.
 */
export async function runCni(): Promise<number> {
  const t0 = performance.now();
  const stdin = readStdin();
  if (Deno.env.get("CNI_COMMAND") === "VERSION") {
    writeAll(Deno.stdout, versionAnswer(stdin));
    return 0;
  }
  const getEnv = (k: string) => Deno.env.get(k);
  let out: CniOutcome | undefined;
  const { agentSocketFor } = await import("./agent_protocol.ts");
  const socket = agentSocketFor(stdin);
  if (socket && exists(socket)) {
    const trace = Deno.env.get("WEFT_CNI_TRACE") === "1";
    const t1 = performance.now();
    const { callAgent } = await import("./agent_client.ts");
    const t2 = performance.now();
    out = await callAgent(socket, getEnv, stdin);
    if (out && trace) {
      const t3 = performance.now();
      out.log = out.log.replace(
        /\n$/,
        ` [client: until import ${(t1 - t0).toFixed(1)}, import ${(t2 - t1).toFixed(1)}, call ${
          (t3 - t2).toFixed(1)
        }; ` +
          `client process up ${t3.toFixed(1)} ms]\n`,
      );
    }
  }
  if (!out) {
    const { executeCni } = await import("./execute.ts");
    out = await executeCni(getEnv, stdin, t0);
  }
  writeAll(Deno.stdout, out.stdout);
  writeAll(Deno.stderr, out.log);
  return out.code;
}
