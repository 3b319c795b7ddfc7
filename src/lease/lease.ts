/**
 * Lease types, etcd key encoding and lease JSON exactly as flannel writes them. A leaf module: it imports
 * only IP helpers.
 *
 * Key: `<prefix>/subnets/10.244.3.0-24`, dual-stack `10.244.3.0-24&fd00:10:244:3::-64`.
 * Value: `{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{…}}`
 * (BackendType, BackendData and `BackendV6Data` only when set, as Go's `omitempty` writes them).
 *
 * @module
 */
import { formatIP, formatNet, type IPNet, parseNet } from "../net/ip.ts";

/** What a node publishes in its lease (flannel's LeaseAttrs). */
export interface LeaseAttrs {
  /** The node's IPv4 underlay address. */
  PublicIP: string;
  /** The node's IPv6 underlay address, or null. */
  PublicIPv6?: string | null;
  /** `vxlan`, `host-gw`, … */
  BackendType: string;
  /** Backend-specific data, e.g. `{"VNI":1,"VtepMAC":"…"}`. */
  BackendData?: unknown;
  /** Backend data for IPv6. */
  BackendV6Data?: unknown;
}

/** The VtepMAC in a lease's BackendData or BackendV6Data (flannel's vxlan attributes), if any. */
export function vtepMac(data: unknown): string | undefined {
  return (data as { VtepMAC?: string } | null | undefined)?.VtepMAC;
}

/** A lease as read from etcd. */
export interface Lease {
  /** IPv4 subnet. */
  subnet?: IPNet;
  /** IPv6 subnet. */
  ipv6Subnet?: IPNet;
  /** Its attributes. */
  attrs: LeaseAttrs;
  /** When it expires; undefined for a reservation (no etcd lease attached). */
  expiration?: Date;
  /** The etcd lease id (decimal string), absent for reservations. */
  etcdLeaseId?: string;
  /** Key suffix, e.g. `10.244.3.0-24`. */
  key: string;
  /**
   * Creation order in the lease store, the same on every node (etcd: the key's create revision); smaller
   * is older. Of two leases claiming one subnet the older wins (see validate.ts).
   */
  createOrder?: number;
}

/** Encodes subnets as a key suffix. */
export function subnetKey(subnet?: IPNet, ipv6Subnet?: IPNet): string {
  const parts: string[] = [];
  if (subnet) parts.push(`${formatIP(subnet.ip)}-${subnet.prefix}`);
  if (ipv6Subnet) parts.push(`${formatIP(ipv6Subnet.ip)}-${ipv6Subnet.prefix}`);
  if (!parts.length) throw new Error("a lease key needs a subnet");
  return parts.join("&");
}

/** Decodes a key suffix (`10.244.3.0-24[&v6-64]`); undefined when it is not a subnet key. */
export function parseSubnetKey(key: string): { subnet?: IPNet; ipv6Subnet?: IPNet } | undefined {
  const out: { subnet?: IPNet; ipv6Subnet?: IPNet } = {};
  for (const part of key.split("&")) {
    const dash = part.lastIndexOf("-");
    if (dash < 0) return undefined;
    try {
      const n = parseNet(`${part.slice(0, dash)}/${part.slice(dash + 1)}`);
      if (n.ip.family === 4) out.subnet = n;
      else out.ipv6Subnet = n;
    } catch {
      return undefined;
    }
  }
  return out.subnet || out.ipv6Subnet ? out : undefined;
}

/**
 * Serialises attributes as flannel's Go struct does: its field order, `PublicIPv6` always (null when
 * unset), and `BackendType`, `BackendData`, `BackendV6Data` only when set (`omitempty`) — so a udp lease
 * is `{"PublicIP":"…","PublicIPv6":null}` and a host-gw lease has no BackendData.
 */
export function leaseAttrsJSON(a: LeaseAttrs): string {
  const o: Record<string, unknown> = { PublicIP: a.PublicIP, PublicIPv6: a.PublicIPv6 ?? null };
  if (a.BackendType) o.BackendType = a.BackendType;
  if (a.BackendData !== undefined && a.BackendData !== null) o.BackendData = a.BackendData;
  if (a.BackendV6Data !== undefined && a.BackendV6Data !== null) o.BackendV6Data = a.BackendV6Data;
  return JSON.stringify(o);
}

/** Parses a lease value; throws with the key on malformed JSON. */
export function parseLeaseAttrs(text: string, key = "?"): LeaseAttrs {
  let o: Record<string, unknown>;
  try {
    o = JSON.parse(text);
  } catch (err) {
    throw new Error(`lease ${key}: value is not JSON: ${(err as Error).message}`);
  }
  if (typeof o !== "object" || o === null || typeof o.PublicIP !== "string") {
    throw new Error(`lease ${key}: value has no PublicIP`);
  }
  const attrs: LeaseAttrs = {
    PublicIP: o.PublicIP,
    PublicIPv6: typeof o.PublicIPv6 === "string" ? o.PublicIPv6 : null,
    BackendType: typeof o.BackendType === "string" ? o.BackendType : "",
    BackendData: o.BackendData ?? null,
  };
  if (o.BackendV6Data !== undefined && o.BackendV6Data !== null) attrs.BackendV6Data = o.BackendV6Data;
  return attrs;
}

/** The lease's subnets as text, for logs and tables. */
export function leaseName(l: Pick<Lease, "subnet" | "ipv6Subnet">): string {
  return [l.subnet, l.ipv6Subnet].filter((n): n is IPNet => !!n).map(formatNet).join(",");
}

/**
 * One change seen by a lease watch: `added` for a new lease, `added` with `previous` for a lease whose
 * attributes changed (flannel also reports changes as additions), `removed` for a deleted or expired one.
 */
export interface LeaseEvent {
  /** `added` (new or changed) or `removed`. */
  type: "added" | "removed";
  /** The lease (for removals: the last known value). */
  lease: Lease;
  /** For a changed lease: what it was before. */
  previous?: Lease;
}
