/**
 * Per-pod masquerading for `ipMasq` (on by default when FLANNEL_IPMASQ=false, i.e. when the agent does
 * not masquerade), the bridge plugin's rule in nftables: traffic from a pod address to anything outside
 * the node subnet and not multicast is masqueraded. Pods are elements of one set per family, so ADD and
 * DEL change one element instead of a chain per container, each in one atomic nft transaction.
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
 * @module
 */
import { nftRun } from "../../ffi/nftables.ts";

/** The nftables table weft's CNI mode owns (one per family). */
export const MASQ_TABLE = "weft-cni";

/** One pod address with its node subnet. */
export interface MasqEntry {
  /** Pod address, no prefix. */
  ip: string;
  /** Node subnet, `net/prefix`. */
  subnet: string;
}

function fam(ip: string): { nf: "ip" | "ip6"; type: string; multicast: string } {
  return ip.includes(":")
    ? { nf: "ip6", type: "ipv6_addr", multicast: "ff00::/8" }
    : { nf: "ip", type: "ipv4_addr", multicast: "224.0.0.0/4" };
}

/** Adds pods to the masquerade set (creating the table, set and rule as needed); one transaction. */
export function masqAdd(entries: MasqEntry[]): void {
  let script = "";
  for (const e of entries) {
    const f = fam(e.ip);
    const t = `${f.nf} ${MASQ_TABLE}`;
    script += `table ${t} {\n  set pods { type ${f.type}; }\n` +
      `  chain postrouting { type nat hook postrouting priority srcnat; policy accept; }\n}\n` +
      `flush chain ${t} postrouting\n` +
      `add rule ${t} postrouting ${f.nf} saddr @pods ${f.nf} daddr != ${e.subnet} ` +
      `${f.nf} daddr != ${f.multicast} masquerade\n` +
      `add element ${t} pods { ${e.ip} }\n`;
  }
  if (script) nftRun(script);
}

/** Removes pods from the masquerade set; absent elements or tables are fine. Returns how many it removed. */
export function masqDelete(ips: string[]): number {
  let n = 0;
  for (const ip of ips) {
    try {
      nftRun(`delete element ${fam(ip).nf} ${MASQ_TABLE} pods { ${ip} }\n`);
      n++;
    } catch { /* not there: DEL is idempotent */ }
  }
  return n;
}
