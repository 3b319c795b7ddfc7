/**
 * CNI plugin mode, chosen by main.ts when `CNI_COMMAND` is set: reads the config on stdin and the CNI_*
 * environment, runs the command, writes the result (or the spec's error JSON) on stdout — libcni reads
 * the error code from stdout, so it must never go to stderr only. Log lines go to stderr and to the
 * config's `logFile`.
 *
 * Kept lean on purpose: kubelet execs the plugin for every pod, so this path imports no CLI framework,
 * no etcd client and no logging library (a line on stderr is all a plugin needs); the FFI libraries are
 * opened on first use, so VERSION never loads them.
 *
 * @module
 */
import { cmdAdd } from "./add.ts";
import { cmdCheck } from "./check.ts";
import { type CniConfig, parseCniConfig } from "./config.ts";
import { cmdDel } from "./del.ts";
import { type CniEnv, readCniEnv } from "./env.ts";
import { cmdGc, cmdStatus } from "./gc.ts";
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
    const v = (JSON.parse(stdin) as { cniVersion?: unknown }).cniVersion;
    return typeof v === "string" && (SUPPORTED_VERSIONS as readonly string[]).includes(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

function needVersion(cfg: CniConfig, command: string, min: string): void {
  const order = SUPPORTED_VERSIONS as readonly string[];
  if (order.indexOf(cfg.cniVersion) < order.indexOf(min)) {
    throw new CniError(
      CNI_ERR.INCOMPATIBLE_VERSION,
      `config version ${cfg.cniVersion} does not allow ${command} (needs ${min} or later)`,
    );
  }
}

function run(env: CniEnv, stdin: string, onConfig: (c: CniConfig) => void): string {
  if (env.command === "VERSION") {
    print({ cniVersion: requestedVersion(stdin) ?? "1.1.0", supportedVersions: SUPPORTED_VERSIONS });
    return "VERSION";
  }
  const cfg = parseCniConfig(stdin);
  onConfig(cfg);
  const who = `${env.containerId}/${env.ifname}`;
  switch (env.command) {
    case "ADD": {
      const result = cmdAdd(cfg, env);
      print(resultFor(cfg.cniVersion, result));
      return `ADD ${who}: ${result.ips.map((i) => i.address).join(",")}`;
    }
    case "DEL": {
      // Success prints nothing: spec 1.x wants no output, older runtimes ignore it.
      const r = cmdDel(cfg, env);
      return `DEL ${who}: freed ${r.freed.join(",") || "nothing"}${r.veth ? ", veth removed" : ""}`;
    }
    case "CHECK":
      needVersion(cfg, "CHECK", "0.4.0");
      cmdCheck(cfg, env);
      return `CHECK ${who}: ok`;
    case "GC": {
      needVersion(cfg, "GC", "1.1.0");
      const r = cmdGc(cfg);
      return `GC: freed ${r.freed.length} address(es) ${
        r.freed.join(",")
      }, ${r.veths.length} veth(s), ${r.confs} saved config(s)`;
    }
    case "STATUS":
      needVersion(cfg, "STATUS", "1.1.0");
      cmdStatus(cfg);
      return "STATUS: ready";
  }
}

/**
 * Runs one CNI command from the process environment and stdin; resolves to the exit code. (The work is
 * synchronous — netlink through FFI, file locks, small files — the promise is main.ts's interface.)
 */
export function runCni(): Promise<number> {
  return Promise.resolve(runCniSync());
}

function runCniSync(): number {
  const t0 = performance.now();
  let cfg: CniConfig | undefined;
  let stdin = "";
  let command = Deno.env.get("CNI_COMMAND") ?? "?";
  try {
    mark("start");
    stdin = readStdin();
    mark("stdin");
    const env = readCniEnv();
    command = env.command;
    const what = run(env, stdin, (c) => cfg = c);
    if (command !== "VERSION") {
      logLine(cfg, `${what} in ${(performance.now() - t0).toFixed(1)} ms${phases()}`);
    }
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
