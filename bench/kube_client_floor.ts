/**
 * The runtime floor of kube mode, for bench/kube_scale.ts: Deno with weft's Kubernetes client and lease
 * store loaded (src/kube, src/lease/kube) and nothing else running. It prints "ready" and idles; the bench
 * reads its RSS after a few seconds, with the agent's V8 flags, in the same run as the agents.
 *
 * @module
 */
import "../src/kube/client.ts";
import "../src/kube/reflector.ts";
import "../src/lease/kube/lease_source.ts";

console.log("ready");
await new Promise((r) => setTimeout(r, 600_000));
