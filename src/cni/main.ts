/**
 * CNI plugin mode: chosen by main.ts when `CNI_COMMAND` is set. Reads the environment and the config on
 * stdin, runs the command, writes the result (or the spec's error JSON) on stdout; logs go to stderr and
 * to the config's `logFile`. Imports only what the CNI path needs (no etcd client, no CLI framework).
 *
 * @module
 */
import { type CniConfig, type CniEnv, parseCniConfig, readCniEnv } from "./config.ts";
import { cmdAdd } from "./add.ts";
import { cmdCheck, cmdDel, cmdGc, cmdStatus } from "./del_check_gc.ts";
import { CNI_ERR, CniError, resultFor, SUPPORTED_VERSIONS } from "./types.ts";

function logLine(cfg: CniConfig | undefined, msg: string): void {
  const line = `${new Date().toISOString()} weft-cni[${Deno.pid}] ${msg}\n`;
  Deno.stderr.writeSync(new TextEncoder().encode(line));
  if (cfg?.logFile) {
    try {
      Deno.writeTextFileSync(cfg.logFile, line, { append: true, create: true });
    } catch { /* logging must never fail the operation */ }
  }
}

async function readStdin(): Promise<string> {
  const dec = new TextDecoder();
  let text = "";
  for await (const c of Deno.stdin.readable) text += dec.decode(c, { stream: true });
  return text + dec.decode();
}

function print(obj: unknown): void {
  Deno.stdout.writeSync(new TextEncoder().encode(JSON.stringify(obj) + "\n"));
}

/** Runs one CNI command; returns the exit code. */
export async function runCni(): Promise<number> {
  let version = "1.1.0";
  let cfg: CniConfig | undefined;
  let env: CniEnv | undefined;
  try {
    env = readCniEnv();
    const stdin = await readStdin();
    if (env.command === "VERSION") {
      // VERSION answers even for a config it cannot otherwise use.
      try {
        const v = (JSON.parse(stdin || "{}") as { cniVersion?: string }).cniVersion;
        if (v) version = v;
      } catch { /* ignore */ }
      print({ cniVersion: version, supportedVersions: SUPPORTED_VERSIONS });
      return 0;
    }
    cfg = parseCniConfig(stdin);
    version = cfg.cniVersion;
    const t0 = performance.now();
    switch (env.command) {
      case "ADD": {
        const result = await cmdAdd(cfg, env);
        print(resultFor(version, result));
        logLine(
          cfg,
          `ADD ${env.containerId}/${env.ifname}: ${result.ips.map((i) => i.address).join(",")} in ${
            (performance.now() - t0).toFixed(1)
          } ms`,
        );
        return 0;
      }
      case "DEL":
        await cmdDel(cfg, env);
        logLine(cfg, `DEL ${env.containerId}/${env.ifname} in ${(performance.now() - t0).toFixed(1)} ms`);
        // DEL prints nothing on success (spec 1.x); older runtimes ignore stdout for DEL.
        return 0;
      case "CHECK":
        if (version.startsWith("0.3")) {
          throw new CniError(
            CNI_ERR.INCOMPATIBLE_VERSION,
            `CHECK needs spec 0.4.0 or later, config says ${version}`,
          );
        }
        cmdCheck(cfg, env);
        return 0;
      case "GC": {
        if (version !== "1.1.0") {
          throw new CniError(CNI_ERR.INCOMPATIBLE_VERSION, `GC needs spec 1.1.0, config says ${version}`);
        }
        const freed = await cmdGc(cfg);
        logLine(cfg, `GC freed ${freed.length} addresses${freed.length ? `: ${freed.join(",")}` : ""}`);
        return 0;
      }
      case "STATUS":
        if (version !== "1.1.0") {
          throw new CniError(CNI_ERR.INCOMPATIBLE_VERSION, `STATUS needs spec 1.1.0, config says ${version}`);
        }
        cmdStatus(cfg);
        return 0;
    }
    throw new CniError(CNI_ERR.INVALID_ENV, `unknown CNI_COMMAND ${env.command}`);
  } catch (err) {
    const e = err instanceof CniError
      ? err
      : new CniError(CNI_ERR.INTERNAL, (err as Error).message ?? String(err));
    logLine(
      cfg,
      `${env?.command ?? "?"} ${env?.containerId ?? ""}/${
        env?.ifname ?? ""
      } failed: code ${e.code}: ${e.message}`,
    );
    print(e.toJSON(version));
    return 1;
  }
}
