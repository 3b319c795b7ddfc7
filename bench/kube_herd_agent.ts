/**
 * One agent of bench/kube_herd.ts: the whole API side of `weft agent --kube-subnet-mgr` — the lease source
 * (list, watch, keeper with its annotations and NetworkUnavailable condition) with the production timing
 * (0.8 s → 30 s back-off, 60 s bookmarks, 10 s request limit) — without the datapath. It prints one JSON
 * line per fact the harness reads on stdout (`synced`, `saw <lease key>`), and logs (JSON, debug level:
 * every retry with its delay) on stderr.
 *
 * Run by the harness: `deno run -A bench/kube_herd_agent.ts <kubeconfig> <net-conf.json> <node name>`.
 *
 * @module
 */
import { loadKubeconfig } from "../src/kube/config.ts";
import { KubeLeaseSource } from "../src/lease/kube/lease_source.ts";
import { setupLogging } from "../src/log.ts";

const [kubeconfig, netConf, nodeName] = Deno.args;
await setupLogging({ level: "debug", json: true });
const say = (o: Record<string, unknown>) => console.log(JSON.stringify({ t: Date.now(), ...o }));
const src = await KubeLeaseSource.open({
  conn: await loadKubeconfig(kubeconfig!),
  nodeName: nodeName!,
  netConfPath: netConf!,
});
const cfg = await src.getNetworkConfig();
await src.listLeases();
const ip = `192.168.${100 + (Number(nodeName!.replace(/\D/g, "")) >> 8)}.${
  Number(nodeName!.replace(/\D/g, "")) & 255
}`;
const attrs = {
  PublicIP: ip,
  PublicIPv6: null,
  BackendType: "vxlan",
  BackendData: { VNI: 1, VtepMAC: "0a:00:00:00:00:01" },
};
const lease = await src.acquireLease(cfg, attrs);
const stop = new AbortController();
Deno.addSignalListener("SIGTERM", () => stop.abort());
const watching = src.watchLeases((batch) => {
  for (const e of batch) if (e.type === "added") say({ ev: "saw", key: e.lease.key });
}, {
  signal: stop.signal,
  ownKey: () => lease.key,
  onSync: () => say({ ev: "synced" }),
  onConnectivity: (up) => say({ ev: up ? "up" : "down" }),
});
const keeper = src.keepLease(cfg, attrs, lease);
const keeping = keeper.run(stop.signal);
keeper.datapathReady!();
await Promise.all([watching, keeping]);
await src.close();
