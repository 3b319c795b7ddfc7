/**
 * flanneld's Kubernetes flags, each also read from `FLANNELD_<FLAG>` like every flanneld flag:
 * `--kube-subnet-mgr`, `--kube-api-url`, `--kubeconfig-file`, `--kube-annotation-prefix`
 * (default `flannel.alpha.coreos.com`), `--net-config-path` (default
 * `/etc/kube-flannel/net-conf.json`), `--set-node-network-unavailable` (default true). The node name
 * comes from `NODE_NAME`, else from the pod (`POD_NAME`, `POD_NAMESPACE`).
 *
 * @module
 */
import type { Command } from "@commander-js/extra-typings";
import type { KubeSourceOptions } from "../lease/kube/lease_source.ts";
import type { IfaceOptions } from "../net/iface.ts";
import type { EtcdOptions } from "../lease/etcd/options.ts";
import type { LeaseSource } from "../lease/source.ts";
import { CliError } from "./errors.ts";
import { flagOption as flag, parseBool } from "./flags.ts";

/** flannel's default annotation prefix. */
export const DEFAULT_KUBE_ANNOTATION_PREFIX = "flannel.alpha.coreos.com";
/** flannel's default net-conf.json path (the kube-flannel-cfg ConfigMap's mount). */
export const DEFAULT_NET_CONFIG_PATH = "/etc/kube-flannel/net-conf.json";

/** The values of the kube flags, as commander hands them over. */
export interface KubeFlagValues {
  /** --kube-subnet-mgr[=bool]. */
  kubeSubnetMgr: string | boolean;
  /** --kube-api-url. */
  kubeApiUrl: string;
  /** --kubeconfig-file. */
  kubeconfigFile: string;
  /** --kube-annotation-prefix. */
  kubeAnnotationPrefix: string;
  /** --net-config-path. */
  netConfigPath: string;
  /** --set-node-network-unavailable[=bool]. */
  setNodeNetworkUnavailable: string | boolean;
}

/**
 * Adds the kube flags to `cmd`. The command's option type is left as it is (typing them through
 * commander's generics made type-checking take minutes); read them with {@linkcode kubeFlagValues}.
 */
export function addKubeFlags<C extends object>(command: C): C {
  // deno-lint-ignore no-explicit-any -- any commander command; its type is handed back unchanged
  const cmd = command as unknown as Command<any, any, any>;
  cmd
    .addOption(
      flag(
        "--kube-subnet-mgr [bool]",
        "take leases from the Kubernetes API (node podCIDRs) instead of etcd",
        "false",
      ),
    )
    .addOption(
      flag("--kube-api-url <url>", "Kubernetes API server URL (default: in-cluster or kubeconfig)", ""),
    )
    .addOption(flag("--kubeconfig-file <path>", "kubeconfig to reach the API with (default: in-cluster)", ""))
    .addOption(
      flag(
        "--kube-annotation-prefix <prefix>",
        "prefix of the node annotations",
        DEFAULT_KUBE_ANNOTATION_PREFIX,
      ),
    )
    .addOption(flag("--net-config-path <path>", "network config file in kube mode", DEFAULT_NET_CONFIG_PATH))
    .addOption(
      flag(
        "--set-node-network-unavailable [bool]",
        "set the node's NetworkUnavailable condition to False once up",
        "true",
      ),
    );
  return command;
}

/** The kube flags' values out of a command's parsed options. */
export function kubeFlagValues(opts: object): KubeFlagValues {
  return opts as KubeFlagValues;
}

/** Whether `--kube-subnet-mgr` is on. */
export function kubeMode(v: Pick<KubeFlagValues, "kubeSubnetMgr">): boolean {
  return parseBool("--kube-subnet-mgr", v.kubeSubnetMgr);
}

/**
 * The kube lease source's options (without the connection, which {@linkcode kubeConnectionFrom}
 * resolves); throws {@linkcode CliError} for bad values.
 */
export async function kubeOptionsFrom(v: KubeFlagValues): Promise<KubeSourceOptions> {
  const { resolveConnection, KubeConfigError } = await import("../kube/config.ts");
  const { annotationKeys } = await import("../lease/kube/node_lease.ts");
  try {
    annotationKeys(v.kubeAnnotationPrefix);
    const conn = await resolveConnection({
      ...(v.kubeApiUrl ? { apiUrl: v.kubeApiUrl } : {}),
      ...(v.kubeconfigFile ? { kubeconfig: v.kubeconfigFile } : {}),
    });
    return {
      conn,
      annotationPrefix: v.kubeAnnotationPrefix,
      netConfPath: v.netConfigPath,
      setNodeNetworkUnavailable: parseBool("--set-node-network-unavailable", v.setNodeNetworkUnavailable),
    };
  } catch (err) {
    if (err instanceof KubeConfigError || err instanceof Error) throw new CliError((err as Error).message, 2);
    throw err;
  }
}

/**
 * What opens the agent's lease store, as the flags choose: the Kubernetes API with `--kube-subnet-mgr`
 * (flags checked now, connection made when called), else etcd. Each store's client is imported only
 * when chosen: etcd mode loads no Kubernetes code, and the other way round.
 */
export async function sourceOpener(
  v: KubeFlagValues,
  agent: IfaceOptions & { etcd: EtcdOptions },
): Promise<(signal: AbortSignal) => Promise<LeaseSource>> {
  if (!kubeMode(v)) {
    return async () => (await import("../lease/etcd/mod.ts")).openEtcdLeaseSource(agent.etcd);
  }
  const kube = await kubeOptionsFrom(v);
  return async (signal) => (await import("./kube_agent.ts")).openKubeForAgent(kube, agent, signal);
}
