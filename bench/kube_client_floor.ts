/**
 * The runtime floor of kube mode, for bench/kube_scale.ts: Deno with weft's Kubernetes client and lease
 * store loaded (src/kube, src/lease/kube) and nothing else. Without arguments it only loads them; with a
 * kubeconfig and a node name it also does the least any Kubernetes client does — one TLS connection, a
 * watch of that one Node (field selector) — so the TLS and HTTP code is in memory too. It prints "ready"
 * and idles; the bench reads its RSS after a few seconds, with the agent's V8 flags, in the same run.
 *
 * @module
 */
import { KubeClient } from "../src/kube/client.ts";
import { loadKubeconfig } from "../src/kube/config.ts";
import { Reflector } from "../src/kube/reflector.ts";
import "../src/lease/kube/lease_source.ts";

const [kubeconfig, node] = Deno.args;
if (kubeconfig && node) {
  const client = new KubeClient(await loadKubeconfig(kubeconfig));
  const listed = Promise.withResolvers<void>();
  const r = new Reflector(client, { path: "/api/v1/nodes", fieldSelector: `metadata.name=${node}` }, {
    onList: () => listed.resolve(),
    onEvent: () => {},
  });
  void r.run(new AbortController().signal);
  await listed.promise;
}
console.log("ready");
await new Promise((r) => setTimeout(r, 600_000));
