/**
 * The Kubernetes objects the policy compiler reads, as the API serves them in JSON: only the fields
 * network policy needs. networking.k8s.io/v1 `NetworkPolicy`, core/v1 `Pod` and `Namespace`.
 *
 * Every field is optional where the API may omit it (a JSON object from the wire is read as is, and
 * {@linkcode compilePolicies} copes with what is missing), so values straight from `JSON.parse` fit.
 *
 * @module
 */

/** `metadata` of any object. */
export interface ObjectMeta {
  /** Object name. */
  name: string;
  /** Namespace (absent for cluster-scoped objects such as Namespace). */
  namespace?: string | undefined;
  /** Labels. */
  labels?: Record<string, string> | undefined;
  /** The API's version of the object. */
  resourceVersion?: string | undefined;
  /** The API's unique id. */
  uid?: string | undefined;
  /** Set when the object is being deleted. */
  deletionTimestamp?: string | undefined;
  /** When the object was created (RFC 3339): of two pods claiming one address, the newer wins. */
  creationTimestamp?: string | undefined;
}

/** One `matchExpressions` entry of a label selector. */
export interface LabelSelectorRequirement {
  /** Label key. */
  key: string;
  /** `In`, `NotIn`, `Exists` or `DoesNotExist`. */
  operator: string;
  /** Values for `In`/`NotIn` (must be empty for the others). */
  values?: string[] | undefined;
}

/** metav1.LabelSelector: both parts must match (AND); an empty selector matches everything. */
export interface LabelSelector {
  /** Exact label matches. */
  matchLabels?: Record<string, string> | undefined;
  /** Set-based requirements. */
  matchExpressions?: LabelSelectorRequirement[] | undefined;
}

/** A CIDR with holes. */
export interface IPBlock {
  /** The block, e.g. `10.0.0.0/8`. */
  cidr: string;
  /** Sub-ranges of `cidr` that are excluded. */
  except?: string[] | undefined;
}

/** One `from`/`to` entry. The API requires exactly one of ipBlock or (podSelector and/or namespaceSelector). */
export interface NetworkPolicyPeer {
  /** Pods (of the policy's namespace, or of the namespaces `namespaceSelector` picks). */
  podSelector?: LabelSelector | undefined;
  /** Namespaces; with `podSelector` too, both must match (AND). */
  namespaceSelector?: LabelSelector | undefined;
  /** Addresses. */
  ipBlock?: IPBlock | undefined;
}

/** One `ports` entry. */
export interface NetworkPolicyPort {
  /** `TCP` (default), `UDP` or `SCTP`. */
  protocol?: string | undefined;
  /** A number or a container port's name; absent = every port of the protocol. */
  port?: number | string | undefined;
  /** With a numeric `port`: the last port of the range `port..endPort`. */
  endPort?: number | undefined;
}

/** One ingress rule: traffic from any of `from` to any of `ports`. */
export interface NetworkPolicyIngressRule {
  /** Sources; absent or empty = every source. */
  from?: NetworkPolicyPeer[] | undefined;
  /** Destination ports; absent or empty = every port. */
  ports?: NetworkPolicyPort[] | undefined;
}

/** One egress rule: traffic to any of `to` on any of `ports`. */
export interface NetworkPolicyEgressRule {
  /** Destinations; absent or empty = every destination. */
  to?: NetworkPolicyPeer[] | undefined;
  /** Destination ports; absent or empty = every port. */
  ports?: NetworkPolicyPort[] | undefined;
}

/** `NetworkPolicy.spec`. */
export interface NetworkPolicySpec {
  /** The pods of the policy's namespace it applies to; empty = all of them. */
  podSelector?: LabelSelector | undefined;
  /** `Ingress` and/or `Egress`; absent: Ingress, plus Egress when `egress` has rules. */
  policyTypes?: string[] | undefined;
  /** Allowed incoming traffic. */
  ingress?: NetworkPolicyIngressRule[] | undefined;
  /** Allowed outgoing traffic. */
  egress?: NetworkPolicyEgressRule[] | undefined;
}

/** networking.k8s.io/v1 NetworkPolicy. */
export interface NetworkPolicy {
  /** `"networking.k8s.io/v1"`. */
  apiVersion?: string | undefined;
  /** `"NetworkPolicy"`. */
  kind?: string | undefined;
  /** Name and namespace. */
  metadata: ObjectMeta;
  /** The policy. */
  spec: NetworkPolicySpec;
}

/** One `containers[].ports` entry. */
export interface ContainerPort {
  /** IANA_SVC_NAME: what named policy ports refer to. */
  name?: string | undefined;
  /** The port number. */
  containerPort: number;
  /** `TCP` (default), `UDP` or `SCTP`. */
  protocol?: string | undefined;
}

/** One container (only its ports matter here). */
export interface Container {
  /** Container name. */
  name: string;
  /** Declared ports. */
  ports?: ContainerPort[] | undefined;
}

/** core/v1 Pod. */
export interface Pod {
  /** `"v1"`. */
  apiVersion?: string | undefined;
  /** `"Pod"`. */
  kind?: string | undefined;
  /** Name, namespace, labels. */
  metadata: ObjectMeta;
  /** Where it runs and what it serves. */
  spec?: {
    /** The node it is scheduled on. */
    nodeName?: string | undefined;
    /** Host-network pods use the node's addresses: policies do not apply to them. */
    hostNetwork?: boolean | undefined;
    /** Containers. */
    containers?: Container[] | undefined;
    /** Init containers (restartable ones, "sidecars", may serve named ports). */
    initContainers?: Container[] | undefined;
  } | undefined;
  /** Addresses and phase. */
  status?: {
    /** `Pending`, `Running`, `Succeeded`, `Failed`, `Unknown`. */
    phase?: string | undefined;
    /** The first address. */
    podIP?: string | undefined;
    /** Every address (one per family). */
    podIPs?: { ip: string }[] | undefined;
  } | undefined;
}

/** core/v1 Namespace. */
export interface Namespace {
  /** `"v1"`. */
  apiVersion?: string | undefined;
  /** `"Namespace"`. */
  kind?: string | undefined;
  /** Name and labels. */
  metadata: ObjectMeta;
}
