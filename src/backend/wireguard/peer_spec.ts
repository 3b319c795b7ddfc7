/**
 * Which WireGuard peer a lease means for one of this node's devices — public key, endpoint and allowed
 * IPs — in each of flannel's modes. A pure function of the lease and the configuration, kept apart from
 * the backend so every mode is unit-tested.
 *
 * @module
 */
import { formatNet, type IPNet, parseIP } from "../../net/ip.ts";
import type { Lease } from "../../lease/lease.ts";
import type { WireguardMode } from "./options.ts";

/** flannel's BackendData (and BackendV6Data) of a wireguard lease. */
export interface WireguardLeaseData {
  /** Base64 public key. */
  PublicKey: string;
  /**
   * Listen port (absent in leases of flannel before v0.26.6: this node's own port is assumed, as flannel
   * did).
   */
  Port: number;
}

/** A lease's wireguard BackendData, if it has one. */
export function wireguardLeaseData(data: unknown): Partial<WireguardLeaseData> | undefined {
  if (typeof data !== "object" || data === null) return undefined;
  return data as Partial<WireguardLeaseData>;
}

/** The configuration the peer depends on. */
export interface PeerContext {
  /** Device layout. */
  mode: WireguardMode;
  /** This node's ListenPort and ListenPortV6 (assumed for peers whose lease has no Port). */
  listenPort: number;
  /** ListenPortV6. */
  listenPortV6: number;
  /** Whether the network serves IPv6 (its key then comes from BackendV6Data, as flannel reads it). */
  ipv6: boolean;
  /** This node's public IPv6 (auto mode prefers IPv6 only when both ends have a public one). */
  ownPublicIPv6?: string;
}

/** One peer on one device. */
export interface PeerSpec {
  /** Its public key (base64). */
  publicKey: string;
  /** `ip:port` or `[ip6]:port`. */
  endpoint: string;
  /** Its subnets on this device. */
  allowedIPs: IPNet[];
}

/** RFC 1918 / RFC 4193 (what flannel's auto mode treats as private). */
export function isPrivateIP(ip: string): boolean {
  const a = parseIP(ip);
  if (a.family === 6) return (a.value >> 121n) === 0x7en; // fc00::/7
  const v = Number(a.value);
  return (v >>> 24) === 10 || (v >>> 20) === 0xac1 || (v >>> 16) === 0xc0a8;
}

/** Auto mode's endpoint family (flannel's rule): IPv4, unless only IPv6 is public on both ends. */
function autoFamily(lease: Lease, ctx: PeerContext): 4 | 6 {
  const v6 = lease.attrs.PublicIPv6;
  if (!v6 || !isPrivateIP(lease.attrs.PublicIP)) return 4;
  if (!isPrivateIP(v6) && ctx.ownPublicIPv6 && !isPrivateIP(ctx.ownPublicIPv6)) return 6;
  return 4;
}

/**
 * The peer `lease` means on a device carrying IPv4 (`dev.v4`) and/or IPv6 (`dev.v6`); undefined when the
 * lease has no subnet for that device, or no key or endpoint for it (a malformed or foreign lease).
 */
export function wireguardPeerFor(
  lease: Lease,
  dev: { v4: boolean; v6: boolean },
  ctx: PeerContext,
): PeerSpec | undefined {
  const d4 = wireguardLeaseData(lease.attrs.BackendData), d6 = wireguardLeaseData(lease.attrs.BackendV6Data);
  const allowedIPs: IPNet[] = [];
  if (dev.v4 && lease.subnet) allowedIPs.push(lease.subnet);
  if (dev.v6 && lease.ipv6Subnet) allowedIPs.push(lease.ipv6Subnet);
  if (!allowedIPs.length) return undefined;
  const v6ip = lease.attrs.PublicIPv6;
  let publicKey: string | undefined, endpoint: string | undefined;
  if (ctx.mode === "separate") {
    // One device per family, each with its own port: flannel-wg ↔ flannel-wg, flannel-wg-v6 ↔ flannel-wg-v6.
    if (dev.v4) {
      publicKey = d4?.PublicKey;
      endpoint = `${lease.attrs.PublicIP}:${d4?.Port || ctx.listenPort}`;
    } else {
      publicKey = d6?.PublicKey;
      endpoint = v6ip ? `[${v6ip}]:${d6?.Port || ctx.listenPortV6}` : undefined;
    }
  } else {
    // One device per node, listening on ListenPort, which the peer's BackendData.Port names (its
    // BackendV6Data.Port carries ListenPortV6, which no device listens on in these modes).
    publicKey = (ctx.ipv6 ? d6?.PublicKey : undefined) ?? d4?.PublicKey;
    const port = d4?.Port || ctx.listenPort;
    const family = ctx.mode === "ipv4" ? 4 : ctx.mode === "ipv6" ? 6 : autoFamily(lease, ctx);
    endpoint = family === 4 ? `${lease.attrs.PublicIP}:${port}` : v6ip ? `[${v6ip}]:${port}` : undefined;
  }
  return publicKey && endpoint ? { publicKey, endpoint, allowedIPs } : undefined;
}

/** The allowed IPs of a spec as CIDR text. */
export function allowedIPsText(p: PeerSpec): string[] {
  return p.allowedIPs.map(formatNet);
}
