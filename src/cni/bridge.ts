/**
 * Node-side setup helpers, idempotent in the containernetworking style (`ensureX`: "already there" is
 * success): the bridge with its gateway addresses, IP forwarding, and the host veth name.
 *
 * @module
 */
import { NetlinkError, type Rtnl } from "../../ffi/rtnl/mod.ts";
import { fnv1a64 } from "../net/hash.ts";
import { randomMac } from "../net/mac.ts";
import { CNI_ERR, CniError } from "./types.ts";

/** What {@linkcode ensureBridge} reports about the bridge. */
export interface BridgeState {
  /** ifindex. */
  index: number;
  /** MAC. */
  mac: string;
  /** Addresses of a previous subnet that were replaced (only ever on a bridge without ports). */
  replaced: string[];
}

/**
 * Ensures bridge `name` exists, is up, has `mtu` and holds the gateway addresses `gateways` (CIDRs, one
 * per family). The bridge gets an explicit MAC at creation, so the kernel never changes it when ports
 * come and go (an auto-assigned bridge MAC follows the lowest port MAC, which makes pods' ARP entries
 * for the gateway go stale).
 *
 * A bridge that holds another address of a family (a previous subnet) is never re-addressed under
 * running pods — that would cut every one of them off its gateway. With ports attached the ADD fails
 * with code 11 saying why (it clears once those pods are gone); a bridge without ports is safe to
 * re-address, and is (flannel's bridge plugin fails every ADD with "cni0 already has an IP address
 * different from …" instead, until someone deletes cni0 by hand).
 */
export function ensureBridge(nl: Rtnl, name: string, mtu: number, gateways: string[]): BridgeState {
  let br = nl.linkGet(name);
  if (!br) {
    try {
      br = nl.linkAddBridge({ name, mac: randomMac() });
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
  const replaced: string[] = [];
  const have = nl.addrList(br.index).filter((a) => a.scope === 0);
  for (const gw of gateways) {
    if (have.some((a) => a.cidr === gw)) continue;
    const family = gw.includes(":") ? 6 : 4;
    const stale = have.filter((a) => a.family === family).map((a) => a.cidr);
    if (stale.length) {
      const ports = nl.linkPorts(br.index);
      if (ports.length) {
        throw new CniError(
          CNI_ERR.TRY_AGAIN_LATER,
          `${name} holds ${stale.join(", ")} but subnet.env says the gateway is ${gw}: the node's subnet ` +
            `changed while ${ports.length} pod(s) still use the old one; weft does not re-address ${name} ` +
            `under running pods (ADD succeeds once they are deleted, or after the node is drained)`,
        );
      }
      for (const cidr of stale) if (nl.addrDelete(br.index, cidr)) replaced.push(cidr);
    }
    try {
      // No DAD for IPv6: the gateway is the node's own, from its lease, and a tentative gateway drops the
      // first pod's packets for a second or more (until DAD ends after the first port brings carrier).
      nl.addrAdd(br.index, gw, { nodad: family === 6 });
    } catch (err) {
      if (!(err instanceof NetlinkError && err.exists)) throw err; // a parallel ADD added it
    }
  }
  // The MTU is set after creation, not at it: only a changed MTU counts as "set by the user", otherwise
  // the kernel puts the bridge back to 1500 whenever its last port leaves.
  if (br.mtu !== mtu || !br.up) nl.linkSet(br.index, { ...(br.mtu !== mtu ? { mtu } : {}), up: true });
  return { index: br.index, mac: br.mac, replaced };
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
