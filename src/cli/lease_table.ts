/**
 * The rows of `weft leases` (etcd and kube mode alike) and the table they print as.
 *
 * @module
 */
import { type Lease, leaseName, vtepMac } from "../lease/lease.ts";
import { compareIP, parseNet } from "../net/ip.ts";

/** One row of `weft leases --json`. */
export interface LeaseRow {
  /** etcd key suffix, e.g. `10.244.3.0-24`. */
  key: string;
  /** IPv4 subnet or null. */
  subnet: string | null;
  /** IPv6 subnet or null. */
  ipv6Subnet: string | null;
  /** PublicIP. */
  publicIP: string;
  /** PublicIPv6 or null. */
  publicIPv6: string | null;
  /** BackendType. */
  backendType: string;
  /** BackendData as stored. */
  backendData: unknown;
  /** Seconds until the lease expires; null for a reservation. */
  ttlSeconds: number | null;
  /** etcd lease id (decimal); null for a reservation. */
  etcdLeaseId: string | null;
  /**
   * `ok`, or the rule every agent refuses the entry for (validate.ts `LEASE_RULES`: `key_unparseable`,
   * `subnet_wrong_length`, `subnet_conflict`, …); an agent may refuse more for its own node (`weft status`).
   * In kube mode also why a node is no peer: `not_a_peer` (no agent has published it), `no_pod_cidr`,
   * `annotation_invalid`.
   */
  status: string;
  /** What breaks the rule, when `status` is not `ok`. */
  reason?: string;
  /** The Kubernetes node (kube mode: a lease is a node's podCIDR and lives as long as the node). */
  node?: string;
}

/** The columns a lease itself fills (no TTL, lease id or verdict). */
export function leaseColumns(l: Lease): Omit<LeaseRow, "ttlSeconds" | "etcdLeaseId" | "status"> {
  return {
    key: l.key,
    subnet: l.subnet ? leaseName({ subnet: l.subnet }) : null,
    ipv6Subnet: l.ipv6Subnet ? leaseName({ ipv6Subnet: l.ipv6Subnet }) : null,
    publicIP: l.attrs.PublicIP,
    publicIPv6: l.attrs.PublicIPv6 ?? null,
    backendType: l.attrs.BackendType,
    backendData: l.attrs.BackendData ?? null,
  };
}

/**
 * A row for an entry that holds no readable lease (`key` as stored, if any): every lease column empty,
 * the status and reason saying why.
 */
export function unreadableRow(
  key: string,
  why: { status: string; reason?: string },
  more: Partial<LeaseRow> = {},
): LeaseRow {
  return {
    key,
    subnet: null,
    ipv6Subnet: null,
    publicIP: "",
    publicIPv6: null,
    backendType: "",
    backendData: null,
    ttlSeconds: null,
    etcdLeaseId: null,
    ...why,
    ...more,
  };
}

/** Why a row is not a lease every agent uses, as the STATUS column says it. */
function statusCell(r: LeaseRow): string {
  if (r.status === "ok") return "ok";
  if (r.status === "not_a_peer" || r.status === "no_pod_cidr" || r.status === "annotation_invalid") {
    return `not a peer: ${r.status === "not_a_peer" ? "no flannel annotations" : r.status}`;
  }
  return `rejected: ${r.status}`;
}

/** A subnet's address as a sort key, or undefined. */
function netOf(text: string | null): ReturnType<typeof parseNet> | undefined {
  try {
    return text ? parseNet(text) : undefined;
  } catch {
    return undefined;
  }
}

/**
 * Rows in address order (10.244.8.0/24 before 10.244.32.0/24): IPv4 subnet, then IPv6 subnet, rows
 * without either last, by node then key.
 */
export function sortLeaseRows(rows: LeaseRow[]): LeaseRow[] {
  const cmpNet = (a: string | null, b: string | null) => {
    const x = netOf(a), y = netOf(b);
    if (!x || !y) return x ? -1 : y ? 1 : 0;
    return compareIP(x.ip, y.ip) || x.prefix - y.prefix;
  };
  return [...rows].sort((a, b) =>
    cmpNet(a.subnet, b.subnet) || cmpNet(a.ipv6Subnet, b.ipv6Subnet) ||
    (a.node ?? "").localeCompare(b.node ?? "") || a.key.localeCompare(b.key)
  );
}

/** `86399` → `23h59m`, `75` → `1m15s`. */
export function formatDuration(s: number): string {
  if (s < 0) return "expired";
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = Math.floor(s % 60);
  if (h) return `${h}h${String(m).padStart(2, "0")}m`;
  if (m) return `${m}m${String(sec).padStart(2, "0")}s`;
  return `${sec}s`;
}

/** A table cell from anybody's text: control characters shown as `?`, at most 64 characters. */
function printable(cell: string): string {
  const safe = Array.from(cell, (c) => (c.charCodeAt(0) < 32 || c === "\x7f" ? "?" : c));
  return safe.length > 64 ? `${safe.slice(0, 63).join("")}…` : safe.join("");
}

/** Formats rows as an aligned table. */
export function leaseTable(rows: LeaseRow[]): string {
  const kube = rows.some((r) => r.node);
  const table = [
    kube
      ? ["NODE", "SUBNET", "PUBLIC IP", "BACKEND", "VTEP MAC", "STATUS"]
      : ["SUBNET", "PUBLIC IP", "BACKEND", "VTEP MAC", "EXPIRES IN", "STATUS"],
  ];
  for (const r of rows) {
    const mac = vtepMac(r.backendData);
    if (kube) {
      table.push([
        r.node ?? "",
        [r.subnet, r.ipv6Subnet].filter(Boolean).join(","),
        [r.publicIP, r.publicIPv6].filter(Boolean).join(","),
        r.backendType,
        typeof mac === "string" ? mac : "",
        statusCell(r),
      ].map(printable));
      continue;
    }
    table.push([
      // A key that does not parse is shown as stored (escaped: it is anybody's text).
      r.subnet || r.ipv6Subnet ? [r.subnet, r.ipv6Subnet].filter(Boolean).join(",") : JSON.stringify(r.key),
      [r.publicIP, r.publicIPv6].filter(Boolean).join(","),
      r.backendType,
      typeof mac === "string" ? mac : "",
      r.ttlSeconds === null ? "reserved" : formatDuration(r.ttlSeconds),
      statusCell(r),
    ].map(printable));
  }
  const w = table[0]!.map((_, c) => Math.max(...table.map((r) => r[c]!.length)));
  return table.map((r) => r.map((x, c) => x.padEnd(w[c]!)).join("  ").trimEnd()).join("\n");
}
