/**
 * `weft agent`'s network-policy flags, each also read from `FLANNELD_<FLAG>` like every agent flag:
 * `--network-policy` (enforce NetworkPolicies; kube mode only, with `--ip-masq`) and `--policy-log-drops`
 * (rate-limited kernel log lines for dropped packets, naming the policies). Also the CNI server's
 * `register-pod` request kind ({@linkcode podRegistrationKinds}), which feeds CNI ADD's pod
 * registrations to the policy part.
 *
 * @module
 */
import type { AgentOptions } from "../agent/agent.ts";
import type { NetworkPolicyOptions } from "../agent/network_policy.ts";
import { type RegistrationRequest, RegistrationSlot } from "../agent/pod_registrations.ts";
import { REGISTER_POD_KIND, setInProcessRegistrar } from "../cni/pod_registration.ts";
import type { EtcdOptions } from "../lease/etcd/options.ts";
import type { LeaseSource } from "../lease/source.ts";
import { CliError } from "./errors.ts";
import { type FlagSpec, parseBool } from "./flags.ts";
import { kubeFlagValues, kubeMode, sourceOpener } from "./kube_flags.ts";

/** The values of the policy flags, as commander hands them over. */
export interface PolicyFlagValues {
  /** --network-policy[=bool]. */
  networkPolicy: string | boolean;
  /** --policy-log-drops[=bool]. */
  policyLogDrops: string | boolean;
}

/** weft's network-policy flags. */
export const POLICY_FLAGS: readonly FlagSpec[] = [
  {
    name: "network-policy",
    kind: "bool",
    help:
      "enforce Kubernetes NetworkPolicies for this node's pods in nftables (needs --kube-subnet-mgr and --ip-masq)",
    origin: "weft",
  },
  {
    name: "policy-log-drops",
    kind: "bool",
    help: "log packets network policy drops (kernel log, 5/s per pod and direction, policies named)",
    origin: "weft",
  },
];

/** The policy flags' values out of a command's parsed options. */
export function policyFlagValues(opts: object): PolicyFlagValues {
  return opts as PolicyFlagValues;
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
  const logDrops = parseBool("--policy-log-drops", v.policyLogDrops);
  if (!parseBool("--network-policy", v.networkPolicy)) {
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

/** Where the CNI server finds the policy part's registrations (set with `--network-policy`). */
export interface RegistrationsHolder {
  /** The slot the policy part binds to. */
  slot?: RegistrationSlot;
}

/**
 * The agent's lease-store opener ({@linkcode sourceOpener}) with the policy flags applied: flags checked
 * now; with `--network-policy`, `registrations.slot` is made now (the CNI server starts before the store
 * is open) and opening the (Kubernetes) source sets `opts.networkPolicy` from it, with that slot.
 */
export async function agentSourceOpener(
  flags: object,
  opts: AgentOptions & { etcd: EtcdOptions },
  registrations: RegistrationsHolder = {},
): Promise<(signal: AbortSignal) => Promise<LeaseSource>> {
  const kube = kubeFlagValues(flags);
  const open = await sourceOpener(kube, opts);
  const policy = networkPolicyFrom(policyFlagValues(flags), kubeMode(kube), opts.ipMasq);
  if (!policy) return open;
  const slot = registrations.slot = new RegistrationSlot();
  return async (signal) => {
    const source = await open(signal);
    opts.networkPolicy = { ...policy(source), registrations: slot };
    return source;
  };
}

/**
 * The request kinds the agent's CNI server serves besides the CNI call: `register-pod`, answered by the
 * policy part (through `registrations.slot`), or `{policy: "off"}` without `--network-policy`. ADDs the
 * agent runs itself register through the same handler, in process (a request on its own socket would
 * wait behind the ADD it belongs to).
 */
export function podRegistrationKinds(
  registrations: RegistrationsHolder,
): Record<string, (req: Record<string, unknown>) => Promise<Record<string, unknown>>> {
  const handle = async (pod: unknown): Promise<Record<string, unknown>> => {
    const slot = registrations.slot;
    if (!slot) return { policy: "off" };
    if (!pod || typeof pod !== "object") return { error: "a register-pod request needs pod" };
    return await slot.handle(pod as RegistrationRequest);
  };
  setInProcessRegistrar(handle);
  return { [REGISTER_POD_KIND]: (req) => handle(req.pod) };
}
