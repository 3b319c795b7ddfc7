/**
 * CNI plugin mode, chosen by main.ts when `CNI_COMMAND` is set: reads the config on stdin and the CNI_*
 * environment, runs the command, writes the result (or the spec's error JSON) on stdout — libcni reads
 * the error code from stdout, so it must never go to stderr only. Log lines go to stderr and to the
 * config's `logFile`.
 *
 * Kept lean on purpose: kubelet execs the plugin for every pod, so this path imports no CLI framework,
 * no etcd client and no logging library (a line on stderr is all a plugin needs), and each command loads
 * only its own modules: VERSION loads none, ADD the netlink layer (raw rtnetlink, ffi/rtnl: two FFI
 * symbols) and libnftables only when it masquerades.
 *
 * @module
 */
import type { CniConfig } from "./config.ts";
import type { CniEnv } from "./env.ts";
import type { CniRequest } from "./request.ts";
import { mark, phases } from "./trace.ts";
import { CNI_ERR, CniError, resultFor, SUPPORTED_VERSIONS } from "./types.ts";

const enc = new TextEncoder();

function logLine(cfg: CniConfig | undefined, msg: string): void {
  const line = `${new Date().toISOString()} weft-cni[${Deno.pid}] ${msg}\n`;
  try {
    Deno.stderr.writeSync(enc.encode(line));
  } catch { /* stderr closed */ }
  if (cfg?.logFile) {
    try {
      Deno.writeTextFileSync(cfg.logFile, line, { append: true, create: true });
    } catch { /* logging must never fail the operation */ }
  }
}

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

function print(obj: unknown): void {
  const data = enc.encode(JSON.stringify(obj) + "\n");
  for (let off = 0; off < data.length;) off += Deno.stdout.writeSync(data.subarray(off));
}

/** The cniVersion a config asks for, best effort (to answer errors in the caller's version). */
function requestedVersion(stdin: string): string | undefined {
  try {
    const v = (JSON.parse(stdin) as { cniVersion?: unknown })?.cniVersion;
    return typeof v === "string" && (SUPPORTED_VERSIONS as readonly string[]).includes(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/** Runs the command of a checked request; each command's module is loaded only for that command. */
async function run({ env, cfg, prev }: CniRequest): Promise<string> {
  const who = `${env.containerId}/${env.ifname}`;
  switch (env.command) {
    case "ADD": {
      const { cmdAdd } = await import("./add.ts");
      mark("load");
      const result = await cmdAdd(cfg, env, prev);
      print(resultFor(cfg.cniVersion, result));
      return `ADD ${who}: ${result.ips.map((i) => i.address).join(",")}`;
    }
    case "DEL": {
      // Success prints nothing: spec 1.x wants no output, older runtimes ignore it.
      const { cmdDel } = await import("./del.ts");
      mark("load");
      const r = await cmdDel(cfg, env);
      return `DEL ${who}: freed ${r.freed.join(",") || "nothing"}${r.veth ? ", veth removed" : ""}`;
    }
    case "CHECK": {
      const { cmdCheck } = await import("./check.ts");
      mark("load");
      cmdCheck(cfg, env, prev);
      return `CHECK ${who}: ok`;
    }
    case "GC": {
      const { cmdGc } = await import("./gc.ts");
      mark("load");
      const r = await cmdGc(cfg);
      return `GC: freed ${r.freed.length} address(es) ${r.freed.join(",")}, ${r.veths.length} veth(s), ` +
        `${r.confs} saved config(s)${r.kept.length ? `; kept ${r.kept.join(",")} (veth not removable)` : ""}`;
    }
    default: {
      const { cmdStatus } = await import("./gc.ts");
      cmdStatus(cfg);
      return "STATUS: ready";
    }
  }
}

/**
 * Runs one CNI command from the process environment and stdin; resolves to the exit code. VERSION
 * loads nothing beyond this module (start-up is all it costs).
 */
export async function runCni(): Promise<number> {
  const t0 = performance.now();
  let cfg: CniConfig | undefined;
  let stdin = "";
  let command = Deno.env.get("CNI_COMMAND") ?? "?";
  try {
    mark("start");
    stdin = readStdin();
    mark("stdin");
    if (command === "VERSION") {
      print({ cniVersion: requestedVersion(stdin) ?? "1.1.0", supportedVersions: SUPPORTED_VERSIONS });
      return 0;
    }
    const { parseEnv, parseRequest } = await import("./request.ts");
    const env: CniEnv = parseEnv((k) => Deno.env.get(k));
    command = env.command;
    const req = parseRequest(env, stdin);
    cfg = req.cfg;
    mark("parse");
    const what = await run(req);
    logLine(cfg, `${what} in ${(performance.now() - t0).toFixed(1)} ms${phases()}`);
    return 0;
  } catch (err) {
    const e = err instanceof CniError
      ? err
      : new CniError(CNI_ERR.INTERNAL, `${command} failed: ${(err as Error)?.message ?? String(err)}`);
    logLine(cfg, `${command} failed with code ${e.code}: ${e.message}`);
    print(e.toJSON(cfg?.cniVersion ?? requestedVersion(stdin) ?? "1.1.0"));
    return 1;
  }
}
