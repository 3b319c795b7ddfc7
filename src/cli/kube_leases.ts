/**
 * `weft leases --kube-subnet-mgr`: the leases as the Kubernetes API holds them — every node, read with
 * flannel's rules (the families come from `--net-config-path` when it is readable, else from the
 * podCIDRs themselves). A node with flannel's annotations and a podCIDR is a lease; every other node is
 * listed too, with why it is no peer (no agent has published it, no podCIDR, an annotation that does not
 * parse), and a lease every agent refuses with the rule it breaks, as in etcd mode.
 *
 * @module
 */
import { type NetworkConfig, parseNetworkConfig } from "../config/net_conf.ts";
import { KubeClient } from "../kube/client.ts";
import type { KubeSourceOptions } from "../lease/kube/lease_source.ts";
import { type AnnotationKeys, annotationKeys, type KubeNode, nodeToLease } from "../lease/kube/node_lease.ts";
import type { Lease } from "../lease/lease.ts";
import { LeaseFilter } from "../lease/lease_filter.ts";
import { networkRules } from "../lease/validate.ts";
import { formatNet, parseNet } from "../net/ip.ts";
import { leaseColumns, type LeaseRow, unreadableRow } from "./lease_table.ts";

type Families = Pick<NetworkConfig, "enableIPv4" | "enableIPv6" | "network" | "ipv6Network">;

/** Why a node that is no flannel/weft node is none (status `not_a_peer`). */
function notAPeer(n: KubeNode, keys: AnnotationKeys): LeaseRow {
  const a = n.metadata.annotations ?? {};
  const cidrs = n.spec?.podCIDRs?.length ? n.spec.podCIDRs : n.spec?.podCIDR ? [n.spec.podCIDR] : [];
  const v4 = cidrs.find((c) => !c.includes(":")) ?? null, v6 = cidrs.find((c) => c.includes(":")) ?? null;
  const why = [
    `no ${keys.subnetKubeManaged}="true" annotation: no weft agent or flanneld has published this node`,
    ...(cidrs.length ? [] : ["and it has no podCIDR"]),
  ];
  return {
    key: "",
    subnet: v4 ? formatNet(parseNet(v4)) : null,
    ipv6Subnet: v6 ? formatNet(parseNet(v6)) : null,
    publicIP: a[keys.publicIP] ?? "",
    publicIPv6: a[keys.publicIPv6] ?? null,
    backendType: a[keys.backendType] ?? "",
    backendData: null,
    ttlSeconds: null,
    etcdLeaseId: null,
    status: cidrs.length ? "not_a_peer" : "no_pod_cidr",
    reason: why.join(" "),
    node: n.metadata.name,
  };
}

/** A node whose annotations or podCIDRs do not make a lease (flannel logs it and skips the node). */
function unreadable(n: KubeNode, err: unknown): LeaseRow {
  const text = err instanceof Error ? err.message : String(err);
  const msg = text.includes(`node "${n.metadata.name}"`) ? text : `node "${n.metadata.name}": ${text}`;
  const status = /pod CIDR|podCIDR/.test(msg) ? "no_pod_cidr" : "annotation_invalid";
  return unreadableRow("", { status, reason: msg }, { node: n.metadata.name });
}

/** The network config's families, or both families of any address when it cannot be read. */
function familiesOf(netConfPath: string | undefined): { cfg: Families; full?: NetworkConfig } {
  try {
    const full = parseNetworkConfig(Deno.readTextFileSync(netConfPath!));
    return { cfg: full, full };
  } catch {
    return {
      cfg: {
        enableIPv4: true,
        enableIPv6: true,
        network: parseNet("0.0.0.0/0"),
        ipv6Network: parseNet("::/0"),
      },
    };
  }
}

/** One node's lease, read as flannel reads it (without net-conf.json, for the families it has). */
function leaseOf(n: KubeNode, keys: AnnotationKeys, cfg: Families, exact: boolean) {
  try {
    return nodeToLease(n, keys, cfg);
  } catch (err) {
    if (exact) throw err;
    // Without a readable net-conf.json, a node lacking one family is read for the other only.
    return nodeToLease(n, keys, { ...cfg, enableIPv6: false });
  }
}

/** Every node as a `weft leases` row (node name set, no TTL), peers judged by the cluster-wide rules. */
export async function kubeLeaseRows(opts: KubeSourceOptions): Promise<LeaseRow[]> {
  const { cfg, full } = familiesOf(opts.netConfPath);
  const keys = annotationKeys(opts.annotationPrefix);
  const client = new KubeClient(opts.conn);
  try {
    const { items } = await client.list<KubeNode>("/api/v1/nodes");
    const rows: LeaseRow[] = [];
    const leases: (Lease & { node: string })[] = [];
    for (const n of items) {
      try {
        const l = leaseOf(n, keys, cfg, !!full);
        if (l) leases.push(l);
        else rows.push(notAPeer(n, keys));
      } catch (err) {
        rows.push(unreadable(n, err));
      }
    }
    // The rules every agent applies to every lease (subnet inside Network and of SubnetLen, unicast
    // PublicIP, conflicts to the older node), as in etcd mode; they need the network config.
    const filter = full ? new LeaseFilter({ rules: networkRules(full), apply() {}, report() {} }) : undefined;
    // Keyed by node: two nodes with one podCIDR are a conflict to judge, not one lease.
    const byNode = (l: Lease & { node: string }) => `node/${l.node}`;
    filter?.update(
      leases.map((l) => ({ key: byNode(l), entry: { ok: true as const, lease: { ...l, key: byNode(l) } } })),
    );
    for (const l of leases) {
      const rejection = filter?.verdict(byNode(l));
      rows.push({
        ...leaseColumns(l),
        ttlSeconds: null,
        etcdLeaseId: null,
        ...(rejection ? { status: rejection.rule, reason: rejection.detail } : { status: "ok" }),
        node: l.node,
      });
    }
    return rows;
  } finally {
    client.close();
  }
}
