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
import type { LocalAddress, NodeFacts } from "../subnet/validate.ts";

/** Scope of IPv6 link-local addresses: every interface has one, no lease can lie there. */
const SCOPE_LINK = 253;

/** This node's addresses (from `addrs`, named after `links`), skipping IPv6 link-local ones. */
export function localAddresses(addrs: AddrInfo[], names: Map<number, string>): LocalAddress[] {
  const out: LocalAddress[] = [];
  for (const a of addrs) {
    if (a.family === 6 && a.scope === SCOPE_LINK) continue;
    try {
      const { ip, net } = parseCIDR(a.cidr);
      const dev = names.get(a.index);
      out.push({ ip, net, ...(dev ? { dev } : {}) });
    } catch { /* an address libnl could not print: nothing to compare with */ }
  }
  return out;
}

/** Reads the facts from the kernel through `nl`. */
export function readNodeFacts(nl: Netlink, own: { subnets: IPNet[]; vtepMacs: string[] }): NodeFacts {
  const names = new Map(nl.linkList().map((l) => [l.index, l.name]));
  return { ownSubnets: own.subnets, addresses: localAddresses(nl.addrList(), names), vtepMacs: own.vtepMacs };
}
