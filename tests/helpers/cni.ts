/**
 * Running weft's CNI mode the way kubelet does: exec main.ts (the binary's entry point) with the CNI_*
 * environment and the config on stdin, inside a node namespace; stdout parsed as JSON.
 *
 * @module
 */
import { runIn } from "../../src/cli/lab.ts";

const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** What one CNI call returned. */
export interface CniCall {
  /** Exit code. */
  code: number;
  /** Parsed stdout (undefined when empty). */
  out: Record<string, unknown> | undefined;
  /** Raw stdout. */
  stdout: string;
  /** stderr (logs). */
  stderr: string;
}

/** Env for one call. */
export interface CniCallEnv {
  /** CNI_COMMAND. */
  command: string;
  /** CNI_CONTAINERID. */
  containerId?: string;
  /** CNI_NETNS. */
  netns?: string;
  /** CNI_IFNAME. */
  ifname?: string;
  /** CNI_ARGS. */
  args?: string;
  /** Anything else (or overrides). */
  extra?: Record<string, string>;
}

/** Builds the CNI environment for a call. */
export function cniEnv(e: CniCallEnv): Record<string, string> {
  const env: Record<string, string> = {
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    CNI_COMMAND: e.command,
    CNI_PATH: "/opt/cni/bin:/usr/lib/cni",
  };
  if (e.containerId !== undefined) env.CNI_CONTAINERID = e.containerId;
  if (e.netns !== undefined) env.CNI_NETNS = e.netns;
  if (e.ifname !== undefined) env.CNI_IFNAME = e.ifname;
  if (e.args !== undefined) env.CNI_ARGS = e.args;
  return { ...env, ...(e.extra ?? {}) };
}

/** The command line that runs weft's CNI mode. */
export function cniCommand(): string[] {
  return [Deno.execPath(), "run", "-A", "--no-check", MAIN];
}

/** Runs one CNI call in node namespace `node`. */
export async function cni(
  node: string,
  e: CniCallEnv,
  stdin: string | Record<string, unknown>,
): Promise<CniCall> {
  const r = await runIn(node, cniCommand(), {
    env: cniEnv(e),
    clearEnv: true,
    stdin: typeof stdin === "string" ? stdin : JSON.stringify(stdin),
  });
  let out: Record<string, unknown> | undefined;
  if (r.stdout.trim()) out = JSON.parse(r.stdout);
  return { code: r.code, out, stdout: r.stdout, stderr: r.stderr };
}
