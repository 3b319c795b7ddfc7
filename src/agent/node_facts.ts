/**
 * What the node-specific lease rules need to know about this node (validate.ts `NodeFacts`): its own
 * subnets, every address it holds with the network that address makes directly reachable, and its VTEP
 * MACs — read from the kernel, so an address added later (a second NIC, a VPN) is seen at the next resync.
 *
 * @module
 */
import type { AddrInfo, Netlink } from "../../ffi/mod.ts";
import type { IPNet } from "../net/ip.ts";
import { parseCIDR } from "../net/ip.ts";
import type { LocalAddress, NodeFacts } from "../lease/validate.ts";
import { RT_SCOPE } from "../../ffi/nl_consts.ts";

/**
 * weft's (and flannel's) overlay devices: `flannel.<VNI>`, `flannel-v6.<VNI>`, `flannel0` (udp),
 * `flannel-wg`, `flannel-wg-v6`. Their addresses come from a lease of this node, not from the underlay:
 * a device left by another backend or an earlier lease (switching vxlan → host-gw keeps `flannel.1` and
 * its old /32) must not make a peer that now holds that subnet look "directly connected" (`overlay`).
 */
const OVERLAY_DEVICE = /^flannel(\.|-v6\.|-wg|\d)/;

/** This node's addresses (from `addrs`, named after `links`), skipping IPv6 link-local ones. */
export function localAddresses(addrs: AddrInfo[], names: Map<number, string>): LocalAddress[] {
  const out: LocalAddress[] = [];
  for (const a of addrs) {
    if (a.family === 6 && a.scope === RT_SCOPE.LINK) continue; // link-local: on every interface, no lease there
    const dev = names.get(a.index);
    try {
      const { ip, net } = parseCIDR(a.cidr);
      out.push({
        ip,
        net,
        ...(dev ? { dev } : {}),
        ...(dev && OVERLAY_DEVICE.test(dev) ? { overlay: true } : {}),
      });
    } catch { /* an address libnl could not print: nothing to compare with */ }
  }
  return out;
}

/** Reads the facts from the kernel through `nl`. */
export function readNodeFacts(nl: Netlink, own: { subnets: IPNet[]; vtepMacs: string[] }): NodeFacts {
  const names = new Map(nl.linkList().map((l) => [l.index, l.name]));
  return { ownSubnets: own.subnets, addresses: localAddresses(nl.addrList(), names), vtepMacs: own.vtepMacs };
}
