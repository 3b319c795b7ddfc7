/**
 * `weft leases --kube-subnet-mgr`: the leases as the Kubernetes API holds them — every node with
 * flannel's annotations and a podCIDR, read with flannel's rules (the families come from
 * `--net-config-path` when it is readable, else from the podCIDRs themselves).
 *
 * @module
 */
import { type NetworkConfig, parseNetworkConfig } from "../config/net_conf.ts";
import { KubeClient } from "../kube/client.ts";
import type { KubeSourceOptions } from "../lease/kube/lease_source.ts";
import { annotationKeys, type KubeNode, nodeToLease } from "../lease/kube/node_lease.ts";
import { parseNet } from "../net/ip.ts";
import { leaseColumns, type LeaseRow } from "./lease_table.ts";

/** The leases of every flannel/weft node, as `weft leases` rows (node name set, no TTL). */
export async function kubeLeaseRows(opts: KubeSourceOptions): Promise<LeaseRow[]> {
  let cfg: Pick<NetworkConfig, "enableIPv4" | "enableIPv6" | "network" | "ipv6Network">;
  try {
    cfg = parseNetworkConfig(Deno.readTextFileSync(opts.netConfPath!));
  } catch {
    cfg = {
      enableIPv4: true,
      enableIPv6: true,
      network: parseNet("0.0.0.0/0"),
      ipv6Network: parseNet("::/0"),
    };
  }
  const keys = annotationKeys(opts.annotationPrefix);
  const client = new KubeClient(opts.conn);
  try {
    const { items } = await client.list<KubeNode>("/api/v1/nodes");
    const rows: LeaseRow[] = [];
    for (const n of items) {
      let l;
      try {
        // Without a readable net-conf.json, a node lacking one family is read for the other only.
        l = nodeToLease(n, keys, cfg) ?? undefined;
      } catch {
        try {
          l = nodeToLease(n, keys, { ...cfg, enableIPv6: false });
        } catch {
          continue;
        }
      }
      if (!l) continue;
      rows.push({
        ...leaseColumns(l),
        ttlSeconds: null,
        etcdLeaseId: null,
        status: "ok",
        node: l.node,
      });
    }
    return rows;
  } finally {
    client.close();
  }
}
