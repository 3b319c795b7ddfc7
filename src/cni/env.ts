/**
 * The CNI_* environment, validated per command with the spec's code 4 (invalid environment variables).
 *
 * @module
 */
import { isContainerId, isIfname } from "../net/names.ts";
import { CNI_ERR, CniError } from "./types.ts";

/** The commands of spec 1.1.0 (older runtimes send a subset). */
export const CNI_COMMANDS = ["ADD", "DEL", "CHECK", "VERSION", "GC", "STATUS"] as const;

/** One of {@linkcode CNI_COMMANDS}. */
export type CniCommand = typeof CNI_COMMANDS[number];

/** The CNI_* environment. */
export interface CniEnv {
  /** CNI_COMMAND. */
  command: CniCommand;
  /** CNI_CONTAINERID ("" for VERSION, GC, STATUS). */
  containerId: string;
  /** CNI_NETNS (may be empty on DEL: containerd's `ctr` sends it so). */
  netns: string;
  /** CNI_IFNAME. */
  ifname: string;
  /** CNI_ARGS as key/values (`IgnoreUnknown=1;K8S_POD_NAMESPACE=…`). */
  args: Record<string, string>;
  /** CNI_PATH. */
  path: string;
}

/** Parses CNI_ARGS (`K=V;K2=V2`); a pair without `=` or with an empty key is code 4. */
export function parseCniArgs(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const kv of text.split(";")) {
    if (!kv) continue;
    const eq = kv.indexOf("=");
    if (eq <= 0) {
      throw new CniError(CNI_ERR.INVALID_ENV, `CNI_ARGS: ${JSON.stringify(kv)} is not KEY=VALUE`);
    }
    out[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  return out;
}

/** Reads and validates the environment for its command; any problem is code 4. */
export function readCniEnv(env: (k: string) => string | undefined = (k) => Deno.env.get(k)): CniEnv {
  const command = env("CNI_COMMAND") ?? "";
  if (!(CNI_COMMANDS as readonly string[]).includes(command)) {
    throw new CniError(
      CNI_ERR.INVALID_ENV,
      `CNI_COMMAND ${JSON.stringify(command)} is not one of ${CNI_COMMANDS.join(", ")}`,
    );
  }
  const out: CniEnv = {
    command: command as CniCommand,
    containerId: env("CNI_CONTAINERID") ?? "",
    netns: env("CNI_NETNS") ?? "",
    ifname: env("CNI_IFNAME") ?? "",
    args: parseCniArgs(env("CNI_ARGS") ?? ""),
    path: env("CNI_PATH") ?? "",
  };
  if (command === "ADD" || command === "DEL" || command === "CHECK") {
    if (!out.containerId) throw new CniError(CNI_ERR.INVALID_ENV, "CNI_CONTAINERID is required");
    if (!isContainerId(out.containerId)) {
      throw new CniError(
        CNI_ERR.INVALID_ENV,
        `CNI_CONTAINERID ${JSON.stringify(out.containerId)} must match [A-Za-z0-9][A-Za-z0-9_.-]*`,
      );
    }
    if (!out.ifname) throw new CniError(CNI_ERR.INVALID_ENV, "CNI_IFNAME is required");
    if (!isIfname(out.ifname)) {
      throw new CniError(
        CNI_ERR.INVALID_ENV,
        `CNI_IFNAME ${JSON.stringify(out.ifname)} is not a valid interface name`,
      );
    }
    if (command !== "DEL" && !out.netns) {
      throw new CniError(CNI_ERR.INVALID_ENV, `CNI_NETNS is required for ${command}`);
    }
  }
  return out;
}
