/**
 * The netpol matrix through the real product path: the test Kubernetes API server in the underlay
 * namespace, `weft agent --kube-subnet-mgr --network-policy` on each node, and a
 * {@linkcode KubeDriver} that writes the modelled cluster (namespaces, pods, policies) into the API and
 * waits until every node's kernel holds exactly the table the compiler derives from it.
 *
 * @module
 */
import { netnsCreate, netnsDelete, nftRun, withNetns } from "../../ffi/mod.ts";
import { compilePolicies } from "../../src/policy/compile.ts";
import { renderPolicyTable } from "../../src/policy/nft_render.ts";
import { canonicalListing, listPolicyTable } from "../../src/policy/nft_table.ts";
import { startAgent } from "./agent.ts";
import { type KubeApiServer, startKubeApiServer } from "./kube_api_server.ts";
import { uniqueNetnsName } from "./names.ts";
import { NODE_NAMES } from "./netpol_cases.ts";
import type { ControlPlane, ControlPlaneFactory, NetpolMatrix, PolicyDriver } from "./netpol_matrix.ts";
import type { ModelCluster } from "./netpol_model.ts";

/** The bearer token the agents (and benches) use with the test API server. */
export const KUBE_TOKEN = "weft-netpol-token";

/** A kube control plane with its API server exposed (for drivers and outage tests). */
export interface KubeControlPlane extends ControlPlane {
  /** The API server. */
  api: KubeApiServer;
}

/**
 * Returns a factory for a kube control plane; the API server it starts is handed to `onApi` (the
 * driver and the tests need it).
 */
export function kubeControlPlane(onApi: (api: KubeApiServer) => void): ControlPlaneFactory {
  return async (topo, backend, dir): Promise<KubeControlPlane> => {
    const api = await startKubeApiServer({
      netns: topo.underlay,
      hostname: topo.underlayIP,
      tls: true,
      tokens: { [KUBE_TOKEN]: "system:serviceaccount:kube-weft:weft" },
      bookmarkMs: 1000,
    });
    onApi(api);
    const Node = api.store.kindByName("Node");
    const kubeconfig = `${dir}/kubeconfig`;
    await api.writeKubeconfig(kubeconfig, { token: KUBE_TOKEN });
    const netConf = `${dir}/net-conf.json`;
    await Deno.writeTextFile(
      netConf,
      JSON.stringify({ Network: "10.244.0.0/16", Backend: { Type: backend } }),
    );
    topo.nodes.forEach((n, i) => {
      const cidr = `10.244.${10 + i}.0/24`;
      api.store.create(Node, "", {
        metadata: { name: NODE_NAMES[i]!, labels: { "kubernetes.io/hostname": NODE_NAMES[i]! } },
        spec: { podCIDR: cidr, podCIDRs: [cidr] },
        status: { addresses: [{ type: "InternalIP", address: n.ip }] },
      });
    });
    return {
      api,
      startAgent: (i, args) =>
        startAgent(topo.nodes[i]!, {
          kube: { kubeconfig, netConf, nodeName: NODE_NAMES[i]! },
          dir,
          // --network-policy needs --ip-masq (pod-to-pod traffic must keep the pod's address).
          args: ["--network-policy", "--ip-masq", ...args],
        }),
      close: () => api.close(),
    };
  };
}

type Obj = Record<string, unknown>;

/** Writes a modelled cluster into the API server and waits for the nodes to enforce it. */
export class KubeDriver implements PolicyDriver {
  #scratch = uniqueNetnsName("npx");

  /** @param api the API server the agents watch */
  constructor(readonly api: KubeApiServer) {
    netnsCreate(this.#scratch);
  }

  /** Makes the API hold exactly the model's namespaces, pods and policies. */
  write(cluster: ModelCluster): void {
    const s = this.api.store;
    const kinds = {
      namespaces: s.kindByName("Namespace"),
      pods: s.kindByName("Pod"),
      policies: s.kindByName("NetworkPolicy"),
    };
    const want = {
      namespaces: cluster.namespaceObjects() as unknown as Obj[],
      pods: cluster.podObjects() as unknown as Obj[],
      policies: [...cluster.policies.values()] as unknown as Obj[],
    };
    // Namespaces first (pods and policies need them), deletions last.
    for (const k of ["namespaces", "pods", "policies"] as const) {
      const d = kinds[k];
      const have = new Map(s.list(d).items.map((o) => [keyOf(o as Obj), o as Obj]));
      for (const o of want[k]) {
        const m = o.metadata as { name: string; namespace?: string; labels?: Record<string, string> };
        const cur = have.get(keyOf(o));
        have.delete(keyOf(o));
        if (!cur) s.create(d, m.namespace ?? "", o);
        else if (k === "policies") s.update(d, m.namespace ?? "", m.name, { ...o, metadata: { ...m } });
        else {
          // Labels only: a pod's spec and status are what it was created with.
          const labels = k === "namespaces"
            ? { ...m.labels, "kubernetes.io/metadata.name": m.name }
            : m.labels;
          s.update(d, m.namespace ?? "", m.name, { ...cur, metadata: { ...(cur.metadata as Obj), labels } });
        }
      }
      if (k !== "namespaces") {
        for (const o of have.values()) {
          const m = o.metadata as { name: string; namespace?: string };
          s.delete(d, m.namespace ?? "", m.name);
        }
      }
    }
  }

  /**
   * The table node `i` must hold for `cluster`, installed whole in a scratch namespace and listed in
   * comparable form (counters out, blocks and elements sorted: the agent's table is built up by
   * differences, in its own order).
   */
  expected(cluster: ModelCluster, m: NetpolMatrix, i: number): string {
    const rs = compilePolicies({
      policies: cluster.policies.values(),
      pods: cluster.podObjects(),
      namespaces: cluster.namespaceObjects(),
      nodeName: NODE_NAMES[i]!,
    });
    const podNets = [m.envs[i]!.subnet!];
    return withNetns(this.#scratch, () => {
      nftRun(renderPolicyTable(rs, { podNets }));
      return comparable(listPolicyTable());
    });
  }

  /** Waits until every node's table is the one `cluster` calls for. */
  async enforced(cluster: ModelCluster, m: NetpolMatrix, ms = 30_000): Promise<void> {
    const want = m.topo.nodes.map((_, i) => this.expected(cluster, m, i));
    const end = Date.now() + ms;
    let have: string[] = [];
    while (Date.now() < end) {
      have = m.topo.nodes.map((n) => withNetns(n.netns, () => comparable(listPolicyTable())));
      if (have.every((h, i) => h === want[i])) return;
      await new Promise((r) => setTimeout(r, 20));
    }
    const bad = have.findIndex((h, i) => h !== want[i]);
    throw new Error(
      `node ${bad} never enforced the cluster's policies:\nwant:\n${want[bad]}\nhave:\n${have[bad]}`,
    );
  }

  /** {@linkcode PolicyDriver.sync}: write, then wait for both kernels. */
  async sync(cluster: ModelCluster, m: NetpolMatrix): Promise<void> {
    this.write(cluster);
    await this.enforced(cluster, m);
  }

  /** Removes the scratch namespace. */
  close(): void {
    netnsDelete(this.#scratch);
  }
}

/** A listing as canonicalListing reads it, blocks sorted, as text (a diff of two is readable). */
function comparable(listing: string | undefined): string {
  if (listing === undefined) return "(no table)";
  return [...canonicalListing(listing)].sort(([a], [b]) => (a < b ? -1 : 1)).map(([k, v]) => `${k}\n${v}`)
    .join("\n\n");
}

function keyOf(o: Obj): string {
  const m = o.metadata as { name: string; namespace?: string };
  return `${m.namespace ?? ""}/${m.name}`;
}
