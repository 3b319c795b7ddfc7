/**
 * Plain data types of the netlink layer: what callers pass in and get back. No FFI here.
 *
 * Addresses are strings (`"10.244.3.0"`, `"10.244.3.0/24"`, `"fd00::1/64"`), MACs are lowercase
 * `"aa:bb:cc:dd:ee:ff"`; a link is referred to by name or by ifindex ({@linkcode LinkRef}).
 *
 * @module
 */

/** A link by name (`"flannel.1"`) or by interface index. Indexes save a lookup on hot paths. */
export type LinkRef = string | number;

/** The route protocol number weft stamps on every route it installs, so it can find and prune them. */
export const WEFT_ROUTE_PROTOCOL = 87; // 'W'; unassigned in /etc/iproute2/rt_protos

/** Main routing table (from the one table of netlink numbers). */
export { RT_TABLE_MAIN } from "./nl_consts.ts";

/** VXLAN attributes of a link. */
export interface VxlanInfo {
  /** VXLAN network identifier. */
  vni: number;
  /** Local (source) address of the tunnel, if set. */
  local?: string;
  /** UDP destination port (host order). */
  port: number;
  /** ifindex of the underlying device, if bound. */
  link?: number;
  /** Whether the device learns remote MACs from traffic. */
  learning: boolean;
  /** Group Based Policy extension on. */
  gbp: boolean;
}

/** One link as the kernel reports it. */
export interface LinkInfo {
  /** Interface index. */
  index: number;
  /** Interface name. */
  name: string;
  /** Kind from IFLA_INFO_KIND (`"vxlan"`, `"bridge"`, `"veth"`, `"dummy"`…), `""` for a plain device. */
  kind: string;
  /** MTU. */
  mtu: number;
  /** Hardware address, lowercase, `""` when none. */
  mac: string;
  /** Administratively up (IFF_UP). */
  up: boolean;
  /** Carrier/operational up (IFF_RUNNING/IFF_LOWER_UP). */
  running: boolean;
  /** ifindex of the master (bridge), 0 when none. */
  master: number;
  /** VXLAN attributes when `kind` is `"vxlan"`. */
  vxlan?: VxlanInfo;
}

/** Options to create a VXLAN device. */
export interface VxlanOptions {
  /** Device name, e.g. `"flannel.1"`. */
  name: string;
  /** VXLAN network identifier. */
  vni: number;
  /** Local tunnel address. */
  local?: string;
  /** UDP port; 0 or absent leaves the kernel default (8472). */
  port?: number;
  /** Underlying device (the external interface). */
  dev?: LinkRef;
  /** MAC learning; flannel turns it off. Default false. */
  learning?: boolean;
  /** Group Based Policy. Default false. */
  gbp?: boolean;
  /** MTU. */
  mtu?: number;
  /** Hardware address to keep stable across restarts. */
  mac?: string;
}

/** Options to create a veth pair. */
export interface VethOptions {
  /** Name of the end that stays in this handle's namespace. */
  name: string;
  /** Name of the other end. */
  peerName: string;
  /** Namespace (name under /run/netns, or a path) the peer is created in; default: this handle's. */
  peerNetns?: string;
  /** MTU of both ends. */
  mtu?: number;
  /** MAC of this end. */
  mac?: string;
  /** MAC of the peer. */
  peerMac?: string;
}

/** Options to create a bridge or dummy device. */
export interface SimpleLinkOptions {
  /** Device name. */
  name: string;
  /** MTU. */
  mtu?: number;
  /** Hardware address. */
  mac?: string;
}

/** One interface address. */
export interface AddrInfo {
  /** ifindex of the interface. */
  index: number;
  /** 4 or 6. */
  family: 4 | 6;
  /** `address/prefix`, e.g. `"10.244.3.1/24"`. */
  cidr: string;
  /** Scope (0 global, 253 link, 254 host). */
  scope: number;
}

/** A route to install, or one read back. */
export interface RouteSpec {
  /** Destination `net/prefix` (`"0.0.0.0/0"` or `"default"` for the default route). */
  dst: string;
  /** Next hop address, if any. */
  gateway?: string;
  /** Output device. */
  dev?: LinkRef;
  /** Next hop is on-link even if no route says so (flannel's vxlan routes). */
  onlink?: boolean;
  /** Route type; default unicast. */
  type?: "unicast" | "blackhole" | "unreachable" | "local";
  /** Route protocol; default {@linkcode WEFT_ROUTE_PROTOCOL}. */
  protocol?: number;
  /** Table; default main. */
  table?: number;
  /** Preferred source address. */
  src?: string;
  /** Metric (priority). */
  metric?: number;
  /** Scope; default universe (0), or link (253) for a device route without gateway. */
  scope?: number;
  /**
   * Instead of `gateway`, `dev` and `onlink`: the id of a next-hop object (ffi/nexthops.ts) that holds
   * them. The kernel then reports the route with the object's gateway and device, as if given directly.
   */
  nexthopId?: number;
}

/** A next-hop object (Linux ≥ 5.3, `ip nexthop`): one gateway on one device, shared by routes. */
export interface NexthopSpec {
  /** Its id (u32, not 0). */
  id: number;
  /** Next hop address (IPv4 or IPv6). */
  gateway: string;
  /** Output device (ifindex). */
  dev: number;
  /** Next hop is on-link even if no route says so. */
  onlink?: boolean;
  /** Protocol; default {@linkcode WEFT_ROUTE_PROTOCOL}. */
  protocol?: number;
}

/** A next-hop object as read from the kernel (groups and blackholes: no gateway, index 0). */
export interface NexthopInfo {
  /** Its id. */
  id: number;
  /** Protocol of whoever made it. */
  protocol: number;
  /** Gateway, if it has one. */
  gateway?: string;
  /** Output device, 0 when none. */
  index: number;
  /** On-link. */
  onlink: boolean;
}

/** A route as read from the kernel. */
export interface RouteInfo {
  /** Destination `net/prefix`. */
  dst: string;
  /** 4 or 6. */
  family: 4 | 6;
  /** First next hop's gateway. */
  gateway?: string;
  /** First next hop's ifindex (0 when none). */
  index: number;
  /** First next hop is onlink. */
  onlink: boolean;
  /** Route type. */
  type: "unicast" | "blackhole" | "unreachable" | "local" | "other";
  /** Route protocol. */
  protocol: number;
  /** Table. */
  table: number;
  /** Metric (priority). */
  metric: number;
  /** Scope. */
  scope: number;
}

/** The kernel's answer to a route lookup (`ip route get`). */
export interface RouteLookup {
  /** 4 or 6. */
  family: 4 | 6;
  /** Route type (`unicast`, `local` for the node's own addresses). */
  type: RouteInfo["type"];
  /** Output interface's ifindex. */
  index: number;
  /** Next hop, when not directly connected. */
  gateway?: string;
  /** Source address the kernel picks. */
  src?: string;
}

/** A permanent neighbour (ARP/NDP) entry. */
export interface NeighSpec {
  /** Device the entry is on. */
  dev: LinkRef;
  /** The neighbour's IP address. */
  ip: string;
  /** Its link-layer address. */
  mac: string;
}

/** A bridge forwarding entry (NTF_SELF) on a VXLAN device: traffic for `mac` goes to VTEP `dst`. */
export interface FdbSpec {
  /** The VXLAN device. */
  dev: LinkRef;
  /** Remote VTEP MAC. */
  mac: string;
  /** Remote VTEP underlay address. */
  dst: string;
}

/** A neighbour entry as read from the kernel. */
export interface NeighInfo {
  /** ifindex. */
  index: number;
  /** 4 or 6. */
  family: 4 | 6;
  /** IP address. */
  ip: string;
  /** Link-layer address, `""` when incomplete. */
  mac: string;
  /** NUD_* state bits (0x80 permanent). */
  state: number;
}

/** A bridge FDB entry as read from the kernel. */
export interface FdbInfo {
  /** ifindex. */
  index: number;
  /** MAC. */
  mac: string;
  /** Remote address (VXLAN), when set. */
  dst?: string;
  /** NUD_* state bits. */
  state: number;
  /** NTF_* flags (0x02 self). */
  flags: number;
}
