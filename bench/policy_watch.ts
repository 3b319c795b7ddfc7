/**
 * The reference watcher of bench/policy.ts: runs inside a node namespace, lists and watches
 * NetworkPolicies through src/kube's client (as the agent does) and prints, per MODIFIED event, the
 * high-resolution wall-clock time it arrived (`performance.timeOrigin + performance.now()`, ms), so the
 * bench can put it beside the agent's nftables commit of the same change.
 *
 * Run: `deno run -A bench/policy_watch.ts <server> <token> <ca.pem>`; prints `ready` once watching.
 *
 * @module
 */
import { KubeClient } from "../src/kube/client.ts";

const [server, token, caFile] = Deno.args;
if (!server || !token || !caFile) throw new Error("usage: policy_watch.ts <server> <token> <ca.pem>");
const client = new KubeClient({ server, token, caPem: Deno.readTextFileSync(caFile), source: "bench" });
const path = "/apis/networking.k8s.io/v1/networkpolicies";
const { resourceVersion } = await client.list(path);
const watching = client.watch(path, {
  resourceVersion,
  allowWatchBookmarks: true,
  signal: new AbortController().signal,
}, (ev) => {
  if (ev.type === "MODIFIED") console.log(performance.timeOrigin + performance.now());
});
console.log("ready");
await watching;
