/**
 * Masquerade and forward rules (`--ip-masq`), flannel's rule set in nftables tables owned by weft
 * (`ip weft` and `ip6 weft`), applied atomically and re-applied on every resync. Other tables are never
 * touched: the whole table is replaced in one transaction (`add` + `delete` + define).
 *
 * @module
 */
import { nftRun } from "../../ffi/mod.ts";
import { formatNet, type IPNet } from "../net/ip.ts";

/** The nftables table weft owns (one per family). */
export const MASQ_TABLE = "weft";

/** Renders the rule script for one family. */
export function masqScript(network: IPNet, podSubnet: IPNet, ipMasq: boolean): string {
  const fam = network.ip.family === 4 ? "ip" : "ip6";
  const mcast = fam === "ip" ? "224.0.0.0/4" : "ff00::/8";
  const cluster = formatNet(network), pods = formatNet(podSubnet);
  const nat = ipMasq
    ? [
      "  chain postrouting {",
      "    type nat hook postrouting priority srcnat; policy accept;",
      // kube-proxy marks what it already masquerades
      "    meta mark & 0x4000 == 0x4000 return",
      `    ${fam} saddr ${pods} ${fam} daddr ${cluster} return`,
      `    ${fam} saddr ${cluster} ${fam} daddr ${pods} return`,
      `    ${fam} saddr != ${cluster} ${fam} daddr ${pods} return`,
      `    ${fam} saddr ${cluster} ${fam} daddr != ${mcast} masquerade fully-random`,
      `    ${fam} saddr != ${cluster} ${fam} daddr ${cluster} masquerade fully-random`,
      "  }",
    ]
    : [];
  return [
    `add table ${fam} ${MASQ_TABLE}`,
    `delete table ${fam} ${MASQ_TABLE}`,
    `table ${fam} ${MASQ_TABLE} {`,
    ...nat,
    "  chain forward {",
    "    type filter hook forward priority filter; policy accept;",
    `    ${fam} saddr ${cluster} accept`,
    `    ${fam} daddr ${cluster} accept`,
    "  }",
    "}",
    "",
  ].join("\n");
}

/** Installs (or re-installs) the rules for the given networks. */
export function applyMasq(nets: { network: IPNet; podSubnet: IPNet }[], ipMasq: boolean): void {
  nftRun(nets.map((n) => masqScript(n.network, n.podSubnet, ipMasq)).join(""));
}

/** Removes weft's tables; absent tables are fine. */
export function removeMasq(): void {
  nftRun(
    `add table ip ${MASQ_TABLE}\ndelete table ip ${MASQ_TABLE}\nadd table ip6 ${MASQ_TABLE}\ndelete table ip6 ${MASQ_TABLE}\n`,
  );
}
