/**
 * `weft doctor`'s checks for `--kube-subnet-mgr` nodes: the API server answers (and accepts our
 * credentials), this node's Node object exists, its podCIDR is assigned and inside the network config's
 * Network, flannel's annotations are on it, and RBAC lets the service account do what the agent does
 * (list/watch nodes, patch nodes/status) — asked with SelfSubjectAccessReviews, or with a dry-run patch
 * where that API is missing. Imported only when the kube flags are given.
 *
 * @module
 */
import { parseNetworkConfig } from "../../config/net_conf.ts";
import { KubeApiError, KubeClient } from "../../kube/client.ts";
import type { KubeConnection } from "../../kube/config.ts";
import { annotationKeys, type KubeNode, ownSubnets } from "../../lease/kube/node_lease.ts";
import { formatNet } from "../../net/ip.ts";
import type { Finding } from "./checks.ts";

/** What the kube checks need. */
export interface KubeDoctorOptions {
  /** The API connection. */
  conn: KubeConnection;
  /** `--net-config-path`. */
  netConfPath: string;
  /** `--kube-annotation-prefix`. */
  annotationPrefix: string;
  /** Environment (NODE_NAME, POD_NAME, POD_NAMESPACE). */
  env?: (k: string) => string | undefined;
}

const RBAC_FIX =
  "bind the agent's service account to a ClusterRole with nodes: get, list, watch and nodes/status: patch (deploy/kube-weft.yml)";

async function nodeName(client: KubeClient, env: (k: string) => string | undefined): Promise<string> {
  if (env("NODE_NAME")) return env("NODE_NAME")!;
  const pod = env("POD_NAME"), ns = env("POD_NAMESPACE");
  if (!pod || !ns) throw new Error("NODE_NAME is not set (nor POD_NAME and POD_NAMESPACE)");
  const p = await client.get<{ spec?: { nodeName?: string } }>(`/api/v1/namespaces/${ns}/pods/${pod}`);
  if (!p.spec?.nodeName) throw new Error(`pod ${ns}/${pod} has no spec.nodeName`);
  return p.spec.nodeName;
}

/** Whether the credentials may `verb` the resource: SelfSubjectAccessReview, else a dry-run where possible. */
async function allowed(
  client: KubeClient,
  verb: string,
  resource: string,
  subresource: string,
  name: string,
): Promise<boolean> {
  try {
    const r = await client.request<{ status?: { allowed?: boolean } }>(
      "POST",
      "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
      {
        body: {
          apiVersion: "authorization.k8s.io/v1",
          kind: "SelfSubjectAccessReview",
          spec: { resourceAttributes: { verb, resource, subresource, name, group: "" } },
        },
      },
    );
    return !!r.status?.allowed;
  } catch (err) {
    if (!(err instanceof KubeApiError) || err.code !== 404 || verb !== "patch") throw err;
    // No SelfSubjectAccessReview API: an empty dry-run patch is refused with 403 when RBAC says no.
    try {
      await client.patch(`/api/v1/nodes/${name}/${subresource}`, {}, "strategic", {
        query: { dryRun: "All" },
      });
      return true;
    } catch (e) {
      if (e instanceof KubeApiError && e.code === 403) return false;
      throw e;
    }
  }
}

function podCidrFinding(node: KubeNode, netConfPath: string): Finding {
  try {
    const cfg = parseNetworkConfig(Deno.readTextFileSync(netConfPath));
    const s = ownSubnets(node, cfg, netConfPath);
    const nets = [s.subnet, s.ipv6Subnet].filter((n) => !!n).map((n) => formatNet(n!)).join(", ");
    return { id: "kube_podcidr", status: "ok", message: `podCIDR ${nets} inside the network config` };
  } catch (err) {
    return {
      id: "kube_podcidr",
      status: "fail",
      message: (err as Error).message,
      fix: "kube-controller-manager --allocate-node-cidrs=true --cluster-cidr=<net-conf.json's Network>",
    };
  }
}

function annotationsFinding(node: KubeNode, prefix: string): Finding {
  const keys = annotationKeys(prefix);
  const a = node.metadata.annotations ?? {};
  const missing = [keys.subnetKubeManaged, keys.backendType, keys.publicIP].filter((k) => !a[k]);
  if (!missing.length) {
    return {
      id: "kube_annotations",
      status: "ok",
      message: `${keys.backendType}=${a[keys.backendType]}, ${keys.publicIP}=${a[keys.publicIP]}`,
    };
  }
  return {
    id: "kube_annotations",
    status: "warn",
    message: `node ${node.metadata.name} lacks ${missing.join(", ")}: peers do not see it yet`,
    fix: "start weft agent --kube-subnet-mgr on this node (it writes them once it has its lease)",
  };
}

async function rbacFinding(client: KubeClient, name: string): Promise<Finding> {
  const needs: [string, string, string][] = [["list", "nodes", ""], ["watch", "nodes", ""], [
    "patch",
    "nodes",
    "status",
  ]];
  const refused: string[] = [];
  for (const [verb, res, sub] of needs) {
    if (!await allowed(client, verb, res, sub, name)) refused.push(`${verb} ${res}${sub ? `/${sub}` : ""}`);
  }
  return refused.length
    ? { id: "kube_rbac", status: "fail", message: `RBAC refuses: ${refused.join(", ")}`, fix: RBAC_FIX }
    : { id: "kube_rbac", status: "ok", message: "RBAC allows list/watch nodes and patch nodes/status" };
}

/** The findings `kube_api`, `kube_node`, `kube_podcidr`, `kube_annotations`, `kube_rbac`. */
export async function checkKube(opts: KubeDoctorOptions): Promise<Finding[]> {
  const env = opts.env ?? ((k: string) => Deno.env.get(k));
  const client = new KubeClient(opts.conn, { timeoutMs: 5000 });
  const out: Finding[] = [];
  const skipRest = (why: string) => {
    for (const id of ["kube_node", "kube_podcidr", "kube_annotations", "kube_rbac"]) {
      if (!out.some((f) => f.id === id)) out.push({ id, status: "skip", message: why });
    }
    return out;
  };
  try {
    try {
      const v = await client.get<{ gitVersion?: string }>("/version");
      // One page of one node: access is all this asks (a full list of 5000 Nodes is ~65 MB).
      await client.get("/api/v1/nodes", { query: { limit: "1" } });
      out.push({
        id: "kube_api",
        status: "ok",
        message: `${opts.conn.server} answers (${v.gitVersion ?? "?"})`,
      });
    } catch (err) {
      const denied = err instanceof KubeApiError && (err.code === 401 || err.code === 403);
      out.push({
        id: "kube_api",
        status: "fail",
        message: `${opts.conn.server} (${opts.conn.source}): ${(err as Error).message}`,
        fix: denied
          ? `the credentials of ${opts.conn.source} are refused: ${RBAC_FIX}`
          : "check --kube-api-url/--kubeconfig-file, or that the pod can reach the kubernetes Service",
      });
      return skipRest("the API server is not usable");
    }
    let name: string, node: KubeNode;
    try {
      name = await nodeName(client, env);
      node = await client.get<KubeNode>(`/api/v1/nodes/${encodeURIComponent(name)}`);
      out.push({ id: "kube_node", status: "ok", message: `node ${name} found` });
    } catch (err) {
      out.push({
        id: "kube_node",
        status: "fail",
        message: (err as Error).message,
        fix: "set NODE_NAME to this node's Kubernetes name (DaemonSet: the downward API's spec.nodeName)",
      });
      return skipRest("no node");
    }
    out.push(
      podCidrFinding(node, opts.netConfPath),
      annotationsFinding(node, opts.annotationPrefix),
      await rbacFinding(client, name),
    );
    return out;
  } catch (err) {
    out.push({ id: "kube_api", status: "fail", message: (err as Error).message });
    return skipRest("an earlier check failed");
  } finally {
    client.close();
  }
}
