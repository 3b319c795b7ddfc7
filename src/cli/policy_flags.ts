/**
 * `weft agent`'s network-policy flags, each also read from `FLANNELD_<FLAG>` like every agent flag:
 * `--network-policy` (enforce NetworkPolicies; kube mode only) and `--policy-log-drops` (rate-limited
 * kernel log lines for dropped packets, naming the pod).
 *
 * @module
 */
import type { AgentOptions } from "../agent/agent.ts";
import type { NetworkPolicyOptions } from "../agent/network_policy.ts";
import type { EtcdOptions } from "../lease/etcd/options.ts";
import type { LeaseSource } from "../lease/source.ts";
import { CliError } from "./errors.ts";
import { addFlags, type FlagSpec, parseBool } from "./flags.ts";
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
    help: "enforce Kubernetes NetworkPolicies for this node's pods in nftables (needs --kube-subnet-mgr)",
    origin: "weft",
  },
  {
    name: "policy-log-drops",
    kind: "bool",
    help: "log packets network policy drops (kernel log, 5/s per pod and direction, pod named)",
    origin: "weft",
  },
];

/**
 * Adds the policy flags to `cmd` (its option type is handed back unchanged, as with the kube flags);
 * read them with {@linkcode policyFlagValues}.
 */
export function addPolicyFlags<C extends object>(command: C): C {
  return addFlags(command, POLICY_FLAGS);
}

/** The policy flags' values out of a command's parsed options. */
export function policyFlagValues(opts: object): PolicyFlagValues {
  return opts as PolicyFlagValues;
}

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
  const policy = networkPolicyFrom(policyFlagValues(flags), kubeMode(kube));
  if (!policy) return open;
  return async (signal) => {
    const source = await open(signal);
    opts.networkPolicy = policy(source);
    return source;
  };
}
