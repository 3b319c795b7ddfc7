/**
 * Lease validation: the pure rules a lease must pass before anything is programmed for it. Everything
 * here is a function of its inputs (no I/O, no clock), so every node judges the cluster-wide rules alike.
 *
 * Three layers, each reporting the first rule broken as a {@linkcode LeaseRejection} (never throwing):
 * 1. {@linkcode parseLeaseEntry}: the etcd key is a subnet key in its canonical spelling and the value is
 *    lease JSON (`key_unparseable`, `value_unparseable`);
 * 2. {@linkcode checkLease}: rules of the network config, the same on every node — each subnet inside
 *    its Network with exactly SubnetLen (IPv6 likewise), a subnet of a family the network serves, a
 *    unicast PublicIP/PublicIPv6, a unicast VtepMAC in lowercase;
 * 3. {@linkcode checkLeaseOnNode}: rules of this node — no overlap with its own subnet or with a network
 *    its addresses are connected to, a PublicIP that is none of its addresses nor a connected network's
 *    broadcast address, a VtepMAC that is not its own.
 *
 * Conflicts between leases (two keys claiming one subnet, a subnet holding another lease's PublicIP, two
 * nodes publishing one VtepMAC) need every lease at once: {@linkcode claimsOf} lists what a lease
 * claims, and the lease filter (lease_filter.ts) gives each claim to the older lease.
 *
 * Only families the network serves are judged: a dual-stack key on an IPv4-only network is judged by
 * its IPv4 half (the backends ignore the other), and an IPv6-only lease's PublicIP (flannel writes
 * `0.0.0.0` there) is not looked at.
 *
 * @module
 */
import type { NetworkConfig } from "../config/net_conf.ts";
import {
  formatIP,
  formatNet,
  type IP,
  type IPNet,
  lastIP,
  netContains,
  netContainsNet,
  netsOverlap,
  networkOf,
  tryParseIP,
} from "../net/ip.ts";
import { type Lease, type LeaseAttrs, parseLeaseAttrs, parseSubnetKey, subnetKey } from "./lease.ts";

/**
 * Every rule a lease can break, with what it means. The names are the `reason` label of
 * `weft_leases_rejected_total` and what logs, `weft leases` and `weft status` show.
 */
export const LEASE_RULES = {
  key_unparseable: "the key is not <IPv4>-<len>[&<IPv6>-<len>] in canonical spelling",
  value_unparseable: "the value is not lease JSON (an object with a string PublicIP)",
  no_subnet_for_network: "the lease has no subnet of an address family the network serves",
  subnet_outside_network: "the subnet does not lie inside the Network (IPv6Network)",
  subnet_wrong_length: "the subnet's prefix length is not SubnetLen (IPv6SubnetLen)",
  public_ip_invalid: "PublicIP (PublicIPv6) is not an address of its family in canonical spelling",
  public_ip_unspecified: "PublicIP is unspecified (0.0.0.0/8, ::)",
  public_ip_loopback: "PublicIP is a loopback address",
  public_ip_multicast: "PublicIP is a multicast address",
  public_ip_broadcast: "PublicIP is a broadcast address",
  public_ip_reserved: "PublicIP is reserved (240.0.0.0/4, IPv4-mapped) or IPv6 link-local",
  vtep_mac_invalid: "VtepMAC is not a unicast MAC written aa:bb:cc:dd:ee:ff in lowercase",
  subnet_conflict: "the subnet overlaps an older lease's subnet, or holds an older lease's PublicIP",
  public_ip_conflict: "PublicIP lies inside an older lease's subnet",
  vtep_mac_conflict: "VtepMAC is published by an older lease with another PublicIP",
  own_subnet: "the subnet overlaps this node's own subnet",
  connected_network: "the subnet overlaps a network this node is directly connected to",
  public_ip_own: "PublicIP is an address of this node",
  vtep_mac_own: "VtepMAC is this node's own VTEP MAC",
} as const;

/** The name of a rule a lease broke. */
export type LeaseRule = keyof typeof LEASE_RULES;

/** Why a lease was refused: the key, the rule broken, and the details (what was seen). */
export class LeaseRejection extends Error {
  /** Rejects lease `key` for breaking `rule`; `detail` says what was seen. */
  constructor(readonly key: string, readonly rule: LeaseRule, readonly detail: string) {
    super(`lease ${quoteForLog(key)}: ${rule}: ${detail}`);
    this.name = "LeaseRejection";
  }
}

/** What the network config says leases must look like (see {@linkcode networkRules}). */
export interface NetworkRules {
  /** The IPv4 Network, when the network serves IPv4. */
  network?: IPNet;
  /** SubnetLen. */
  subnetLen: number;
  /** The IPv6Network, when the network serves IPv6. */
  ipv6Network?: IPNet;
  /** IPv6SubnetLen. */
  ipv6SubnetLen: number;
}

/** The families a network config serves, as the agent runs them (IPv6 only with an IPv6Network). */
export function networkRules(cfg: NetworkConfig): NetworkRules {
  return {
    ...(cfg.enableIPv4 && cfg.network ? { network: cfg.network } : {}),
    subnetLen: cfg.subnetLen,
    ...(cfg.enableIPv6 && cfg.ipv6Network ? { ipv6Network: cfg.ipv6Network } : {}),
    ipv6SubnetLen: cfg.ipv6SubnetLen,
  };
}

/** One address of this node and the network it is connected to (e.g. 192.168.77.11 in /24). */
export interface LocalAddress {
  /** The address. */
  ip: IP;
  /** The network its prefix makes directly reachable. */
  net: IPNet;
  /** The interface that holds it, for messages. */
  dev?: string;
  /**
   * Held by an overlay device of weft/flannel (`flannel.1`, …): the address comes from a lease of this
   * node, not from the underlay, so it makes nothing "directly connected" (a device left by another
   * backend keeps an earlier lease's address); it is still one of this node's addresses.
   */
  overlay?: boolean;
}

/** What the node-specific rules look at (see {@linkcode checkLeaseOnNode}). */
export interface NodeFacts {
  /** This node's own subnets (its lease), if it has one. */
  ownSubnets: IPNet[];
  /** Every address of this node with its connected network. */
  addresses: LocalAddress[];
  /** This node's own VTEP MACs. */
  vtepMacs: string[];
}

/** A raw entry as a lease store hands it over. */
export interface RawLeaseEntry {
  /** Key suffix, e.g. `10.244.3.0-24`. */
  key: string;
  /** The stored value. */
  value: string;
  /** Expiry; undefined for a reservation. */
  expiration?: Date;
  /** Store lease id. */
  leaseId?: string;
  /** Creation order in the store (etcd: the key's create revision); smaller is older. */
  createOrder?: number;
}

/** A parsed entry, or why it is not one. */
export type ParsedLeaseEntry = { ok: true; lease: Lease } | { ok: false; rejection: LeaseRejection };

/** Control characters and overlong text are shown escaped and cut, so a hostile key cannot forge logs. */
export function quoteForLog(s: string, max = 120): string {
  const q = JSON.stringify(s.length > max ? s.slice(0, max) : s);
  return s.length > max ? `${q}… (${s.length} chars)` : q;
}

/**
 * Parses one store entry: the key must be a subnet key written exactly as flannel writes it (a second
 * spelling of one subnet, as `10.244.3.0-024`, would be a second key claiming it), the value lease JSON.
 */
export function parseLeaseEntry(e: RawLeaseEntry): ParsedLeaseEntry {
  const nets = parseSubnetKey(e.key);
  if (!nets) {
    return reject(e.key, "key_unparseable", `${quoteForLog(e.key)} is not a subnet key`);
  }
  const canonical = subnetKey(nets.subnet, nets.ipv6Subnet);
  if (canonical !== e.key) {
    return reject(
      e.key,
      "key_unparseable",
      `${quoteForLog(e.key)} is not canonical (flannel writes ${canonical})`,
    );
  }
  let attrs: LeaseAttrs;
  try {
    attrs = parseLeaseAttrs(e.value, e.key);
  } catch (err) {
    // The JSON error quotes the value: one escaped line, cut short.
    const why = JSON.stringify((err as Error).message.replace(/^lease [^:]*: /, "").slice(0, 160)).slice(
      1,
      -1,
    );
    return reject(e.key, "value_unparseable", `${why} (value ${quoteForLog(e.value, 80)})`);
  }
  const lease: Lease = { ...nets, attrs, key: e.key };
  if (e.expiration) lease.expiration = e.expiration;
  if (e.leaseId) lease.etcdLeaseId = e.leaseId;
  if (e.createOrder !== undefined) lease.createOrder = e.createOrder;
  return { ok: true, lease };
}

function reject(key: string, rule: LeaseRule, detail: string): { ok: false; rejection: LeaseRejection } {
  return { ok: false, rejection: new LeaseRejection(key, rule, detail) };
}

/** A family's half of a lease, when the network serves that family and the lease has a subnet in it. */
interface Half {
  family: 4 | 6;
  subnet: IPNet;
  network: IPNet;
  len: number;
  /** `PublicIP` or `PublicIPv6`, for messages. */
  ipField: string;
  publicIP: unknown;
  /** `BackendData` or `BackendV6Data`. */
  dataField: string;
  data: unknown;
}

function halves(lease: Lease, rules: NetworkRules): Half[] {
  const out: Half[] = [];
  if (rules.network && lease.subnet) {
    out.push({
      family: 4,
      subnet: lease.subnet,
      network: rules.network,
      len: rules.subnetLen,
      ipField: "PublicIP",
      publicIP: lease.attrs.PublicIP,
      dataField: "BackendData",
      data: lease.attrs.BackendData,
    });
  }
  if (rules.ipv6Network && lease.ipv6Subnet) {
    out.push({
      family: 6,
      subnet: lease.ipv6Subnet,
      network: rules.ipv6Network,
      len: rules.ipv6SubnetLen,
      ipField: "PublicIPv6",
      publicIP: lease.attrs.PublicIPv6,
      dataField: "BackendV6Data",
      data: lease.attrs.BackendV6Data,
    });
  }
  return out;
}

const cidr = (s: string, p: number): IPNet => networkOf(tryParseIP(s)!, p);
const SPECIAL_V4: [IPNet, LeaseRule][] = [
  [cidr("0.0.0.0", 8), "public_ip_unspecified"],
  [cidr("127.0.0.0", 8), "public_ip_loopback"],
  [cidr("224.0.0.0", 4), "public_ip_multicast"],
  [cidr("255.255.255.255", 32), "public_ip_broadcast"],
  [cidr("240.0.0.0", 4), "public_ip_reserved"],
];
const SPECIAL_V6: [IPNet, LeaseRule][] = [
  [cidr("::", 128), "public_ip_unspecified"],
  [cidr("::1", 128), "public_ip_loopback"],
  [cidr("ff00::", 8), "public_ip_multicast"],
  // A link-local address needs a zone no lease can carry; a mapped one is IPv4 in disguise.
  [cidr("fe80::", 10), "public_ip_reserved"],
  [cidr("::ffff:0:0", 96), "public_ip_reserved"],
];

/** The address a PublicIP field holds, or the rule it breaks. */
function checkPublicIP(h: Half, key: string): IP | LeaseRejection {
  const raw = h.publicIP;
  if (typeof raw !== "string") {
    return new LeaseRejection(key, "public_ip_invalid", `${h.ipField} is ${JSON.stringify(raw ?? null)}`);
  }
  const ip = tryParseIP(raw);
  if (!ip || ip.family !== h.family || formatIP(ip) !== raw) {
    const want = ip && ip.family === h.family ? ` (write ${formatIP(ip)})` : "";
    return new LeaseRejection(
      key,
      "public_ip_invalid",
      `${h.ipField} ${quoteForLog(raw, 60)} is not a canonical IPv${h.family} address${want}`,
    );
  }
  // IPv4 by its first octet (one conversion instead of a BigInt mask per special network).
  const special = h.family === 4
    ? specialV4(Number(ip.value))
    : SPECIAL_V6.find(([net]) => netContains(net, ip));
  if (special) {
    return new LeaseRejection(key, special[1], `${h.ipField} ${raw} is in ${formatNet(special[0])}`);
  }
  return ip;
}

/** The special IPv4 network `v` lies in, if any (SPECIAL_V4's entries). */
function specialV4(v: number): [IPNet, LeaseRule] | undefined {
  const a = v >>> 24;
  if (a === 0) return SPECIAL_V4[0];
  if (a === 127) return SPECIAL_V4[1];
  if (a >= 224 && a < 240) return SPECIAL_V4[2];
  if (v === 0xffffffff) return SPECIAL_V4[3];
  if (a >= 240) return SPECIAL_V4[4];
  return undefined;
}

const MAC = /^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/;

/** The VtepMAC a vxlan half publishes (undefined when it publishes none), or the rule it breaks. */
function checkVtepMac(h: Half, key: string, backendType: string): string | undefined | LeaseRejection {
  if (backendType !== "vxlan") return undefined;
  const data = h.data;
  if (data === null || data === undefined || typeof data !== "object" || !("VtepMAC" in data)) {
    // No MAC: the backend skips the lease's overlay entries (a DirectRouting route needs none).
    return undefined;
  }
  const mac = (data as { VtepMAC: unknown }).VtepMAC;
  if (mac === null || mac === undefined) return undefined;
  if (typeof mac !== "string" || !MAC.test(mac)) {
    return new LeaseRejection(
      key,
      "vtep_mac_invalid",
      `${h.dataField}.VtepMAC ${quoteForLog(String(mac), 60)}`,
    );
  }
  const first = parseInt(mac.slice(0, 2), 16);
  if (first & 1) {
    return new LeaseRejection(key, "vtep_mac_invalid", `${h.dataField}.VtepMAC ${mac} is a multicast MAC`);
  }
  if (mac === "00:00:00:00:00:00") {
    return new LeaseRejection(key, "vtep_mac_invalid", `${h.dataField}.VtepMAC ${mac} is all zeros`);
  }
  return mac;
}

/** A lease judged by the cluster-wide rules: why it is refused, or what it claims. */
export type Assessment = { rejection: LeaseRejection; claims?: undefined } | {
  rejection?: undefined;
  claims: LeaseClaim[];
};

/** The subnet text of a half from the lease's key (canonical: no formatting needed). */
function subnetText(h: Half, key: string): string {
  const part = key.split("&").find((p) => p.includes(":") === (h.family === 6)) ?? "";
  const dash = part.lastIndexOf("-");
  return `${part.slice(0, dash)}/${part.slice(dash + 1)}`;
}

/**
 * The cluster-wide rules, the same on every node, in one pass: the first rule `lease` breaks, or, when it
 * passes, what it claims (see {@linkcode claimsOf}).
 */
export function assessLease(lease: Lease, rules: NetworkRules): Assessment {
  const key = lease.key;
  const hs = halves(lease, rules);
  if (!hs.length) {
    const served = [rules.network && "IPv4", rules.ipv6Network && "IPv6"].filter(Boolean).join(" and ");
    return {
      rejection: new LeaseRejection(
        key,
        "no_subnet_for_network",
        `the network serves ${served || "no family"}`,
      ),
    };
  }
  for (const h of hs) {
    if (!netContainsNet(h.network, h.subnet)) {
      const detail = `${formatNet(h.subnet)} is not inside ${formatNet(h.network)}`;
      return { rejection: new LeaseRejection(key, "subnet_outside_network", detail) };
    }
    if (h.subnet.prefix !== h.len) {
      const detail = `${formatNet(h.subnet)} is a /${h.subnet.prefix}, the network hands out /${h.len}`;
      return { rejection: new LeaseRejection(key, "subnet_wrong_length", detail) };
    }
  }
  const claims: LeaseClaim[] = [];
  for (const h of hs) {
    const ip = checkPublicIP(h, key);
    if (ip instanceof LeaseRejection) return { rejection: ip };
    const mac = checkVtepMac(h, key, lease.attrs.BackendType);
    if (mac instanceof LeaseRejection) return { rejection: mac };
    const sub = subnetText(h, key);
    claims.push({ kind: "subnet", id: `${h.family} ${sub}`, what: sub });
    // A PublicIP inside the network can clash with a subnet: it claims the subnet-sized block it is in.
    if (netContains(h.network, ip)) {
      claims.push({
        kind: "address",
        id: `${h.family} ${formatNet(networkOf(ip, h.len))}`,
        what: formatIP(ip),
      });
    }
    if (typeof mac === "string") {
      claims.push({ kind: "mac", id: `mac${h.family} ${mac}`, what: mac, publicIP: String(h.publicIP) });
    }
  }
  return { claims };
}

/**
 * The cluster-wide rules, the same on every node: undefined when `lease` passes, else the first rule
 * it breaks.
 */
export function checkLease(lease: Lease, rules: NetworkRules): LeaseRejection | undefined {
  return assessLease(lease, rules).rejection;
}

/** What the node rules look up per lease, computed once per {@linkcode NodeFacts} object. */
interface NodeIndex {
  /** This node's addresses (canonical text) → the address. */
  own: Map<string, LocalAddress>;
  /** Broadcast addresses (canonical text) of connected IPv4 networks → the address holding the network. */
  broadcast: Map<string, LocalAddress>;
  macs: Set<string>;
}

const NODE_INDEX = new WeakMap<NodeFacts, NodeIndex>();

function indexNode(node: NodeFacts): NodeIndex {
  let ix = NODE_INDEX.get(node);
  if (ix) return ix;
  ix = { own: new Map(), broadcast: new Map(), macs: new Set(node.vtepMacs) };
  for (const a of node.addresses) {
    ix.own.set(formatIP(a.ip), a);
    if (a.net.ip.family === 4 && a.net.prefix < 31) ix.broadcast.set(formatIP(lastIP(a.net)), a);
  }
  NODE_INDEX.set(node, ix);
  return ix;
}

/**
 * The rules of one node: undefined when `lease` (which passed {@linkcode checkLease}) may be programmed
 * here, else the first rule it breaks.
 */
export function checkLeaseOnNode(
  lease: Lease,
  rules: NetworkRules,
  node: NodeFacts,
): LeaseRejection | undefined {
  const key = lease.key;
  const hs = halves(lease, rules);
  for (const h of hs) {
    const own = node.ownSubnets.find((o) => netsOverlap(o, h.subnet));
    if (own) {
      return new LeaseRejection(
        key,
        "own_subnet",
        `${formatNet(h.subnet)} overlaps this node's subnet ${formatNet(own)}`,
      );
    }
  }
  for (const h of hs) {
    const conn = node.addresses.find((a) => !a.overlay && netsOverlap(a.net, h.subnet));
    if (conn) {
      const via = `${formatIP(conn.ip)}${conn.dev ? ` on ${conn.dev}` : ""}`;
      const detail = `${formatNet(h.subnet)} overlaps ${formatNet(conn.net)}, connected through ${via}`;
      return new LeaseRejection(key, "connected_network", detail);
    }
  }
  const ix = indexNode(node);
  for (const h of hs) {
    // checkLease passed: PublicIP is a canonical address, so its text is the lookup key.
    const ip = h.publicIP as string;
    const mine = ix.own.get(ip);
    if (mine) {
      const on = mine.dev ? ` on ${mine.dev}` : "";
      return new LeaseRejection(key, "public_ip_own", `${h.ipField} ${ip} is this node's address${on}`);
    }
    const bcast = ix.broadcast.get(ip);
    if (bcast) {
      const detail = `${h.ipField} ${ip} is the broadcast address of ${formatNet(bcast.net)}`;
      return new LeaseRejection(key, "public_ip_broadcast", detail);
    }
    const mac = lease.attrs.BackendType === "vxlan"
      ? (h.data as { VtepMAC?: unknown } | null)?.VtepMAC
      : undefined;
    if (typeof mac === "string" && ix.macs.has(mac)) {
      return new LeaseRejection(key, "vtep_mac_own", `${h.dataField}.VtepMAC ${mac} is this node's`);
    }
  }
  return undefined;
}

/** One thing a lease claims for itself; two leases sharing a claim `id` may conflict. */
export interface LeaseClaim {
  /** What is claimed: a subnet, an address inside the network (PublicIP), or a VtepMAC. */
  kind: "subnet" | "address" | "mac";
  /**
   * Claims that may conflict share the id: a subnet and an address claim of the same subnet-sized block
   * (`4 10.244.3.0/24`), MACs per family (`mac4 aa:…`).
   */
  id: string;
  /** For messages: the subnet, the address, or the MAC. */
  what: string;
  /** For MAC claims: the PublicIP publishing it (one node's two leases may share a MAC). */
  publicIP?: string;
}

/**
 * What a lease that passed {@linkcode checkLease} claims: its subnets, its PublicIPs when they lie inside
 * the network (only there can they clash with a subnet), and its VtepMACs. Two subnets of one family
 * conflict exactly when equal (both are SubnetLen long), so the subnet-sized block is the claim id.
 */
export function claimsOf(lease: Lease, rules: NetworkRules): LeaseClaim[] {
  return assessLease(lease, rules).claims ?? [];
}

/**
 * Whether claim `mine` of a younger lease loses to claim `theirs` of an older one with the same id; the
 * rejection says which rule and names the older lease.
 */
export function claimConflict(
  key: string,
  mine: LeaseClaim,
  olderKey: string,
  theirs: LeaseClaim,
): LeaseRejection | undefined {
  if (mine.kind === "mac" || theirs.kind === "mac") {
    if (mine.kind !== theirs.kind || mine.publicIP === theirs.publicIP) return undefined;
    return new LeaseRejection(
      key,
      "vtep_mac_conflict",
      `VtepMAC ${mine.what} is published by older lease ${
        quoteForLog(olderKey)
      } (PublicIP ${theirs.publicIP})`,
    );
  }
  if (mine.kind === "address" && theirs.kind === "address") return undefined; // two nodes on one network
  if (mine.kind === "subnet") {
    const why = theirs.kind === "subnet" ? "is also the subnet of" : `holds PublicIP ${theirs.what} of`;
    return new LeaseRejection(
      key,
      "subnet_conflict",
      `${mine.what} ${why} older lease ${quoteForLog(olderKey)}`,
    );
  }
  return new LeaseRejection(
    key,
    "public_ip_conflict",
    `PublicIP ${mine.what} lies in ${theirs.what}, the subnet of older lease ${quoteForLog(olderKey)}`,
  );
}
