/**
 * Node objects as a real cluster holds them, and the kubelets that keep writing them:
 *
 * - {@linkcode realisticNode}: a ~13 KB core/v1 Node — labels, kubeadm's and the CSI driver's
 *   annotations, four managedFields entries (kubeadm, kube-controller-manager, kubelet, flanneld),
 *   capacity/allocatable, the five conditions, addresses, nodeInfo and ~45 cached images (the bulk of a
 *   real Node: 5–20 KB, shared/ANCHORS.md §11) — optionally annotated by flannel/weft as a peer.
 * - {@linkcode startHeartbeats}: kubelets' status writes (`nodes/status`: every condition's
 *   lastHeartbeatTime) at a set rate across a set of nodes, as 5000 kubelets produce them. Nothing a
 *   network agent routes on changes.
 *
 * @module
 */
import { fnv1a32 } from "../../src/net/hash.ts";
import type { KubeStore } from "./kube_store.ts";

const P = "flannel.alpha.coreos.com/";

type Obj = Record<string, unknown>;

/** What makes one node a flannel/weft peer. */
export interface PeerAnnotations {
  /** The node's public IP (`public-ip`). */
  publicIP: string;
  /** VXLAN VTEP MAC (`backend-data`). */
  vtepMac: string;
}

/** Options of {@linkcode realisticNode}. */
export interface RealisticNodeOptions {
  /** Node name. */
  name: string;
  /** spec.podCIDR (absent: none assigned). */
  podCIDR?: string;
  /** The InternalIP address. */
  internalIP: string;
  /** flannel's annotations, as flanneld/weft publish them (absent: not a flannel node yet). */
  flannel?: PeerAnnotations;
  /** How many cached images status.images lists (default 45: ~13 KB in all). */
  images?: number;
}

const IMAGES = [
  "registry.k8s.io/kube-proxy",
  "registry.k8s.io/pause",
  "docker.io/flannel/flannel",
  "registry.k8s.io/coredns/coredns",
  "quay.io/prometheus/node-exporter",
  "docker.io/library/nginx",
  "docker.io/grafana/promtail",
  "registry.k8s.io/csi-secrets-store/driver",
  "docker.io/bitnami/redis",
  "quay.io/jetstack/cert-manager-controller",
];

function stamp(offsetS = 0): string {
  return new Date(Date.UTC(2026, 10, 1) + offsetS * 1000).toISOString().replace(/\.\d+Z$/, "Z");
}

function hex(n: number, len: number): string {
  let h = "";
  let x = n >>> 0;
  for (let i = 0; i < len; i++) {
    x = (Math.imul(x, 2654435761) + 0x9e3779b9) >>> 0;
    h += (x & 15).toString(16);
  }
  return h;
}

/** The images a kubelet reports (`status.images`): two names each (tag and digest), and a size. */
function images(seed: number, n: number): Obj[] {
  return Array.from({ length: n }, (_, i) => {
    const repo = IMAGES[i % IMAGES.length]!;
    const tag = `v1.${(i * 7 + seed) % 30}.${i % 10}`;
    return {
      names: [`${repo}@sha256:${hex(seed * 131 + i, 64)}`, `${repo}:${tag}`],
      sizeBytes: 10_000_000 + ((seed * 7919 + i * 104729) % 90_000_000),
    };
  });
}

/** Server-side apply bookkeeping as kubeadm, the controller-manager, the kubelet and flanneld leave it. */
function managedFields(flannel: boolean): Obj[] {
  const f = (o: Obj) => o;
  const out: Obj[] = [
    {
      manager: "kubeadm",
      operation: "Update",
      apiVersion: "v1",
      time: stamp(),
      fieldsType: "FieldsV1",
      fieldsV1: f({
        "f:metadata": {
          "f:annotations": { "f:kubeadm.alpha.kubernetes.io/cri-socket": {} },
          "f:labels": { "f:node-role.kubernetes.io/worker": {} },
        },
      }),
    },
    {
      manager: "kube-controller-manager",
      operation: "Update",
      apiVersion: "v1",
      time: stamp(20),
      fieldsType: "FieldsV1",
      fieldsV1: f({
        "f:metadata": { "f:annotations": { "f:node.alpha.kubernetes.io/ttl": {} } },
        "f:spec": { "f:podCIDR": {}, "f:podCIDRs": { ".": {}, 'v:"10.244.0.0/24"': {} } },
      }),
    },
    {
      manager: "kubelet",
      operation: "Update",
      apiVersion: "v1",
      time: stamp(40),
      fieldsType: "FieldsV1",
      subresource: "status",
      fieldsV1: f({
        "f:status": {
          "f:allocatable": { "f:cpu": {}, "f:ephemeral-storage": {}, "f:memory": {}, "f:pods": {} },
          "f:capacity": { "f:cpu": {}, "f:ephemeral-storage": {}, "f:memory": {}, "f:pods": {} },
          "f:conditions": Object.fromEntries(
            ["DiskPressure", "MemoryPressure", "PIDPressure", "Ready"].map((t) => [
              `k:{"type":"${t}"}`,
              { "f:lastHeartbeatTime": {}, "f:lastTransitionTime": {}, "f:message": {}, "f:reason": {} },
            ]),
          ),
          "f:daemonEndpoints": { "f:kubeletEndpoint": { "f:Port": {} } },
          "f:images": {},
          "f:nodeInfo": { "f:bootID": {}, "f:containerRuntimeVersion": {}, "f:kernelVersion": {} },
        },
      }),
    },
  ];
  if (flannel) {
    out.push({
      manager: "flanneld",
      operation: "Update",
      apiVersion: "v1",
      time: stamp(60),
      fieldsType: "FieldsV1",
      subresource: "status",
      fieldsV1: f({
        "f:metadata": {
          "f:annotations": Object.fromEntries(
            ["backend-data", "backend-type", "kube-subnet-manager", "public-ip"].map((
              k,
            ) => [`f:${P}${k}`, {}]),
          ),
        },
        "f:status": { "f:conditions": { 'k:{"type":"NetworkUnavailable"}': { ".": {}, "f:type": {} } } },
      }),
    });
  }
  return out;
}

function condition(type: string, status: string, reason: string, message: string, at: string): Obj {
  return { type, status, lastHeartbeatTime: at, lastTransitionTime: stamp(), reason, message };
}

/** A Node as a kubelet, kubeadm and the controller-manager leave it (~13 KB as JSON). */
export function realisticNode(o: RealisticNodeOptions): Obj {
  const seed = fnv1a32(o.name);
  const annotations: Record<string, string> = {
    "kubeadm.alpha.kubernetes.io/cri-socket": "unix:///var/run/containerd/containerd.sock",
    "node.alpha.kubernetes.io/ttl": "0",
    "volumes.kubernetes.io/controller-managed-attach-detach": "true",
    "csi.volume.kubernetes.io/nodeid": JSON.stringify({ "secrets-store.csi.k8s.io": o.name }),
  };
  if (o.flannel) {
    annotations[`${P}backend-data`] = JSON.stringify({ VNI: 1, VtepMAC: o.flannel.vtepMac });
    annotations[`${P}backend-type`] = "vxlan";
    annotations[`${P}kube-subnet-manager`] = "true";
    annotations[`${P}public-ip`] = o.flannel.publicIP;
  }
  const now = stamp(120);
  return {
    metadata: {
      name: o.name,
      labels: {
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": o.name,
        "kubernetes.io/os": "linux",
        "node-role.kubernetes.io/worker": "",
        "node.kubernetes.io/instance-type": "n2-standard-8",
        "topology.kubernetes.io/region": "europe-west1",
        "topology.kubernetes.io/zone": `europe-west1-${"bcd"[seed % 3]}`,
      },
      annotations,
      managedFields: managedFields(!!o.flannel),
    },
    spec: {
      ...(o.podCIDR ? { podCIDR: o.podCIDR, podCIDRs: [o.podCIDR] } : {}),
      providerID: `gce://weft-test/europe-west1-b/${o.name}`,
    },
    status: {
      capacity: {
        cpu: "8",
        "ephemeral-storage": "101430960Ki",
        "hugepages-2Mi": "0",
        memory: "32880272Ki",
        pods: "110",
      },
      allocatable: {
        cpu: "7910m",
        "ephemeral-storage": "93478772582",
        "hugepages-2Mi": "0",
        memory: "29094544Ki",
        pods: "110",
      },
      conditions: [
        ...(o.flannel
          ? [
            condition(
              "NetworkUnavailable",
              "False",
              "FlannelIsUp",
              "Flannel is running on this node",
              stamp(60),
            ),
          ]
          : []),
        condition(
          "MemoryPressure",
          "False",
          "KubeletHasSufficientMemory",
          "kubelet has sufficient memory available",
          now,
        ),
        condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure", now),
        condition(
          "PIDPressure",
          "False",
          "KubeletHasSufficientPID",
          "kubelet has sufficient PID available",
          now,
        ),
        condition("Ready", "True", "KubeletReady", "kubelet is posting ready status. AppArmor enabled", now),
      ],
      addresses: [
        { type: "InternalIP", address: o.internalIP },
        { type: "Hostname", address: o.name },
      ],
      daemonEndpoints: { kubeletEndpoint: { Port: 10250 } },
      nodeInfo: {
        machineID: hex(seed, 32),
        systemUUID: `${hex(seed + 1, 8)}-${hex(seed + 2, 4)}-${hex(seed + 3, 4)}-${hex(seed + 4, 4)}-${
          hex(seed + 5, 12)
        }`,
        bootID: `${hex(seed + 6, 8)}-${hex(seed + 7, 4)}-${hex(seed + 8, 4)}-${hex(seed + 9, 4)}-${
          hex(seed + 10, 12)
        }`,
        kernelVersion: "6.1.0-28-cloud-amd64",
        osImage: "Debian GNU/Linux 12 (bookworm)",
        containerRuntimeVersion: "containerd://1.7.24",
        kubeletVersion: "v1.32.0",
        kubeProxyVersion: "v1.32.0",
        operatingSystem: "linux",
        architecture: "amd64",
      },
      images: images(seed, o.images ?? 45),
    },
  };
}

/** A running heartbeat generator. */
export interface Heartbeats {
  /** Status writes made so far. */
  readonly writes: number;
  /** Stops it. */
  stop(): void;
}

/**
 * Writes `perSecond` kubelet heartbeats a second into `store`, round robin over `names`: each one a
 * status-subresource update that moves every condition's `lastHeartbeatTime` (the Node's
 * resourceVersion changes and every watch sees a MODIFIED event; nothing routed on changes). The rate
 * is kept against the clock (a late tick writes what it owes), in ticks of `tickMs`.
 */
export function startHeartbeats(
  store: KubeStore,
  names: string[],
  perSecond: number,
  tickMs = 20,
): Heartbeats {
  const Node = store.kindByName("Node");
  const t0 = performance.now();
  let writes = 0, next = 0, beat = 0;
  const timer = setInterval(() => {
    const owed = Math.floor(((performance.now() - t0) / 1000) * perSecond) - writes;
    const at = new Date(Date.UTC(2026, 10, 2) + ++beat * 1000).toISOString().replace(/\.\d+Z$/, "Z");
    for (let i = 0; i < owed; i++) {
      const name = names[next++ % names.length]!;
      let node: Obj;
      try {
        node = store.get(Node, "", name);
      } catch {
        writes++; // deleted meanwhile: its kubelet is gone
        continue;
      }
      const st = node.status as { conditions?: Obj[] };
      for (const c of st.conditions ?? []) if (c.type !== "NetworkUnavailable") c.lastHeartbeatTime = at;
      store.update(Node, "", name, node, "status");
      writes++;
    }
  }, tickMs);
  return {
    get writes() {
      return writes;
    },
    stop() {
      clearInterval(timer);
    },
  };
}
