/**
 * Per-pod masquerading for `ipMasq` (on by default when FLANNEL_IPMASQ=false, i.e. when the agent does
 * not masquerade), the bridge plugin's rule in nftables: traffic from a pod address to anything outside
 * the node subnet and not multicast is masqueraded. Pods are elements of one set per family, so ADD and
 * DEL change one element instead of a chain per container, each in one atomic nf_tables transaction.
 *
 * ```
 * table ip weft-cni {
 *   set pods { type ipv4_addr; }
 *   chain postrouting {
 *     type nat hook postrouting priority srcnat; policy accept;
 *     ip saddr @pods ip daddr != 10.244.3.0/24 ip daddr != 224.0.0.0/4 masquerade
 *   }
 * }
 * ```
 *
 * Spoken over raw netlink (ffi/rtnl/nft.ts), not through libnftables: CNI mode on a host needs glibc and
 * nothing else, as flannel's Go plugin does. The first ADD creates the table; every ADD writes its rule
 * again (the node's subnet may have changed) and adds its addresses; DEL removes them.
 *
 * @module
 */
import { NftNetlink } from "../../ffi/rtnl/nft.ts";
import { parseIP, parseNet } from "../net/ip.ts";

/** The nftables table weft's CNI mode owns (one per family). */
export const MASQ_TABLE = "weft-cni";

/** One pod address with its node subnet. */
export interface MasqEntry {
  /** Pod address, no prefix. */
  ip: string;
  /** Node subnet, `net/prefix`. */
  subnet: string;
}

function tableOf(ip: string) {
  const family = ip.includes(":") ? 6 : 4;
  return {
    t: { family, table: MASQ_TABLE, set: "pods", chain: "postrouting" } as const,
    multicast: parseNet(family === 6 ? "ff00::/8" : "224.0.0.0/4"),
  };
}

/** Adds pods to the masquerade set (creating the table, set and rule as needed); one transaction a family. */
export function masqAdd(entries: MasqEntry[]): void {
  if (!entries.length) return;
  using nl = NftNetlink.open();
  for (const family of [4, 6] as const) {
    const mine = entries.filter((e) => e.ip.includes(":") === (family === 6));
    if (!mine.length) continue;
    const { t, multicast } = tableOf(mine[0]!.ip);
    nl.ensureMasquerade(t, parseNet(mine[0]!.subnet), multicast, mine.map((e) => parseIP(e.ip)));
  }
}

/** Removes pods from the masquerade set; absent elements or tables are fine. Returns how many it removed. */
export function masqDelete(ips: string[]): number {
  if (!ips.length) return 0;
  using nl = NftNetlink.open();
  let n = 0;
  for (const ip of ips) if (nl.deleteElement(tableOf(ip).t, parseIP(ip))) n++;
  return n;
}
