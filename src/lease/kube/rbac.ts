/**
 * What to tell an operator when the API server refuses the agent (401, 403): which credentials, which
 * RBAC the agent needs, and — for a kubelet's credentials, which Kubernetes 1.32's node authorizer
 * limits to the node's own Node object (flannel #2267) — that the agent needs its own ServiceAccount.
 *
 * @module
 */
import { KubeApiError } from "../../kube/client.ts";

/** Everything `weft agent --kube-subnet-mgr` asks of the API (deploy/kube-weft.yml's ClusterRole). */
export const AGENT_RBAC =
  'cluster-wide "get", "list" and "watch" on "nodes" and "patch" on "nodes/status" (and "get" on "pods" ' +
  'when NODE_NAME is not set): the ClusterRole "weft" of deploy/kube-weft.yml, bound to the agent\'s ServiceAccount';

/** The user a 403 names (`User "system:node:n1" cannot list …`), if any. */
export function refusedUser(err: KubeApiError): string | undefined {
  return err.message.match(/User "([^"]+)"/)?.[1];
}

/**
 * An error message for a refused request (`what`: "list nodes", "patch nodes/n1/status"…) that says
 * what to fix; undefined when `err` is no refusal.
 */
export function refusalAdvice(err: unknown, what: string, source: string): string | undefined {
  if (!(err instanceof KubeApiError)) return undefined;
  if (err.code === 401) {
    return `the API server refuses the agent's credentials (${source}) to ${what}: ${err.message}. ` +
      `The token or client certificate is invalid, expired or revoked: renew it — the agent re-reads a ` +
      `token file, client certificate files and the kubeconfig when they change, without a restart`;
  }
  if (err.code !== 403) return undefined;
  const user = refusedUser(err);
  const node = user?.startsWith("system:node:")
    ? `. These are a kubelet's credentials (${user}): since Kubernetes 1.32 the node authorizer lets a ` +
      `node read only its own Node object, so the agent cannot see its peers with them — run it with its ` +
      `own ServiceAccount (deploy/kube-weft.yml), not the kubelet's kubeconfig`
    : "";
  return `the API server forbids the agent to ${what} (${source}): ${err.message}. ` +
    `weft --kube-subnet-mgr needs ${AGENT_RBAC}${node}`;
}
