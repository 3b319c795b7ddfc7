/**
 * The network-policy conformance catalog, after the upstream Kubernetes netpol e2e suite: namespaces
 * x, y, z (labelled `ns=<name>`), each with pods a, b, c (labelled `pod=<name>`, spread over two nodes),
 * each serving TCP and UDP on 80 and 81 (container ports named `serve-80-tcp`, `serve-80-udp`, …).
 * Every case is a list of steps; a step changes the cluster (policies, labels, pods) and states the
 * whole from→to table it expects afterwards, written by hand as upstream does (never derived from
 * weft's own output).
 *
 * The same catalog drives the compiler's unit test (src/policy/compile_test.ts, through a model of the
 * rules) and the kernel matrix (tests/netpol_matrix_test.ts, through real probes).
 *
 * @module
 */
import type { Namespace, NetworkPolicy, NetworkPolicySpec, Pod } from "../../src/policy/types.ts";
import { Reachability, type Target } from "./netpol_reach.ts";

/** The namespaces of the base cluster. */
export const NAMESPACES = ["x", "y", "z"];
/** The pods of the base cluster, `ns/name`, in table order. */
export const BASE_PODS = NAMESPACES.flatMap((ns) => ["a", "b", "c"].map((p) => `${ns}/${p}`));
/** Node names (node i of the topology is `node-i`). */
export const NODE_NAMES = ["node-0", "node-1"];

/** A pod of the modelled cluster. */
export interface ModelPod {
  /** Namespace. */
  ns: string;
  /** Name. */
  name: string;
  /** Labels. */
  labels: Record<string, string>;
  /** Index of its node. */
  node: number;
}

/** The base pods with their labels and nodes (pod i on node i mod 2, so most pairs cross nodes). */
export function basePods(): ModelPod[] {
  return BASE_PODS.map((key, i) => {
    const [ns, name] = key.split("/") as [string, string];
    return { ns, name, labels: { pod: name }, node: i % 2 };
  });
}

/** Base namespace labels. */
export function baseNamespaces(): Map<string, Record<string, string>> {
  return new Map(NAMESPACES.map((ns) => [ns, { ns }]));
}

/** One change to the cluster. */
export type Mutation =
  | { put: NetworkPolicy }
  | { remove: string }
  | { podLabels: string; labels: Record<string, string> }
  | { nsLabels: string; labels: Record<string, string> }
  | { addPod: string; labels: Record<string, string>; node: number };

/** What a case may ask of the cluster it runs in. */
export interface CaseCtx {
  /** A pod's address (for ipBlock cases). */
  ip(pod: string): string;
  /** The pod network, e.g. `10.244.0.0/16`. */
  network: string;
}

/** One step: changes, then the table expected once they are enforced. */
export interface CaseStep {
  /** What the step does. */
  title: string;
  /** Changes to make (in order) before probing. */
  apply: Mutation[];
  /** The expected table over the pods that exist after the step. */
  expect(pods: string[]): Reachability;
}

/** One conformance case. */
export interface NetpolCase {
  /** Name, as a sentence. */
  name: string;
  /** Its steps (each case starts from the base cluster without policies). */
  steps(ctx: CaseCtx): CaseStep[];
  /** Probe continuously while the steps apply: every result must be the old or the new table's. */
  whileTrafficFlows?: boolean;
}

/** A NetworkPolicy object. */
export function policy(ns: string, name: string, spec: NetworkPolicySpec): NetworkPolicy {
  return {
    apiVersion: "networking.k8s.io/v1",
    kind: "NetworkPolicy",
    metadata: { namespace: ns, name },
    spec,
  };
}

/** The Pod object for a modelled pod (containers serve TCP and UDP on 80 and 81, with port names). */
export function podObject(p: ModelPod, ip: string): Pod {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { namespace: p.ns, name: p.name, labels: { ...p.labels } },
    spec: {
      nodeName: NODE_NAMES[p.node]!,
      containers: [80, 81].map((port) => ({
        name: `cont-${port}`,
        ports: (["TCP", "UDP"] as const).map((protocol) => ({
          name: `serve-${port}-${protocol.toLowerCase()}`,
          containerPort: port,
          protocol,
        })),
      })),
    },
    status: { phase: "Running", podIP: ip, podIPs: [{ ip }] },
  };
}

/** The Namespace object. */
export function namespaceObject(name: string, labels: Record<string, string>): Namespace {
  return { apiVersion: "v1", kind: "Namespace", metadata: { name, labels: { ...labels } } };
}

const TCP80: Target = { proto: "tcp", port: 80 };
const TCP81: Target = { proto: "tcp", port: 81 };
const UDP80: Target = { proto: "udp", port: 80 };
const UDP81: Target = { proto: "udp", port: 81 };

const all = (pods: string[]) => new Reachability(pods, true);
const one = (title: string, apply: Mutation[], expect: (pods: string[]) => Reachability): CaseStep[] => [
  { title, apply, expect },
];
const podA = { matchLabels: { pod: "a" } };

/** The catalog. */
export const CASES: NetpolCase[] = [
  {
    name: "default-deny ingress isolates every pod of the namespace",
    steps: () =>
      one(
        "deny all ingress in x",
        [{ put: policy("x", "deny-ingress", { podSelector: {}, policyTypes: ["Ingress"] }) }],
        (p) => all(p).expect("*", "x/*", false),
      ),
  },
  {
    name: "default-deny egress stops every pod of the namespace from sending",
    steps: () =>
      one(
        "deny all egress in x",
        [{ put: policy("x", "deny-egress", { podSelector: {}, policyTypes: ["Egress"] }) }],
        (p) => all(p).expect("x/*", "*", false),
      ),
  },
  {
    name: "default-deny all (ingress and egress) isolates the namespace both ways",
    steps: () =>
      one(
        "deny all in x",
        [{ put: policy("x", "deny-all", { podSelector: {}, policyTypes: ["Ingress", "Egress"] }) }],
        (p) => all(p).expect("*", "x/*", false).expect("x/*", "*", false),
      ),
  },
  {
    name: "an allow-all policy beside a default-deny allows everything (policies are a union)",
    steps: () =>
      one("deny all ingress in x, then allow all ingress", [
        { put: policy("x", "deny-ingress", { podSelector: {}, policyTypes: ["Ingress"] }) },
        { put: policy("x", "allow-all", { podSelector: {}, ingress: [{}] }) },
      ], all),
  },
  {
    name: "allow from the same namespace only",
    steps: () =>
      one(
        "x accepts from x",
        [{ put: policy("x", "same-ns", { podSelector: {}, ingress: [{ from: [{ podSelector: {} }] }] }) }],
        (p) => all(p).expect("*", "x/*", false).expect("x/*", "x/*", true),
      ),
  },
  {
    name: "podSelector: x/a accepts only from pods labelled pod=b of its namespace",
    steps: () =>
      one("x/a from pod=b", [{
        put: policy("x", "from-b", {
          podSelector: podA,
          ingress: [{ from: [{ podSelector: { matchLabels: { pod: "b" } } }] }],
        }),
      }], (p) => all(p).expect("*", "x/a", false).expect("x/b", "x/a", true)),
  },
  {
    name: "podSelector with matchExpressions (In on the target, NotIn on the peer)",
    steps: () =>
      one("x/a from pod notin (b)", [{
        put: policy("x", "expr", {
          podSelector: { matchExpressions: [{ key: "pod", operator: "In", values: ["a"] }] },
          ingress: [{
            from: [{ podSelector: { matchExpressions: [{ key: "pod", operator: "NotIn", values: ["b"] }] } }],
          }],
        }),
      }], (p) => all(p).expect("*", "x/a", false).expect("x/c", "x/a", true)),
  },
  {
    name: "namespaceSelector: x/a accepts only from namespace y",
    steps: () =>
      one("x/a from ns=y", [{
        put: policy("x", "from-y", {
          podSelector: podA,
          ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: "y" } } }] }],
        }),
      }], (p) => all(p).expect("*", "x/a", false).expect("y/*", "x/a", true)),
  },
  {
    name: "namespaceSelector with matchExpressions (NotIn)",
    steps: () =>
      one("x/a from ns notin (x)", [{
        put: policy("x", "not-x", {
          podSelector: podA,
          ingress: [{
            from: [{
              namespaceSelector: { matchExpressions: [{ key: "ns", operator: "NotIn", values: ["x"] }] },
            }],
          }],
        }),
      }], (p) => all(p).expect("*", "x/a", false).expect(["y/*", "z/*"], "x/a", true)),
  },
  {
    name: "namespaceSelector on the default kubernetes.io/metadata.name label",
    steps: () =>
      one("x/a from metadata.name=z", [{
        put: policy("x", "from-z", {
          podSelector: podA,
          ingress: [{
            from: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "z" } } }],
          }],
        }),
      }], (p) => all(p).expect("*", "x/a", false).expect("z/*", "x/a", true)),
  },
  {
    name: "podSelector and namespaceSelector in one peer are ANDed",
    steps: () =>
      one("x/a from (ns=y AND pod=b)", [{
        put: policy("x", "and", {
          podSelector: podA,
          ingress: [{
            from: [{
              namespaceSelector: { matchLabels: { ns: "y" } },
              podSelector: { matchLabels: { pod: "b" } },
            }],
          }],
        }),
      }], (p) => all(p).expect("*", "x/a", false).expect("y/b", "x/a", true)),
  },
  {
    name: "podSelector and namespaceSelector as two peers are ORed",
    steps: () =>
      one("x/a from ns=y OR pod=b", [{
        put: policy("x", "or", {
          podSelector: podA,
          ingress: [{
            from: [
              { namespaceSelector: { matchLabels: { ns: "y" } } },
              { podSelector: { matchLabels: { pod: "b" } } },
            ],
          }],
        }),
      }], (p) => all(p).expect("*", "x/a", false).expect(["y/*", "x/b"], "x/a", true)),
  },
  {
    name: "ipBlock with except (ingress): the whole pod network but one pod",
    steps: (c) =>
      one("x/a from the network except y/a", [{
        put: policy("x", "cidr-in", {
          podSelector: podA,
          ingress: [{ from: [{ ipBlock: { cidr: c.network, except: [`${c.ip("y/a")}/32`] } }] }],
        }),
      }], (p) => all(p).expect("y/a", "x/a", false)),
  },
  {
    name: "ipBlock with except (egress): x/a reaches the pod network but one pod",
    steps: (c) =>
      one("x/a to the network except x/b", [{
        put: policy("x", "cidr-out", {
          podSelector: podA,
          policyTypes: ["Egress"],
          egress: [{ to: [{ ipBlock: { cidr: c.network, except: [`${c.ip("x/b")}/32`] } }] }],
        }),
      }], (p) => all(p).expect("x/a", "x/b", false)),
  },
  {
    name: "an address in one policy's except and another policy's cidr is allowed",
    steps: (c) =>
      one("x/a from the network except z/c, and from z/c", [
        {
          put: policy("x", "except-zc", {
            podSelector: podA,
            ingress: [{ from: [{ ipBlock: { cidr: c.network, except: [`${c.ip("z/c")}/32`] } }] }],
          }),
        },
        {
          put: policy("x", "only-zc", {
            podSelector: podA,
            ingress: [{ from: [{ ipBlock: { cidr: `${c.ip("z/c")}/32` } }] }],
          }),
        },
      ], all),
  },
  {
    name: "named port (ingress): only the pod's port named serve-81-tcp",
    steps: () =>
      one("x/a on serve-81-tcp", [{
        put: policy("x", "named", { podSelector: podA, ingress: [{ ports: [{ port: "serve-81-tcp" }] }] }),
      }], (p) => all(p).expect("*", "x/a", false).expect("*", "x/a", true, TCP81)),
  },
  {
    name: "named port with protocol UDP",
    steps: () =>
      one("x/a on UDP serve-80-udp", [{
        put: policy("x", "named-udp", {
          podSelector: podA,
          ingress: [{ ports: [{ protocol: "UDP", port: "serve-80-udp" }] }],
        }),
      }], (p) => all(p).expect("*", "x/a", false).expect("*", "x/a", true, UDP80)),
  },
  {
    name: "named port from a namespace",
    steps: () =>
      one("x/a from ns=y on serve-80-tcp", [{
        put: policy("x", "named-ns", {
          podSelector: podA,
          ingress: [{
            from: [{ namespaceSelector: { matchLabels: { ns: "y" } } }],
            ports: [{ port: "serve-80-tcp" }],
          }],
        }),
      }], (p) => all(p).expect("*", "x/a", false).expect("y/*", "x/a", true, TCP80)),
  },
  {
    name: "named port (egress) resolves on the destination pod",
    steps: () =>
      one("x/a to serve-80-tcp", [{
        put: policy("x", "named-out", {
          podSelector: podA,
          policyTypes: ["Egress"],
          egress: [{ ports: [{ port: "serve-80-tcp" }] }],
        }),
      }], (p) => all(p).expect("x/a", "*", false).expect("x/a", "*", true, TCP80)),
  },
  {
    name: "endPort ranges: TCP 75-80 and UDP 81-81",
    steps: () =>
      one("x/a on tcp 75-80, udp 81", [{
        put: policy("x", "ranges", {
          podSelector: podA,
          ingress: [{
            ports: [{ protocol: "TCP", port: 75, endPort: 80 }, { protocol: "UDP", port: 81, endPort: 81 }],
          }],
        }),
      }], (p) => all(p).expect("*", "x/a", false).expect("*", "x/a", true, [TCP80, UDP81])),
  },
  {
    name: "egress to a port only (no `to`): x/a sends only to UDP 81",
    steps: () =>
      one("x/a to udp 81", [{
        put: policy("x", "port-only", {
          podSelector: podA,
          policyTypes: ["Egress"],
          egress: [{ ports: [{ protocol: "UDP", port: 81 }] }],
        }),
      }], (p) => all(p).expect("x/a", "*", false).expect("x/a", "*", true, UDP81)),
  },
  {
    name: "a protocol without a port allows every port of that protocol only",
    steps: () =>
      one("x/a on any UDP port", [{
        put: policy("x", "udp-any", { podSelector: podA, ingress: [{ ports: [{ protocol: "UDP" }] }] }),
      }], (p) => all(p).expect("*", "x/a", false).expect("*", "x/a", true, [UDP80, UDP81])),
  },
  {
    name: "a policy allowing only SCTP isolates the pod for TCP and UDP",
    steps: () =>
      one("x/a on sctp 80", [{
        put: policy("x", "sctp", {
          podSelector: podA,
          ingress: [{ ports: [{ protocol: "SCTP", port: 80 }] }],
        }),
      }], (p) => all(p).expect("*", "x/a", false)),
  },
  {
    name: "an egress deny on the client wins over an allow on the server",
    steps: () =>
      one("x/a denies egress; y allows all ingress", [
        { put: policy("x", "deny-a-out", { podSelector: podA, policyTypes: ["Egress"] }) },
        { put: policy("y", "allow-all", { podSelector: {}, ingress: [{}] }) },
      ], (p) => all(p).expect("x/a", "*", false)),
  },
  {
    name: "ingress and egress are controlled independently",
    steps: () =>
      one("x/a denies ingress, x/b denies egress", [
        { put: policy("x", "a-in", { podSelector: podA, policyTypes: ["Ingress"] }) },
        {
          put: policy("x", "b-out", { podSelector: { matchLabels: { pod: "b" } }, policyTypes: ["Egress"] }),
        },
      ], (p) => all(p).expect("*", "x/a", false).expect("x/b", "*", false)),
  },
  {
    name: "stacked policies with overlapping podSelectors add up",
    steps: () =>
      one("x/a from y on tcp 80; all of x from y on tcp 81", [
        {
          put: policy("x", "a-80", {
            podSelector: podA,
            ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: "y" } } }], ports: [{ port: 80 }] }],
          }),
        },
        {
          put: policy("x", "all-81", {
            podSelector: {},
            ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: "y" } } }], ports: [{ port: 81 }] }],
          }),
        },
      ], (p) =>
        all(p).expect("*", "x/*", false).expect("y/*", "x/*", true, TCP81).expect("y/*", "x/a", true, TCP80)),
  },
  {
    name: "an egress allow-all beside an egress deny allows everything",
    steps: () =>
      one("x/a denies egress, then allows all egress", [
        { put: policy("x", "deny-out", { podSelector: podA, policyTypes: ["Egress"] }) },
        { put: policy("x", "allow-out", { podSelector: podA, policyTypes: ["Egress"], egress: [{}] }) },
      ], all),
  },
  {
    name: "a policy added, updated and deleted while traffic flows",
    whileTrafficFlows: true,
    steps: () => [
      { title: "no policy", apply: [], expect: all },
      {
        title: "deny all ingress in x",
        apply: [{ put: policy("x", "p", { podSelector: {}, policyTypes: ["Ingress"] }) }],
        expect: (p) => all(p).expect("*", "x/*", false),
      },
      {
        title: "update: x accepts from ns=y",
        apply: [{
          put: policy("x", "p", {
            podSelector: {},
            ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns: "y" } } }] }],
          }),
        }],
        expect: (p) => all(p).expect("*", "x/*", false).expect("y/*", "x/*", true),
      },
      { title: "delete the policy", apply: [{ remove: "x/p" }], expect: all },
    ],
  },
  {
    name: "a peer pod's labels changed: it gains access",
    steps: () => [
      {
        title: "x/a from pod=b",
        apply: [{
          put: policy("x", "from-b", {
            podSelector: podA,
            ingress: [{ from: [{ podSelector: { matchLabels: { pod: "b" } } }] }],
          }),
        }],
        expect: (p) => all(p).expect("*", "x/a", false).expect("x/b", "x/a", true),
      },
      {
        title: "x/c relabelled pod=b",
        apply: [{ podLabels: "x/c", labels: { pod: "b" } }],
        expect: (p) => all(p).expect("*", "x/a", false).expect(["x/b", "x/c"], "x/a", true),
      },
    ],
  },
  {
    name: "a selected pod's labels changed: isolation moves with the label",
    steps: () => [
      {
        title: "deny ingress to pod=a",
        apply: [{ put: policy("x", "deny-a", { podSelector: podA, policyTypes: ["Ingress"] }) }],
        expect: (p) => all(p).expect("*", "x/a", false),
      },
      {
        title: "x/a relabelled pod=a-old, x/b relabelled pod=a",
        apply: [
          { podLabels: "x/a", labels: { pod: "a-old" } },
          { podLabels: "x/b", labels: { pod: "a" } },
        ],
        expect: (p) => all(p).expect("*", "x/b", false),
      },
    ],
  },
  {
    name: "a namespace's labels changed: its pods gain access",
    steps: () => [
      {
        title: "x/a from namespaces with ns2=updated (none yet)",
        apply: [{
          put: policy("x", "from-updated", {
            podSelector: podA,
            ingress: [{ from: [{ namespaceSelector: { matchLabels: { ns2: "updated" } } }] }],
          }),
        }],
        expect: (p) => all(p).expect("*", "x/a", false),
      },
      {
        title: "namespace y labelled ns2=updated",
        apply: [{ nsLabels: "y", labels: { ns: "y", ns2: "updated" } }],
        expect: (p) => all(p).expect("*", "x/a", false).expect("y/*", "x/a", true),
      },
    ],
  },
  {
    name: "a pod created after the policy is selected and matched as a peer",
    steps: () => [
      {
        title: "deny ingress in z; x/a from pod=d of any namespace",
        apply: [
          { put: policy("z", "deny", { podSelector: {}, policyTypes: ["Ingress"] }) },
          {
            put: policy("x", "from-d", {
              podSelector: podA,
              ingress: [{ from: [{ namespaceSelector: {}, podSelector: { matchLabels: { pod: "d" } } }] }],
            }),
          },
        ],
        expect: (p) => all(p).expect("*", "z/*", false).expect("*", "x/a", false),
      },
      {
        title: "pods y/d (node 1) and z/d (node 0) created",
        apply: [
          { addPod: "y/d", labels: { pod: "d" }, node: 1 },
          { addPod: "z/d", labels: { pod: "d" }, node: 0 },
        ],
        expect: (p) =>
          all(p).expect("*", "z/*", false).expect("*", "x/a", false).expect(["y/d", "z/d"], "x/a", true),
      },
    ],
  },
];
