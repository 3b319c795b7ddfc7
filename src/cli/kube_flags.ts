/**
 * flanneld's Kubernetes flags, each also read from `FLANNELD_<FLAG>` like every flanneld flag:
 * `--kube-subnet-mgr`, `--kube-api-url`, `--kubeconfig-file`, `--kube-annotation-prefix`
 * (default `flannel.alpha.coreos.com`), `--net-config-path` (default
 * `/etc/kube-flannel/net-conf.json`), `--set-node-network-unavailable` (default true). The node name
 * comes from `NODE_NAME`, else from the pod (`POD_NAME`, `POD_NAMESPACE`).
 *
 * @module
 */
import type { KubeSourceOptions } from "../lease/kube/lease_source.ts";
import type { IfaceOptions } from "../net/iface.ts";
import type { EtcdOptions } from "../lease/etcd/options.ts";
import type { LeaseSource } from "../lease/source.ts";
import { CliError } from "./errors.ts";
import { addFlags, type FlagSpec, parseBool } from "./flags.ts";

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

/** flanneld's Kubernetes flags (main.go v0.28.9). */
export const KUBE_FLAGS: readonly FlagSpec[] = [
  {
    name: "kube-subnet-mgr",
    kind: "bool",
    help: "take leases from the Kubernetes API (node podCIDRs) instead of etcd",
    origin: "flanneld",
  },
  {
    name: "kube-api-url",
    kind: "string",
    arg: "url",
    help: "Kubernetes API server URL (default: in-cluster or kubeconfig)",
    origin: "flanneld",
  },
  {
    name: "kube-annotation-prefix",
    kind: "string",
    arg: "prefix",
    help: "prefix of the node annotations",
    default: DEFAULT_KUBE_ANNOTATION_PREFIX,
    origin: "flanneld",
  },
  {
    name: "kubeconfig-file",
    kind: "string",
    arg: "path",
    help: "kubeconfig to reach the API with (default: in-cluster)",
    origin: "flanneld",
  },
  {
    name: "net-config-path",
    kind: "string",
    arg: "path",
    help: "network config file (kube mode; etcd mode reads <etcd-prefix>/config)",
    default: DEFAULT_NET_CONFIG_PATH,
    origin: "flanneld",
  },
  {
    name: "set-node-network-unavailable",
    kind: "bool",
    help: "set the node's NetworkUnavailable condition to False once up",
    default: "true",
    origin: "flanneld",
  },
];

/**
 * Adds the kube flags to `cmd` (its option type is handed back unchanged: typing them through
 * commander's generics made type-checking take minutes); read them with {@linkcode kubeFlagValues}.
 */
export function addKubeFlags<C extends object>(command: C): C {
  return addFlags(command, KUBE_FLAGS);
}

/** The kube flags' values out of a command's parsed options. */
export function kubeFlagValues(opts: object): KubeFlagValues {
  return opts as KubeFlagValues;
}

/** Whether `--kube-subnet-mgr` is on. */
export function kubeMode(v: Pick<KubeFlagValues, "kubeSubnetMgr">): boolean {
  return parseBool("--kube-subnet-mgr", v.kubeSubnetMgr);
}

/** The kube flags checked, before any connection is made. */
export interface KubeSettings {
  /** `--kube-subnet-mgr`. */
  enabled: boolean;
  /** `--kube-api-url`. */
  apiUrl?: string;
  /** `--kubeconfig-file`. */
  kubeconfig?: string;
  /** `--kube-annotation-prefix`. */
  annotationPrefix: string;
  /** `--net-config-path`. */
  netConfPath: string;
  /** `--set-node-network-unavailable`. */
  setNodeNetworkUnavailable: boolean;
}

/** Checks the kube flags' values (throws {@linkcode CliError}); makes no connection. */
export function kubeSettingsFrom(v: KubeFlagValues): KubeSettings {
  return {
    enabled: kubeMode(v),
    ...(v.kubeApiUrl ? { apiUrl: v.kubeApiUrl } : {}),
    ...(v.kubeconfigFile ? { kubeconfig: v.kubeconfigFile } : {}),
    annotationPrefix: v.kubeAnnotationPrefix,
    netConfPath: v.netConfigPath,
    setNodeNetworkUnavailable: parseBool("--set-node-network-unavailable", v.setNodeNetworkUnavailable),
  };
}

/**
 * The kube lease source's options, with the connection resolved (kubeconfig, URL or in-cluster);
 * throws {@linkcode CliError} for bad values.
 */
export async function kubeOptionsFrom(v: KubeFlagValues): Promise<KubeSourceOptions> {
  const s = kubeSettingsFrom(v);
  const { resolveConnection, KubeConfigError } = await import("../kube/config.ts");
  const { annotationKeys } = await import("../lease/kube/node_lease.ts");
  try {
    annotationKeys(s.annotationPrefix);
    const conn = await resolveConnection({
      ...(s.apiUrl ? { apiUrl: s.apiUrl } : {}),
      ...(s.kubeconfig ? { kubeconfig: s.kubeconfig } : {}),
    });
    return {
      conn,
      annotationPrefix: s.annotationPrefix,
      netConfPath: s.netConfPath,
      setNodeNetworkUnavailable: s.setNodeNetworkUnavailable,
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
