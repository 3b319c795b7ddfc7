/**
 * The compiled form of the network policies for one node: for each pod on the node, whether it is
 * isolated for ingress and/or egress and which traffic the policies allow. It is plain data — what
 * {@linkcode compilePolicies} returns and what the nftables renderer turns into one table — so the
 * compiler is tested without a kernel and the renderer without the Kubernetes semantics.
 *
 * @module
 */
import type { RangeSet } from "./ip_ranges.ts";

/** The transport protocols a NetworkPolicy port may name, as nftables spells them. */
export type Proto = "tcp" | "udp" | "sctp";

/** One allowed (protocol, port range) pair; no range = every port of the protocol. */
export interface PortMatch {
  /** Protocol. */
  proto: Proto;
  /** First port; absent with `last` = every port. */
  first?: number;
  /** Last port (= first for one port). */
  last?: number;
  /** The container port name this was resolved from (named ports), for display. */
  name?: string;
}

/**
 * An egress named port resolved for one destination pod: traffic to `ip` on `proto`/`port`. (An
 * egress named port means "the port of that name on the destination pod", so it differs per
 * destination.)
 */
export interface DestPort {
  /** 4 or 6. */
  family: 4 | 6;
  /** The destination pod's address. */
  ip: bigint;
  /** Protocol. */
  proto: Proto;
  /** Port number. */
  port: number;
  /** The port name, for display. */
  name: string;
}

/**
 * Addresses per family: all of them as ranges (`v4`, `v6`), and split by where they come from — the
 * selected pods' single addresses and the ipBlocks' ranges — because the table keeps the two apart: pod
 * addresses in plain hash sets (cheap to change: a new pod is one element), ranges in interval sets
 * (nft reads every element of the table's interval sets before each change).
 */
export interface PeerRanges {
  /** IPv4 ranges. */
  v4: RangeSet;
  /** IPv6 ranges. */
  v6: RangeSet;
  /** The selected pods' addresses, sorted (absent: take `v4`/`v6` as blocks). */
  pods?: { v4: bigint[]; v6: bigint[] };
  /** The ipBlocks' ranges (with their holes). */
  blocks?: { v4: RangeSet; v6: RangeSet };
}

/**
 * One rule of one policy as it applies to one pod: traffic from (ingress) or to (egress) `peers` on
 * `ports` is allowed; `destPorts` adds egress named ports resolved per destination.
 */
export interface AllowRule {
  /** `namespace/name` of the policy. */
  policy: string;
  /** Which list of the policy it comes from. */
  direction: "ingress" | "egress";
  /** Its index in `spec.ingress` / `spec.egress`. */
  index: number;
  /** The other end: `"any"` (no `from`/`to`) or these addresses (pods and ipBlocks). */
  peers: "any" | PeerRanges;
  /** `"any"` (no `ports`) or these ports (for ingress named ports: this pod's numbers). */
  ports: "any" | PortMatch[];
  /** Egress named ports, resolved per destination pod (already limited to `peers`). */
  destPorts: DestPort[];
}

/** The rules for one direction of one pod; present only when some policy isolates it that way. */
export interface DirectionRules {
  /** `namespace/name` of every policy that selects the pod for this direction (sorted). */
  policies: string[];
  /** The allowed traffic: the union of the rules (in policy order, then rule order). */
  rules: AllowRule[];
}

/** One pod on this node and what its policies allow. */
export interface PodRules {
  /** Namespace. */
  namespace: string;
  /** Pod name. */
  name: string;
  /** Its addresses (one per family), canonical text. */
  ips: string[];
  /** Present when isolated for ingress: only these rules' traffic may reach it. */
  ingress?: DirectionRules;
  /** Present when isolated for egress: only these rules' traffic may leave it. */
  egress?: DirectionRules;
}

/** Something in a policy the API accepts (or would) that weft cannot enforce as written. */
export interface PolicyProblem {
  /** `namespace/name` of the policy. */
  policy: string;
  /** Where: e.g. `spec.ingress[0].ports[1].protocol`. */
  path: string;
  /** What is wrong and what weft does instead. */
  message: string;
}

/** An address two pods claimed: the newer pod keeps it, the others take part in policy without it. */
export interface DuplicateIP {
  /** The address, canonical text. */
  ip: string;
  /** `namespace/name` of the pod that keeps it. */
  winner: string;
  /** `namespace/name` of the pods that lost it. */
  losers: string[];
}

/** A pod of this node the compiler knows (isolated or not), with the addresses policy gives it. */
export interface LocalPod {
  /** `namespace/name`. */
  pod: string;
  /** Its addresses, canonical text. */
  ips: string[];
}

/** Everything the node must enforce. */
export interface RuleSet {
  /** Pods on this node that some policy isolates (sorted by namespace, then name). */
  pods: PodRules[];
  /** Pods on this node that no policy selects (unrestricted), as `namespace/name`. */
  unrestricted: string[];
  /** What could not be enforced as written (always handled fail-closed: it allows nothing). */
  problems: PolicyProblem[];
  /**
   * Every pod of this node known with an address, isolated or not (sorted): the addresses the table
   * lets through its hold on the node's pod subnet.
   */
  local: LocalPod[];
  /** Whether any NetworkPolicy exists: only then can an unknown pod be one a policy selects. */
  policiesExist: boolean;
  /** Addresses claimed by more than one pod, resolved (newest pod wins). */
  duplicates: DuplicateIP[];
  /**
   * Registered addresses (CNI ADD told the agent) whose pod the compiler does not know yet: they stay
   * held closed.
   */
  unresolved: string[];
}
