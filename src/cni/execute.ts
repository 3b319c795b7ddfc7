/**
 * One CNI call, from its environment and stdin to what the runtime gets back: the exit code, stdout (the
 * result, or the spec's error JSON — libcni reads the code from stdout, never stderr) and the log line.
 * The same function serves the plugin process (src/cni/main.ts) and the agent's CNI server
 * (src/cni/agent_server.ts), so both give the same answers.
 *
 * @module
 */
import type { CniConfig } from "./config.ts";
import { type CniRequest, parseEnv, parseRequest } from "./request.ts";
import { mark, phases, traceStart } from "./trace.ts";
import { CNI_ERR, CniError, requestedVersion, resultFor } from "./types.ts";
import type { CniOutcome } from "./agent_protocol.ts";

function logLine(cfg: CniConfig | undefined, msg: string): string {
  const line = `${new Date().toISOString()} weft-cni[${Deno.pid}] ${msg}\n`;
  if (cfg?.logFile) {
    try {
      Deno.writeTextFileSync(cfg.logFile, line, { append: true, create: true });
    } catch { /* logging must never fail the operation */ }
  }
  return line;
}

/** Runs the command of a checked request; each command's module is loaded only for that command. */
async function run({ env, cfg, prev }: CniRequest): Promise<{ what: string; stdout: string }> {
  const who = `${env.containerId}/${env.ifname}`;
  switch (env.command) {
    case "ADD": {
      const { cmdAdd } = await import("./add.ts");
      mark("load");
      const result = await cmdAdd(cfg, env, prev);
      return {
        what: `ADD ${who}: ${result.ips.map((i) => i.address).join(",")}`,
        stdout: JSON.stringify(resultFor(cfg.cniVersion, result)) + "\n",
      };
    }
    case "DEL": {
      // Success prints nothing: spec 1.x wants no output, older runtimes ignore it.
      const { cmdDel } = await import("./del.ts");
      mark("load");
      const r = await cmdDel(cfg, env);
      return {
        what: `DEL ${who}: freed ${r.freed.join(",") || "nothing"}${r.veth ? ", veth removed" : ""}`,
        stdout: "",
      };
    }
    case "CHECK": {
      const { cmdCheck } = await import("./check.ts");
      mark("load");
      cmdCheck(cfg, env, prev);
      return { what: `CHECK ${who}: ok`, stdout: "" };
    }
    case "GC": {
      const { cmdGc } = await import("./gc.ts");
      mark("load");
      const r = await cmdGc(cfg);
      const kept = r.kept.length ? `; kept ${r.kept.join(",")} (veth not removable)` : "";
      return {
        what: `GC: freed ${r.freed.length} address(es) ${r.freed.join(",")}, ${r.veths.length} veth(s), ` +
          `${r.confs} saved config(s)${kept}`,
        stdout: "",
      };
    }
    default: {
      const { cmdStatus } = await import("./gc.ts");
      cmdStatus(cfg);
      return { what: "STATUS: ready", stdout: "" };
    }
  }
}

/**
 * Runs one CNI call (any command but VERSION, which callers answer with `versionAnswer`) with
 * the environment `getEnv` and `stdin`; never throws. `t0` is when the call began, for the log line.
 */
export async function executeCni(
  getEnv: (k: string) => string | undefined,
  stdin: string,
  t0 = performance.now(),
): Promise<CniOutcome> {
  let cfg: CniConfig | undefined;
  let command = getEnv("CNI_COMMAND") ?? "?";
  traceStart(getEnv("WEFT_CNI_TRACE") === "1");
  try {
    const env = parseEnv(getEnv);
    command = env.command;
    const req = parseRequest(env, stdin);
    cfg = req.cfg;
    mark("parse");
    const { what, stdout } = await run(req);
    return {
      code: 0,
      stdout,
      log: logLine(cfg, `${what} in ${(performance.now() - t0).toFixed(1)} ms${phases()}`),
    };
  } catch (err) {
    const e = err instanceof CniError
      ? err
      : new CniError(CNI_ERR.INTERNAL, `${command} failed: ${(err as Error)?.message ?? String(err)}`);
    return {
      code: 1,
      stdout: JSON.stringify(e.toJSON(cfg?.cniVersion ?? requestedVersion(stdin) ?? "1.1.0")) + "\n",
      log: logLine(cfg, `${command} failed with code ${e.code}: ${e.message}`),
    };
  }
}
