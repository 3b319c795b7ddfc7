/**
 * One CNI request, parsed and checked before any work: the CNI_* environment (code 4), the config on
 * stdin (codes 1, 6, 7), the spec version the command needs (code 1), a chained `prevResult` for ADD and
 * CHECK (code 7), and GC's list of valid attachments (code 7 when absent). Everything a runtime — or an
 * attacker — can put in front of the plugin goes through here; the fuzz test drives it.
 *
 * @module
 */
import { type CniConfig, parseCniConfig } from "./config.ts";
import { type CniEnv, readCniEnv } from "./env.ts";
import { parsePrevResult } from "./prev_result.ts";
import { CNI_ERR, CniError, type Result, SUPPORTED_VERSIONS } from "./types.ts";

/** A checked request for a command other than VERSION. */
export interface CniRequest {
  /** The environment. */
  env: CniEnv;
  /** The config. */
  cfg: CniConfig;
  /** `prevResult`, checked (ADD and CHECK only). */
  prev?: Result;
}

/** The oldest spec version that has each command. */
const SINCE: Partial<Record<CniEnv["command"], string>> = { CHECK: "0.4.0", GC: "1.1.0", STATUS: "1.1.0" };

function needVersion(cfg: CniConfig, command: string, min: string): void {
  const order = SUPPORTED_VERSIONS as readonly string[];
  if (order.indexOf(cfg.cniVersion) < order.indexOf(min)) {
    throw new CniError(
      CNI_ERR.INCOMPATIBLE_VERSION,
      `config version ${cfg.cniVersion} does not allow ${command} (needs ${min} or later)`,
    );
  }
}

/** Checks the environment; VERSION needs nothing else. */
export function parseEnv(getEnv: (k: string) => string | undefined): CniEnv {
  return readCniEnv(getEnv);
}

/** Parses and checks a request for `env.command` (not VERSION) with `stdin` as its config. */
export function parseRequest(env: CniEnv, stdin: string): CniRequest {
  const cfg = parseCniConfig(stdin);
  const since = SINCE[env.command];
  if (since) needVersion(cfg, env.command, since);
  const req: CniRequest = { env, cfg };
  if ((env.command === "ADD" || env.command === "CHECK") && cfg.prevResult !== undefined) {
    req.prev = parsePrevResult(cfg.prevResult);
  }
  if (env.command === "GC" && !cfg.validAttachments) {
    throw new CniError(
      CNI_ERR.INVALID_CONFIG,
      "config: GC needs cni.dev/valid-attachments (or cni.dev/attachments): without the list of " +
        "attachments still in use, every pod's address would look stale",
    );
  }
  return req;
}
