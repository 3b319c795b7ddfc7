/**
 * What the udp and wireguard backends do to their device besides creating it: the lease's address on
 * it, and one route for the whole cluster network through it (flannel's layout for both). Each helper
 * changes only what differs and says what it changed, so a full pass can count drift.
 *
 * The network route carries protocol `boot` (what flannel's netlink library stamps), not weft's
 * protocol 87: weft prunes its own protocol-87 routes inside the cluster network that no peer wants, and
 * this route belongs to the device, not to a peer.
 *
 * @module
 */
import type { Netlink } from "../../ffi/mod.ts";
import type { ExternalInterface } from "../net/iface.ts";
import { RT_SCOPE, RTPROT_BOOT } from "../../ffi/nl_consts.ts";

export { RTPROT_BOOT };

/**
 * Makes `cidr` (e.g. `10.244.3.0/32`) the device's only global address of its family; returns what was
 * wrong, or `""` when nothing was.
 */
export function ensureDeviceAddress(nl: Netlink, index: number, cidr: string): string {
  const family = cidr.includes(":") ? 6 : 4;
  // IPv6 devices also carry a kernel-made link-local fe80:: address: not ours to judge.
  const have = nl.addrList(index, family).filter((a) => a.scope === 0).map((a) => a.cidr);
  if (have.length === 1 && have[0] === cidr) return "";
  for (const a of have) if (a !== cidr) nl.addrDelete(index, a); // a previous lease's address
  nl.addrReplace(index, cidr, { nodad: family === 6 });
  return have.length ? `address ${have.join(",")} replaced by ${cidr}` : `address ${cidr} restored`;
}

/**
 * Makes `network` route through the device (`network dev <index> scope link proto boot`); returns what
 * was wrong, or `""`.
 */
export function ensureNetworkRoute(nl: Netlink, index: number, network: string): string {
  const family = network.includes(":") ? 6 : 4;
  const r = nl.routeList({ family }).find((r) => r.dst === network);
  if (r && r.index === index && r.gateway === undefined && r.type === "unicast") return "";
  nl.routeReplace({ dst: network, dev: index, scope: RT_SCOPE.LINK, protocol: RTPROT_BOOT });
  return r ? `route ${network} pointed elsewhere, set back to the device` : `route ${network} restored`;
}

/** What became of the external interface since start-up, as {@linkcode refreshUnderlay} found it. */
export type UnderlayChange =
  | { kind: "same" }
  | { kind: "reindexed"; from: number; to: number }
  | { kind: "readdressed"; family: 4 | 6; from: string; to: string }
  | { kind: "missing" };

/**
 * Looks the external interface up again by name: deleted and re-added (a VPN or bond restart, flannel
 * #2247), it has a new ifindex, which `ext` takes (devices bound to the old one are gone with it and must
 * be made again); re-added with another address, its VTEP address no longer exists here. Missing: not
 * back yet.
 */
export function refreshUnderlay(nl: Netlink, ext: ExternalInterface): UnderlayChange {
  const link = nl.linkGet(ext.name);
  if (!link) return { kind: "missing" };
  const from = ext.index;
  ext.index = link.index;
  for (const [family, want] of [[4, ext.ifaceIP], [6, ext.ifaceIPv6]] as const) {
    if (!want) continue;
    const have = nl.addrList(link.index, family).filter((a) => a.scope === 0).map((a) =>
      a.cidr.split("/")[0]!
    );
    if (!have.includes(want)) return { kind: "readdressed", family, from: want, to: have[0] ?? "none" };
  }
  return from === link.index ? { kind: "same" } : { kind: "reindexed", from, to: link.index };
}
