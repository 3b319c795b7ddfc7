/**
 * Node-side setup helpers, idempotent in the containernetworking style (`ensureX`: "already there" is
 * success): the bridge with its gateway addresses, IP forwarding, and the host veth name.
 *
 * @module
 */
import { type Netlink, NetlinkError } from "../../ffi/mod.ts";
import { CNI_ERR, CniError } from "./types.ts";

/** What {@linkcode ensureBridge} reports about the bridge. */
export interface BridgeState {
  /** ifindex. */
  index: number;
  /** MAC. */
  mac: string;
  /** Stale addresses that were removed (a previous lease's gateway). */
  removed: string[];
}

function randomLocalMac(): string {
  const b = crypto.getRandomValues(new Uint8Array(6));
  b[0] = (b[0]! & 0xfe) | 0x02; // unicast, locally administered
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join(":");
}

/**
 * Ensures bridge `name` exists, is up, has `mtu` and holds exactly the gateway addresses `gateways`
 * (CIDRs, one per family). The bridge gets an explicit MAC at creation, so the kernel never changes it
 * when ports come and go (an auto-assigned bridge MAC follows the lowest port MAC, which makes pods'
 * ARP entries for the gateway go stale). Addresses of a family that differ from today's gateway are a
 * previous lease's: flannel's bridge plugin fails every ADD with "cni0 already has an IP address
 * different from …" then; weft replaces them.
 */
export function ensureBridge(nl: Netlink, name: string, mtu: number, gateways: string[]): BridgeState {
  let br = nl.linkGet(name);
  if (!br) {
    try {
      br = nl.linkAddBridge({ name, mac: randomLocalMac() });
    } catch (err) {
      // Another ADD created it at the same moment.
      if (!(err instanceof NetlinkError && err.exists)) throw err;
      br = nl.linkGet(name);
      if (!br) throw err;
    }
  }
  if (br.kind !== "bridge") {
    throw new CniError(
      CNI_ERR.INVALID_CONFIG,
      `${name} exists but is ${br.kind ? `a ${br.kind}` : "a plain"} device, not a bridge`,
    );
  }
  // The MTU is set after creation, not at it: only a changed MTU counts as "set by the user", otherwise
  // the kernel puts the bridge back to 1500 whenever its last port leaves.
  if (br.mtu !== mtu) nl.linkSetMtu(br.index, mtu);
  const removed: string[] = [];
  const have = nl.addrList(br.index).filter((a) => a.scope === 0);
  for (const gw of gateways) {
    const family = gw.includes(":") ? 6 : 4;
    for (const a of have) {
      if (a.family === family && a.cidr !== gw && nl.addrDelete(br.index, a.cidr)) removed.push(a.cidr);
    }
    if (!have.some((a) => a.cidr === gw)) {
      try {
        nl.addrAdd(br.index, gw);
      } catch (err) {
        if (!(err instanceof NetlinkError && err.exists)) throw err; // a parallel ADD added it
      }
    }
  }
  if (!br.up) nl.linkSetUp(br.index);
  return { index: br.index, mac: br.mac, removed };
}

/** FNV-1a, 64 bits: a stable, cheap hash (no crypto needed, only spread). */
function fnv1a64(text: string): bigint {
  let h = 0xcbf29ce484222325n;
  for (const b of new TextEncoder().encode(text)) {
    h ^= BigInt(b);
    h = (h * 0x100000001b3n) & 0xffffffffffffffffn;
  }
  return h;
}

/**
 * The node-side veth name of (container, ifname): `veth` + 11 hex digits of a hash (15 characters, the
 * kernel's limit). Being derived rather than random, it lets DEL with an empty CNI_NETNS and GC after a
 * killed ADD find and remove the pair without any extra state.
 */
export function hostVethName(containerId: string, ifname: string): string {
  return `veth${(fnv1a64(`${containerId}\n${ifname}`) >> 20n).toString(16).padStart(11, "0")}`;
}

/** Turns on IPv4/IPv6 forwarding in the current namespace where it is off (the bridge plugin does too). */
export function ensureForwarding(families: (4 | 6)[]): void {
  for (const f of families) {
    const path = f === 4 ? "/proc/sys/net/ipv4/ip_forward" : "/proc/sys/net/ipv6/conf/all/forwarding";
    try {
      if (Deno.readTextFileSync(path).trim() !== "1") Deno.writeTextFileSync(path, "1");
    } catch { /* a read-only /proc/sys (rootless): the agent's doctor reports it */ }
  }
}
