/**
 * flannel's node ↔ lease codec (`--kube-subnet-mgr`, flannel `pkg/subnet/kube`), pure:
 *
 * - Annotation names: `<prefix>/kube-subnet-manager`, `backend-data`, `backend-v6-data`,
 *   `backend-type`, `public-ip`, `public-ipv6`, and the inputs `public-ip-overwrite`,
 *   `public-ipv6-overwrite`, `node-public-ip`, `node-public-ipv6`. The prefix follows flannel's rules:
 *   at most one `/`; without one a `/` is added (`flannel.alpha.coreos.com/`), with one a `-` is added
 *   unless it ends in `/` or `-` (`example.com/net` → `example.com/net-backend-data`).
 * - A node is a peer when `kube-subnet-manager` is `"true"`: its subnet is the IPv4 entry of
 *   `spec.podCIDRs` (or `spec.podCIDR`), its IPv6 subnet the IPv6 entry (dual-stack), its attributes
 *   the annotations (`backend-data` is the same JSON as an etcd lease's `BackendData`).
 * - The own node's annotations are written as flannel writes them: `backend-type`; `backend-data` and
 *   `public-ip` (the `public-ip-overwrite` value when set) unless a vxlan node has no IPv4 data;
 *   `backend-v6-data` and `public-ipv6` for IPv6; `kube-subnet-manager: "true"`. Only keys whose value
 *   differs are patched.
 * - The own lease is the node's podCIDR(s), which must lie inside the config's Network (IPv6Network).
 *
 * @module
 */
import type { NetworkConfig } from "../../config/net_conf.ts";
import { formatIP, formatNet, type IPNet, netContainsNet, parseCIDR, parseIP } from "../../net/ip.ts";
import { type Lease, type LeaseAttrs, subnetKey } from "../lease.ts";

/** flannel's default `--kube-annotation-prefix`. */
export const DEFAULT_ANNOTATION_PREFIX = "flannel.alpha.coreos.com";

/** The annotation names for one prefix. */
export interface AnnotationKeys {
  /** `kube-subnet-manager`: "true" on nodes whose flannel/weft runs with --kube-subnet-mgr. */
  subnetKubeManaged: string;
  /** `backend-data`. */
  backendData: string;
  /** `backend-v6-data`. */
  backendV6Data: string;
  /** `backend-type`. */
  backendType: string;
  /** `public-ip`. */
  publicIP: string;
  /** `public-ipv6`. */
  publicIPv6: string;
  /** `node-public-ip` (read at start: the node's public IP, over --public-ip). */
  nodePublicIP: string;
  /** `node-public-ipv6`. */
  nodePublicIPv6: string;
  /** `public-ip-overwrite` (published instead of the detected public IP). */
  publicIPOverwrite: string;
  /** `public-ipv6-overwrite`. */
  publicIPv6Overwrite: string;
}

/** The annotation names for `prefix`, by flannel's rules; throws naming the flag for a bad prefix. */
export function annotationKeys(prefix = DEFAULT_ANNOTATION_PREFIX): AnnotationKeys {
  const slashes = prefix.split("/").length - 1;
  if (slashes > 1) {
    throw new Error(`--kube-annotation-prefix ${prefix}: may contain at most one "/"`);
  }
  let p = slashes === 0 ? `${prefix}/` : prefix;
  if (!p.endsWith("/") && !p.endsWith("-")) p += "-";
  if (!/(?:[a-z0-9_-]+\.)+[a-z0-9_-]+\/(?:[a-z0-9_-]+-)?$/.test(p)) {
    throw new Error(
      `--kube-annotation-prefix ${prefix}: must be a domain name, optionally with /name (e.g. flannel.alpha.coreos.com)`,
    );
  }
  return {
    subnetKubeManaged: `${p}kube-subnet-manager`,
    backendData: `${p}backend-data`,
    backendV6Data: `${p}backend-v6-data`,
    backendType: `${p}backend-type`,
    publicIP: `${p}public-ip`,
    publicIPv6: `${p}public-ipv6`,
    nodePublicIP: `${p}node-public-ip`,
    nodePublicIPv6: `${p}node-public-ipv6`,
    publicIPOverwrite: `${p}public-ip-overwrite`,
    publicIPv6Overwrite: `${p}public-ipv6-overwrite`,
  };
}

/** The parts of a core/v1 Node weft reads. */
export interface KubeNode {
  /** Metadata. */
  metadata: {
    name: string;
    annotations?: Record<string, string>;
    labels?: Record<string, string>;
    resourceVersion?: string;
    uid?: string;
    creationTimestamp?: string;
  };
  /** Spec. */
  spec?: { podCIDR?: string; podCIDRs?: string[] };
  /** Status. */
  status?: { conditions?: { type: string; status: string; reason?: string; message?: string }[] };
}

/** The node's pod CIDRs by family, as flannel picks them (`podCIDRs`, else `podCIDR`; at most 2). */
export function nodePodCIDRs(node: KubeNode): { v4?: IPNet; v6?: IPNet } {
  const name = node.metadata.name;
  const list = node.spec?.podCIDRs?.length
    ? node.spec.podCIDRs
    : node.spec?.podCIDR
    ? [node.spec.podCIDR]
    : [];
  if (list.length > 2) {
    throw new Error(`node "${name}": spec.podCIDRs has ${list.length} entries (at most one per family)`);
  }
  const out: { v4?: IPNet; v6?: IPNet } = {};
  for (const c of list) {
    let net: IPNet;
    try {
      net = parseCIDR(c).net;
    } catch (err) {
      throw new Error(`node "${name}": pod CIDR ${JSON.stringify(c)}: ${(err as Error).message}`);
    }
    if (net.ip.family === 4) out.v4 = net;
    else out.v6 = net;
  }
  return out;
}

/** Which families the network config serves. */
function families(cfg: Pick<NetworkConfig, "enableIPv4" | "enableIPv6" | "network" | "ipv6Network">) {
  return { ipv4: cfg.enableIPv4 && !!cfg.network, ipv6: cfg.enableIPv6 && !!cfg.ipv6Network };
}

/** A lease key for a node's subnets (the same form as etcd mode: `10.244.3.0-24[&v6-64]`). */
function keyFor(subnet?: IPNet, ipv6Subnet?: IPNet): string {
  return subnetKey(subnet, ipv6Subnet);
}

function parseJson(text: string | undefined, what: string): unknown {
  if (text === undefined || text === "") return null;
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`${what} is not JSON: ${text.slice(0, 80)}`);
  }
}

/**
 * A peer node as a lease, read exactly as flannel reads it; undefined when the node is no flannel/weft
 * node (no `kube-subnet-manager: "true"`). Throws naming the node and annotation when one is malformed
 * or the podCIDR a family needs is missing (flannel logs those and skips the node).
 */
export function nodeToLease(
  node: KubeNode,
  keys: AnnotationKeys,
  cfg: Pick<NetworkConfig, "enableIPv4" | "enableIPv6" | "network" | "ipv6Network">,
): (Lease & { node: string }) | undefined {
  const a = node.metadata.annotations ?? {};
  if (a[keys.subnetKubeManaged] !== "true") return undefined;
  const name = node.metadata.name;
  const fam = families(cfg);
  const cidrs = nodePodCIDRs(node);
  // Each object is made whole by one literal: properties added afterwards cost a second allocation per
  // object (V8 keeps them outside it), ~100 bytes per Node held for as long as the Node is known. Only a
  // dual-stack node's BackendV6Data is still added afterwards (rare; the usual case stays whole).
  let publicIP = "", publicIPv6: string | null = null, data: unknown, v6Data: unknown = null;
  if (fam.ipv4) {
    const ip = parseIP(a[keys.publicIP] ?? "");
    if (ip.family !== 4) {
      throw new Error(`node "${name}": ${keys.publicIP} ${a[keys.publicIP]} is not an IPv4 address`);
    }
    publicIP = formatIP(ip);
    data = parseJson(a[keys.backendData], `node "${name}": ${keys.backendData}`);
    if (!cidrs.v4) throw new Error(`node "${name}": no IPv4 pod CIDR in spec.podCIDRs`);
  }
  if (fam.ipv6) {
    const ip = parseIP(a[keys.publicIPv6] ?? "");
    if (ip.family !== 6) {
      throw new Error(`node "${name}": ${keys.publicIPv6} ${a[keys.publicIPv6]} is not an IPv6 address`);
    }
    publicIPv6 = formatIP(ip);
    v6Data = parseJson(a[keys.backendV6Data], `node "${name}": ${keys.backendV6Data}`);
    if (!cidrs.v6) throw new Error(`node "${name}": no IPv6 pod CIDR in spec.podCIDRs`);
  }
  const backendType = a[keys.backendType] ?? "";
  const attrs: LeaseAttrs = fam.ipv4
    ? { PublicIP: publicIP, PublicIPv6: publicIPv6, BackendType: backendType, BackendData: data }
    : { PublicIP: publicIP, PublicIPv6: publicIPv6, BackendType: backendType };
  if (v6Data !== null) attrs.BackendV6Data = v6Data;
  const subnet = fam.ipv4 ? cidrs.v4 : undefined;
  const ipv6Subnet = fam.ipv6 ? cidrs.v6 : undefined;
  // Two nodes claiming one subnet: every agent lets the older node win (lease_filter.ts), and every
  // agent sees the same creationTimestamp (ties go to the smaller key there).
  const created = Date.parse(node.metadata.creationTimestamp ?? "");
  const key = keyFor(subnet, ipv6Subnet);
  if (subnet && !ipv6Subnet && Number.isFinite(created)) {
    return { subnet, createOrder: created, attrs, key, node: name }; // the usual case, one literal
  }
  return {
    ...(subnet ? { subnet } : {}),
    ...(ipv6Subnet ? { ipv6Subnet } : {}),
    ...(Number.isFinite(created) ? { createOrder: created } : {}),
    attrs,
    key,
    node: name,
  };
}

/** Why the own node cannot have a lease. */
export class PodCidrError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "PodCidrError";
  }
}

/**
 * The own node's lease subnets, checked as flannel checks them, with errors that say what to fix:
 * no podCIDR (kube-controller-manager needs `--allocate-node-cidrs` and `--cluster-cidr`), a podCIDR
 * outside the network config's Network (`--cluster-cidr` and net-conf.json disagree).
 */
export function ownSubnets(
  node: KubeNode,
  cfg: Pick<NetworkConfig, "enableIPv4" | "enableIPv6" | "network" | "ipv6Network">,
  netConfPath = "net-conf.json",
): { subnet?: IPNet; ipv6Subnet?: IPNet } {
  const name = node.metadata.name;
  if (!node.spec?.podCIDR && !node.spec?.podCIDRs?.length) {
    throw new PodCidrError(
      `node "${name}" pod cidr not assigned: its spec.podCIDR is empty. kube-controller-manager assigns it when run with --allocate-node-cidrs=true and --cluster-cidr=${
        cfg.network ? formatNet(cfg.network) : "<the Network of " + netConfPath + ">"
      } (kubeadm: --pod-network-cidr); or set spec.podCIDR on the node`,
    );
  }
  const cidrs = nodePodCIDRs(node);
  const fam = families(cfg);
  const out: { subnet?: IPNet; ipv6Subnet?: IPNet } = {};
  if (fam.ipv4) {
    if (!cidrs.v4) {
      throw new PodCidrError(
        `node "${name}" has no IPv4 pod CIDR (spec.podCIDRs ${
          JSON.stringify(node.spec?.podCIDRs ?? [])
        }) but ${netConfPath} sets Network`,
      );
    }
    if (!netContainsNet(cfg.network!, cidrs.v4)) {
      throw new PodCidrError(
        `node "${name}" podCIDR ${formatNet(cidrs.v4)} is not inside Network ${
          formatNet(cfg.network!)
        } of ${netConfPath}: kube-controller-manager's --cluster-cidr and the Network must be the same`,
      );
    }
    out.subnet = cidrs.v4;
  }
  if (fam.ipv6) {
    if (!cidrs.v6) {
      throw new PodCidrError(
        `node "${name}" has no IPv6 pod CIDR in spec.podCIDRs but ${netConfPath} sets EnableIPv6 (dual-stack needs --cluster-cidr=<v4>,<v6>)`,
      );
    }
    if (!netContainsNet(cfg.ipv6Network!, cidrs.v6)) {
      throw new PodCidrError(
        `node "${name}" IPv6 podCIDR ${formatNet(cidrs.v6)} is not inside IPv6Network ${
          formatNet(cfg.ipv6Network!)
        } of ${netConfPath}`,
      );
    }
    out.ipv6Subnet = cidrs.v6;
  }
  if (!out.subnet && !out.ipv6Subnet) throw new PodCidrError(`${netConfPath} enables no address family`);
  return out;
}

/** Go's `json.Marshal` of a `json.RawMessage` holding `v`: "null" when absent. */
function rawJson(v: unknown): string {
  return v === undefined || v === null ? "null" : JSON.stringify(v);
}

/**
 * The annotations flannel would give the own node for `attrs`: every key it writes, with the value it
 * writes. `public-ip(v6)-overwrite` on the node replaces the public IP that is published.
 */
export function ownAnnotations(
  node: KubeNode,
  attrs: LeaseAttrs,
  keys: AnnotationKeys,
): Record<string, string> {
  const a = node.metadata.annotations ?? {};
  const bd = rawJson(attrs.BackendData), v6 = rawJson(attrs.BackendV6Data);
  const t = attrs.BackendType;
  const hasV6 = !!attrs.PublicIPv6;
  const out: Record<string, string> = { [keys.backendType]: t };
  if ((t === "vxlan" && bd !== "null") || (t === "wireguard" && bd !== "null") || t !== "vxlan") {
    out[keys.backendData] = bd;
    out[keys.publicIP] = a[keys.publicIPOverwrite] || attrs.PublicIP;
  }
  if (
    (t === "vxlan" && v6 !== "null") || (t === "wireguard" && v6 !== "null" && hasV6) ||
    ((t === "host-gw" || t === "extension") && hasV6)
  ) {
    out[keys.backendV6Data] = v6;
    out[keys.publicIPv6] = a[keys.publicIPv6Overwrite] || String(attrs.PublicIPv6 ?? "");
  }
  out[keys.subnetKubeManaged] = "true";
  return out;
}

/** The annotations of `want` whose value on `node` differs (empty: nothing to patch). */
export function annotationChanges(node: KubeNode, want: Record<string, string>): Record<string, string> {
  const a = node.metadata.annotations ?? {};
  return Object.fromEntries(Object.entries(want).filter(([k, v]) => a[k] !== v));
}

/** The public IPs the node's `node-public-ip(v6)` annotations set (flannel prefers them to --public-ip). */
export function storedPublicIPs(node: KubeNode, keys: AnnotationKeys): { ipv4?: string; ipv6?: string } {
  const a = node.metadata.annotations ?? {};
  return {
    ...(a[keys.nodePublicIP] ? { ipv4: a[keys.nodePublicIP] } : {}),
    ...(a[keys.nodePublicIPv6] ? { ipv6: a[keys.nodePublicIPv6] } : {}),
  };
}

/** flannel's `NetworkUnavailable=False` condition, as it patches it into the node's status. */
export function networkAvailableCondition(now = new Date()): Record<string, string> {
  const t = now.toISOString().replace(/\.\d+Z$/, "Z");
  return {
    type: "NetworkUnavailable",
    status: "False",
    reason: "FlannelIsUp",
    message: "Flannel is running on this node",
    lastTransitionTime: t,
    lastHeartbeatTime: t,
  };
}

/**
 * What of a Node is never parsed (json_prune.ts): server-side apply bookkeeping, the kubelet's image and
 * volume lists — the bulk of a real Node, and all of it rewritten by heartbeats.
 */
export const NODE_PRUNE: readonly (readonly string[])[] = [
  ["metadata", "managedFields"],
  ["status", "images"],
  ["status", "volumesInUse"],
  ["status", "volumesAttached"],
];

/** The annotation prefix of `keys` (what every flannel annotation name starts with). */
function prefixOf(keys: AnnotationKeys): string {
  return keys.backendData.slice(0, -"backend-data".length);
}

/**
 * `node` trimmed to what the lease store reads: name, uid, resourceVersion, creationTimestamp, the
 * annotations under flannel's prefix, the pod CIDRs, and — for the own node (`ownName`) only — the
 * NetworkUnavailable condition. A real Node is 5–20 KB (images, managedFields); this is ~0.3 KB, and a
 * watch of 5000 Nodes keeps nothing else.
 */
export function slimNode(node: KubeNode, keys: AnnotationKeys, ownName?: string): KubeNode {
  const md = node.metadata;
  const p = prefixOf(keys);
  const annotations: Record<string, string> = {};
  for (const [k, v] of Object.entries(md.annotations ?? {})) if (k.startsWith(p)) annotations[k] = v;
  const out: KubeNode = {
    metadata: {
      name: md.name,
      ...(md.uid ? { uid: md.uid } : {}),
      ...(md.resourceVersion ? { resourceVersion: md.resourceVersion } : {}),
      ...(md.creationTimestamp ? { creationTimestamp: md.creationTimestamp } : {}),
      annotations,
    },
  };
  const spec = node.spec;
  if (spec?.podCIDR || spec?.podCIDRs?.length) {
    out.spec = {
      ...(spec.podCIDR ? { podCIDR: spec.podCIDR } : {}),
      ...(spec.podCIDRs?.length ? { podCIDRs: spec.podCIDRs } : {}),
    };
  }
  if (md.name === ownName) {
    const c = node.status?.conditions?.find((x) => x.type === "NetworkUnavailable");
    if (c) {
      out.status = {
        conditions: [{
          type: c.type,
          status: c.status,
          ...(c.reason !== undefined ? { reason: c.reason } : {}),
          ...(c.message !== undefined ? { message: c.message } : {}),
        }],
      };
    }
  }
  return out;
}

/**
 * What of a (trimmed) node the lease store acts on, as one string: identity, pod CIDRs, annotations, and
 * the NetworkUnavailable condition when kept. Equal fingerprints: the event changed nothing weft routes on
 * (a kubelet heartbeat), and costs this comparison only.
 */
export function nodeFingerprint(n: KubeNode): string {
  const c = n.status?.conditions?.[0];
  return JSON.stringify([
    n.metadata.uid ?? "",
    n.metadata.creationTimestamp ?? "",
    n.spec?.podCIDR ?? "",
    n.spec?.podCIDRs ?? [],
    n.metadata.annotations ?? {},
    c ? [c.status, c.reason ?? ""] : 0,
  ]);
}
