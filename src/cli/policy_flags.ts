/**
 * `weft agent`'s network-policy flags, each also read from `FLANNELD_<FLAG>` like every agent flag:
 * `--network-policy` (enforce NetworkPolicies; kube mode only, with `--ip-masq`) and `--policy-log-drops`
 * (rate-limited kernel log lines for dropped packets, naming the policies). Also the CNI server's
 * `register-pod` request kind ({@linkcode podRegistrationKinds}), which feeds CNI ADD's pod
 * registrations to the policy part.
 *
 * @module
 */
import { type Command, Option } from "@commander-js/extra-typings";
import type { AgentOptions } from "../agent/agent.ts";
import {
  type NetworkPolicyOptions,
  type RegistrationRequest,
  RegistrationSlot,
} from "../agent/network_policy.ts";
import type { EtcdOptions } from "../lease/etcd/options.ts";
import type { LeaseSource } from "../lease/source.ts";
import { REGISTER_POD_KIND, setInProcessRegistrar } from "../cni/pod_registration.ts";
import { envName } from "./etcd_flags.ts";
import { CliError } from "./errors.ts";
import { kubeFlagValues, kubeMode, sourceOpener } from "./kube_flags.ts";

/** The values of the policy flags, as commander hands them over. */
export interface PolicyFlagValues {
  /** --network-policy[=bool]. */
  networkPolicy: string | boolean;
  /** --policy-log-drops[=bool]. */
  policyLogDrops: string | boolean;
}

function flag(flags: string, description: string): Option {
  return new Option(flags, description).env(envName(flags.split(" ")[0]!)).default("false");
}

/**
 * Adds the policy flags to `cmd` (its option type is handed back unchanged, as with the kube flags);
 * read them with {@linkcode policyFlagValues}.
 */
export function addPolicyFlags<C extends object>(command: C): C {
  // deno-lint-ignore no-explicit-any -- any commander command; its type is handed back unchanged
  const cmd = command as unknown as Command<any, any, any>;
  cmd
    .addOption(flag(
      "--network-policy [bool]",
      "enforce Kubernetes NetworkPolicies for this node's pods in nftables (needs --kube-subnet-mgr)",
    ))
    .addOption(flag(
      "--policy-log-drops [bool]",
      "log packets network policy drops (kernel log, 5/s per pod and direction, pod named)",
    ));
  return command;
}

/** The policy flags' values out of a command's parsed options. */
export function policyFlagValues(opts: object): PolicyFlagValues {
  return opts as PolicyFlagValues;
}

function bool(flag: string, v: string | boolean | undefined): boolean {
  if (v === undefined || typeof v === "boolean") return !!v;
  if (["1", "t", "T", "true", "TRUE", "True"].includes(v)) return true;
  if (["0", "f", "F", "false", "FALSE", "False", ""].includes(v)) return false;
  throw new CliError(`${flag} ${v}: must be true or false`, 2);
}

/**
 * Why `--network-policy` needs `--ip-masq`: without it the agent writes FLANNEL_IPMASQ=false, and the CNI
 * plugin (weft's, or flannel's with the bridge plugin) then masquerades every pod's traffic leaving the
 * node — to other nodes' pods too — so their ingress rules would see this node's address, not the pod's.
 */
export const NEEDS_IP_MASQ =
  "--network-policy needs --ip-masq: without it the CNI plugin masquerades pod traffic leaving the node " +
  "(FLANNEL_IPMASQ=false in subnet.env turns ipMasq on in flannel-compatible configs), so ingress policies " +
  "on other nodes would judge this node's address instead of the pod's. Add --ip-masq (the agent then " +
  "masquerades only traffic leaving the cluster network, never pod-to-pod traffic)";

/** What the kube lease source offers the policy part: its API client and the node's name. */
interface KubeSourceShape {
  client: NetworkPolicyOptions["client"];
  nodeName: string;
}

/**
 * Checks the flags now (throws {@linkcode CliError}: `--network-policy` needs kube mode, where pods,
 * namespaces and policies come from); returns what turns an opened lease source into the agent's
 * `networkPolicy` option, or undefined when the flag is off.
 */
export function networkPolicyFrom(
  v: PolicyFlagValues,
  kube: boolean,
  ipMasq = true,
): ((source: LeaseSource) => NetworkPolicyOptions) | undefined {
  const logDrops = bool("--policy-log-drops", v.policyLogDrops);
  if (!bool("--network-policy", v.networkPolicy)) {
    if (logDrops) throw new CliError("--policy-log-drops needs --network-policy", 2);
    return undefined;
  }
  if (!kube) {
    throw new CliError(
      "--network-policy needs --kube-subnet-mgr: NetworkPolicies, pods and namespaces come from the Kubernetes API",
      2,
    );
  }
  if (!ipMasq) throw new CliError(NEEDS_IP_MASQ, 2);
  return (source) => {
    const k = source as unknown as Partial<KubeSourceShape>;
    if (!k.client || !k.nodeName) {
      throw new Error("--network-policy: the lease source is not the Kubernetes API");
    }
    return { client: k.client, nodeName: k.nodeName, logDrops };
  };
}

/**
 * The agent's lease-store opener ({@linkcode sourceOpener}) with the policy flags applied: flags checked
 * now; with `--network-policy`, opening the (Kubernetes) source also sets `opts.networkPolicy` from it.
 */
export async function agentSourceOpener(
  flags: object,
  opts: AgentOptions & { etcd: EtcdOptions },
): Promise<(signal: AbortSignal) => Promise<LeaseSource>> {
  const kube = kubeFlagValues(flags);
  const open = await sourceOpener(kube, opts);
  const policy = networkPolicyFrom(policyFlagValues(flags), kubeMode(kube), opts.ipMasq);
  if (!policy) return open;
  opts.podRegistrations = new RegistrationSlot();
  return async (signal) => {
    const source = await open(signal);
    opts.networkPolicy = policy(source);
    return source;
  };
}

/**
 * The request kinds the agent's CNI server serves besides the CNI call: `register-pod`, answered by the
 * policy part (through `opts.podRegistrations`), or `{policy: "off"}` without `--network-policy`. ADDs
 * the agent runs itself register through the same handler, in process (a request on its own socket
 * would wait behind the ADD it belongs to).
 */
export function podRegistrationKinds(
  opts: Pick<AgentOptions, "podRegistrations">,
): Record<string, (req: Record<string, unknown>) => Promise<Record<string, unknown>>> {
  const handle = async (pod: unknown): Promise<Record<string, unknown>> => {
    const slot = opts.podRegistrations;
    if (!slot) return { policy: "off" };
    if (!pod || typeof pod !== "object") return { error: "a register-pod request needs pod" };
    return await slot.handle(pod as RegistrationRequest);
  };
  setInProcessRegistrar(handle);
  return { [REGISTER_POD_KIND]: (req) => handle(req.pod) };
}
