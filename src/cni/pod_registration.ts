/**
 * CNI ADD tells the node's agent about the new pod before ADD returns — the `register-pod` request on
 * the agent's socket (agent_protocol.ts) — so that a pod a NetworkPolicy may select is closed from its
 * first packet: the agent holds its addresses closed at once and releases them when the pod's rules are
 * in (src/policy/enforcer.ts `register`). It is its own small request, made by the plugin whichever
 * process runs the ADD: under the DaemonSet the plugin runs on the host and the agent in a pod that
 * cannot run the ADD itself (it sees another /var/lib), but it shares the socket under /run/flannel.
 *
 * Request `{v, kind: "register-pod", pid, pod: {namespace, name, containerId, ips, masquerades}}`
 * (namespace and name from CNI_ARGS' K8S_POD_NAMESPACE and K8S_POD_NAME). Replies and what ADD does:
 *
 * - `{policy: "on", state}` — `held` (closed until the agent knows the pod), `enforced`, `open`, or
 *   `starting` (the agent is starting: its previous table holds unknown pods): ADD goes on.
 * - `{policy: "off"}` — the agent enforces no policy: ADD goes on.
 * - `{refused}` — the agent enforces policy and this configuration masquerades pod traffic, which other
 *   nodes' ingress rules would misjudge: ADD fails with the message (code 7, invalid configuration).
 * - No socket, no agent, an agent older than this request (`lost`: version 0 closes the connection;
 *   `unsupported`: version 1 without it), no answer within {@linkcode REGISTER_TIMEOUT_MS}: ADD goes on.
 *   The agent's table still holds every address of its pod subnet it does not know while any policy
 *   exists, so such a pod is closed until the API shows it to the agent.
 *
 * When the agent itself runs the ADD (the thin call), the registration is handed to it in process
 * ({@linkcode setInProcessRegistrar}): a request on its own socket would wait behind the ADD it is part
 * of.
 *
 * @module
 */
import type { CniConfig } from "./config.ts";
import type { CniEnv } from "./env.ts";
import { agentSocketBeside } from "./agent_protocol.ts";
import { CNI_ERR, CniError } from "./types.ts";

/** The request kind. */
export const REGISTER_POD_KIND = "register-pod";

/** How long ADD waits for the agent's answer. */
export const REGISTER_TIMEOUT_MS = 5000;

/** The pod a registration describes. */
export interface RegisteredPod {
  /** K8S_POD_NAMESPACE. */
  namespace?: string;
  /** K8S_POD_NAME. */
  name?: string;
  /** CNI_CONTAINERID. */
  containerId: string;
  /** The addresses IPAM gave it. */
  ips: string[];
  /** This configuration masquerades its traffic leaving the node. */
  masquerades: boolean;
}

/** What ADD learnt (for the log and tests). */
export type RegistrationOutcome =
  | "held"
  | "enforced"
  | "open"
  | "starting"
  | "off"
  | "no agent"
  | "old agent"
  | "no answer";

type Handler = (pod: RegisteredPod) => Promise<Record<string, unknown>>;

let inProcess: Handler | undefined;

/** Makes ADDs run in this process (the agent's thin call) register through `h` directly. */
export function setInProcessRegistrar(h: Handler | undefined): void {
  inProcess = h;
}

/** The agent's socket for a config: `agentSocket` when set (`""`: none), else beside `subnetFile`. */
function socketOf(cfg: CniConfig): string {
  return cfg.agentSocket ?? agentSocketBeside(cfg.subnetFile);
}

async function ask(
  cfg: CniConfig,
  pod: RegisteredPod,
): Promise<Record<string, unknown> | RegistrationOutcome> {
  if (inProcess) return await inProcess(pod);
  const path = socketOf(cfg);
  if (!path) return "no agent";
  try {
    Deno.statSync(path);
  } catch {
    return "no agent";
  }
  const { askAgent } = await import("./agent_client.ts");
  const answer = await askAgent(path, REGISTER_POD_KIND, { pod });
  if (answer.status === "unreachable") return "no agent";
  if (answer.status === "lost" || answer.status === "unsupported") return "old agent";
  return answer.reply;
}

/**
 * Registers the pod with the agent (see the module doc); throws {@linkcode CniError} only when the agent
 * refuses it.
 */
export async function registerPod(
  cfg: CniConfig,
  env: CniEnv,
  ips: string[],
  masquerades: boolean,
): Promise<RegistrationOutcome> {
  const pod: RegisteredPod = {
    ...(env.args.K8S_POD_NAMESPACE ? { namespace: env.args.K8S_POD_NAMESPACE } : {}),
    ...(env.args.K8S_POD_NAME ? { name: env.args.K8S_POD_NAME } : {}),
    containerId: env.containerId,
    ips,
    masquerades,
  };
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<"no answer">((res) =>
    timer = setTimeout(() => res("no answer"), REGISTER_TIMEOUT_MS)
  );
  try {
    const r = await Promise.race([ask(cfg, pod).catch(() => "no agent" as const), timeout]);
    if (typeof r === "string") return r;
    if (typeof r.refused === "string") throw new CniError(CNI_ERR.INVALID_CONFIG, r.refused);
    if (r.policy === "off") return "off";
    const state = r.state;
    return state === "held" || state === "enforced" || state === "open" || state === "starting"
      ? state
      : "off";
  } finally {
    clearTimeout(timer);
  }
}
