/**
 * The thin CNI call into the running agent: the plugin process sends its CNI environment and stdin over
 * a local socket, the agent runs the command with its warm code and open libraries and sends back what
 * the plugin would have printed (src/cni/agent_client.ts, src/cni/agent_server.ts). One JSON line each
 * way.
 *
 * The agent serves a call only when it sees the files and the network the plugin sees: the same network
 * namespace, and the same file (device and inode) behind every path the call involves — the config's
 * paths, the default IPAM and saved-config folders, subnet.env, CNI_NETNS — which it checks itself, by
 * looking at them through the plugin's `/proc/<pid>/root` (the plugin, waiting for the answer, sends
 * only its pid: every check is the warm agent's work, not the fresh process's). An agent in a container
 * with its own /var/lib sees other files, and says so; then, and whenever the socket is missing or dead,
 * the plugin runs the command itself.
 *
 * @module
 */

/** The socket's file name, in the folder of subnet.env (root only, mode 0600). */
export const AGENT_SOCKET_NAME = "weft-cni.sock";

/** Where the agent listens by default: beside the default subnet.env. */
export const DEFAULT_AGENT_SOCKET = `/run/flannel/${AGENT_SOCKET_NAME}`;

/** The config key that names another socket (`""` turns the thin call off). */
export const AGENT_SOCKET_KEY = "agentSocket";

/**
 * The socket of the agent that writes `subnetFile`: beside it, `weft-cni.sock` for a file named
 * subnet.env, else `<file>.weft-cni.sock`. Plugin and agent already agree on where subnet.env lives, so
 * they agree on the socket without another setting, and agents with different subnet files (tests,
 * several nodes in namespaces on one host, even in one folder) never share one.
 */
export function agentSocketBeside(subnetFile: string): string {
  const slash = subnetFile.lastIndexOf("/");
  const dir = slash > 0 ? subnetFile.slice(0, slash) : slash === 0 ? "" : ".";
  const name = subnetFile.slice(slash + 1);
  return name === "subnet.env" ? `${dir}/${AGENT_SOCKET_NAME}` : `${subnetFile}.${AGENT_SOCKET_NAME}`;
}

/** The largest request the agent reads (a CNI config is a few KiB). */
export const MAX_REQUEST_BYTES = 1 << 20;

/** The environment variables a call forwards. */
export function forwardedEnv(getEnv: (k: string) => string | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (
    const k of [
      "CNI_COMMAND",
      "CNI_CONTAINERID",
      "CNI_NETNS",
      "CNI_IFNAME",
      "CNI_ARGS",
      "CNI_PATH",
      "WEFT_CNI_TRACE",
    ]
  ) {
    const v = getEnv(k);
    if (v !== undefined) out[k] = v;
  }
  return out;
}

/** A request. */
export interface AgentRequest {
  /** The forwarded CNI_* environment. */
  env: Record<string, string>;
  /** The config on stdin. */
  stdin: string;
  /** The caller's pid (its view of the files and its network namespace are checked through /proc). */
  pid: number;
}

/** A reply: the call's outcome, or a refusal that sends the plugin back to running the command itself. */
export type AgentReply = { code: number; stdout: string; log: string } | { fallback: string };

/** The identity (device:inode) of a namespace file, e.g. `/proc/thread-self/ns/net`. */
export function nsId(path: string): string {
  const st = Deno.statSync(path);
  return `${st.dev}:${st.ino}`;
}

/**
 * Where the CNI files are when the config does not say (config.ts, ipam/store.ts, saved_conf.ts and
 * config/subnet_env.ts own these; a unit test keeps the copies equal, the plugin's thin path does not
 * load those modules).
 */
export const DEFAULT_PATHS = ["/var/lib/cni/networks", "/var/lib/cni/flannel", "/run/flannel/subnet.env"];

/**
 * `path`'s nearest existing ancestor (or itself) with its device:inode, as seen under `root` (`""`: this
 * process's view; `/proc/<pid>/root`: that process's): equal for two views ⇒ one and the same file.
 */
export function pathIdentity(path: string, root = ""): string {
  for (let p = path; p;) {
    try {
      const st = Deno.statSync(root + p);
      return `${p}@${st.dev}:${st.ino}`;
    } catch {
      const slash = p.lastIndexOf("/");
      p = slash > 0 ? p.slice(0, slash) : slash === 0 && p !== "/" ? "/" : "";
    }
  }
  return "none";
}

/** The absolute paths in a config (any string value starting with `/`), at most 32. */
function configPaths(stdin: string): string[] {
  const out = new Set<string>();
  const walk = (v: unknown, depth: number) => {
    if (out.size >= 32 || depth > 6) return;
    if (typeof v === "string") {
      if (v.startsWith("/") && v.length < 4096) out.add(v);
    } else if (Array.isArray(v)) { for (const x of v) walk(x, depth + 1); }
    else if (v && typeof v === "object") { for (const x of Object.values(v)) walk(x, depth + 1); }
  };
  try {
    walk(JSON.parse(stdin), 0);
  } catch { /* the command reports bad JSON */ }
  return [...out];
}

/** Every path a call involves (see the module comment). */
export function callPaths(stdin: string, netns: string | undefined): string[] {
  return [...DEFAULT_PATHS, ...configPaths(stdin), ...(netns ? [netns] : [])];
}

/**
 * The socket for a config: its `agentSocket`, else the one beside its `subnetFile` (flannel's default
 * /run/flannel/subnet.env when unset); `""` when the thin call is off or the config is unreadable.
 */
export function agentSocketFor(stdin: string): string {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(stdin);
  } catch {
    return ""; // the command itself reports the bad JSON
  }
  if (!o || typeof o !== "object") return "";
  const v = o[AGENT_SOCKET_KEY];
  if (typeof v === "string") return v;
  return typeof o.subnetFile === "string" && o.subnetFile
    ? agentSocketBeside(o.subnetFile)
    : DEFAULT_AGENT_SOCKET;
}
