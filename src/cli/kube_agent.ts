/**
 * Opening the Kubernetes lease source for `weft agent --kube-subnet-mgr`: imported only in kube mode, so
 * etcd mode and CNI mode load none of src/kube.
 *
 * @module
 */
import { retry } from "../async.ts";
import {
  KUBE_BACKOFF_MS,
  KubeLeaseSource,
  type KubeSourceOptions,
  kubeTimingFromEnv,
} from "../lease/kube/lease_source.ts";
import { log, RepeatedFailure } from "../log.ts";
import type { IfaceOptions } from "../net/iface.ts";

const logger = log("agent");

/**
 * Connects (retrying while the API server cannot be reached, as a node may boot before it), then
 * applies the node's `node-public-ip(v6)` annotations to `iface` as flannel does (they win over
 * `--public-ip`).
 */
export async function openKubeForAgent(
  opts: KubeSourceOptions,
  iface: IfaceOptions,
  signal: AbortSignal,
): Promise<KubeLeaseSource> {
  const timing = { ...kubeTimingFromEnv(), ...opts };
  const [firstMs, maxMs] = timing.backoffMs ?? KUBE_BACKOFF_MS;
  const failure = new RepeatedFailure(logger, { what: "connecting to the Kubernetes API" });
  const source = await retry(
    () => KubeLeaseSource.open(timing),
    signal,
    (err, ms) => {
      failure.failed(err.message);
      logger.debug("connecting to the Kubernetes API: retrying in {ms} ms", { ms });
    },
    { firstMs, maxMs },
  );
  failure.succeeded();
  source.prefetch(); // the start-up list goes out now, beside the own Node's GET
  logger.info("kube subnet manager: node {node}, API {api}", {
    node: source.nodeName,
    api: opts.conn.source,
  });
  try {
    const stored = await source.storedPublicIPs();
    if (stored.ipv4) {
      logger.info("public IP {ip} from the node's node-public-ip annotation", { ip: stored.ipv4 });
      iface.publicIP = stored.ipv4;
    }
    if (stored.ipv6) iface.publicIPv6 = stored.ipv6;
  } catch (err) {
    // flannel logs this and goes on with the flags' public IP.
    logger.warn("reading node {node}'s public IP annotations: {error}", {
      node: source.nodeName,
      error: (err as Error).message,
    });
  }
  return source;
}
