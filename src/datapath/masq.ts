/**
 * Masquerade and forward rules, flannel's rule set (its iptables masquerade and forward chains) in nftables tables owned by weft:
 * `table ip weft` (and `table ip6 weft` for an IPv6 network). weft always uses nftables, whatever the
 * network config's `EnableNFTables` says: its rules live in their own table, so they never mix with
 * kube-proxy's or anyone else's, and they are applied through libnftables in one transaction.
 *
 * - The forward chain (accept from/to the cluster network), unless `--iptables-forward-rules=false`
 *   (flanneld's default is true).
 * - The postrouting (nat) chain only with `--ip-masq`; its masquerade is fully-random unless
 *   `--ip-masq-fully-random-disable`, as flanneld's.
 *
 * Installing replaces weft's table atomically (`add` + `delete` + define, one transaction), so other
 * tables are never touched and a half-applied state never exists. {@linkcode RulesKeeper} re-reads the
 * table on every resync and re-installs it when it was deleted or edited.
 *
 * @module
 */
import { nftRun } from "../../ffi/mod.ts";
import { formatNet, type IPNet } from "../net/ip.ts";

/** The nftables table weft owns (one per family). */
export const MASQ_TABLE = "weft";

/** The networks the rules are about. */
export interface MasqNets {
  /** The cluster network (`Network`). */
  network: IPNet;
  /** This node's pod subnet (the lease). */
  podSubnet: IPNet;
}

function family(n: IPNet): "ip" | "ip6" {
  return n.ip.family === 4 ? "ip" : "ip6";
}

/** flanneld's switches of its rules. */
export interface RuleSwitches {
  /** Masquerade with fully-random port mapping (default true; `--ip-masq-fully-random-disable`). */
  fullyRandom?: boolean;
  /** Accept the cluster network in forward (default true; `--iptables-forward-rules`). */
  forward?: boolean;
}

/** Renders the rule script for one family. */
export function masqScript(network: IPNet, podSubnet: IPNet, ipMasq: boolean, sw: RuleSwitches = {}): string {
  const fam = family(network);
  const mcast = fam === "ip" ? "224.0.0.0/4" : "ff00::/8";
  const cluster = formatNet(network), pods = formatNet(podSubnet);
  const random = sw.fullyRandom === false ? "" : " fully-random";
  const nat = ipMasq
    ? [
      "  chain postrouting {",
      "    type nat hook postrouting priority srcnat; policy accept;",
      // kube-proxy marks what it already masquerades
      "    meta mark & 0x4000 == 0x4000 return",
      `    ${fam} saddr ${pods} ${fam} daddr ${cluster} return`,
      `    ${fam} saddr ${cluster} ${fam} daddr ${pods} return`,
      `    ${fam} saddr != ${cluster} ${fam} daddr ${pods} return`,
      `    ${fam} saddr ${cluster} ${fam} daddr != ${mcast} masquerade${random}`,
      `    ${fam} saddr != ${cluster} ${fam} daddr ${cluster} masquerade${random}`,
      "  }",
    ]
    : [];
  return [
    // `add` makes the `delete` valid when the table does not exist yet.
    `add table ${fam} ${MASQ_TABLE}`,
    `delete table ${fam} ${MASQ_TABLE}`,
    `table ${fam} ${MASQ_TABLE} {`,
    ...nat,
    ...(sw.forward === false ? [] : [
      "  chain forward {",
      "    type filter hook forward priority filter; policy accept;",
      `    ${fam} saddr ${cluster} accept`,
      `    ${fam} daddr ${cluster} accept`,
      "  }",
    ]),
    "}",
    "",
  ].join("\n");
}

/** Installs (or re-installs) the rules for the given networks, all families in one transaction. */
export function applyMasq(nets: MasqNets[], ipMasq: boolean, sw: RuleSwitches = {}): void {
  nftRun(nets.map((n) => masqScript(n.network, n.podSubnet, ipMasq, sw)).join(""));
}

/** Removes weft's tables; absent tables are fine; other tables are untouched. */
export function removeMasq(): void {
  nftRun(
    `add table ip ${MASQ_TABLE}\ndelete table ip ${MASQ_TABLE}\n` +
      `add table ip6 ${MASQ_TABLE}\ndelete table ip6 ${MASQ_TABLE}\n`,
  );
}

/** weft's tables as nft lists them (its canonical form), for drift checks. */
export function listMasq(nets: MasqNets[]): string {
  const fams = [...new Set(nets.map((n) => family(n.network)))];
  return fams.map((f) => {
    try {
      return nftRun(`list table ${f} ${MASQ_TABLE}`);
    } catch {
      return `(no table ${f} ${MASQ_TABLE})`;
    }
  }).join("");
}

/** What {@linkcode RulesKeeper.ensure} did. */
export type RulesChange = "unchanged" | "installed" | "repaired";

/** Keeps weft's tables as they should be: installs them, and re-installs them after drift. */
export class RulesKeeper {
  #nets: MasqNets[] = [];
  #listing = "";

  /**
   * @param ipMasq whether to masquerade (`--ip-masq`)
   * @param sw fully-random masquerade and forward rules (both on by default, as in flanneld)
   */
  constructor(private readonly ipMasq: boolean, private readonly sw: RuleSwitches = {}) {}

  /**
   * Makes the rules match `nets`: installs when they changed (new lease) or were never installed,
   * re-installs when nft lists something else than what was installed (deleted or edited by hand).
   * Throws {@linkcode NftError} when nft rejects them.
   */
  ensure(nets: MasqNets[]): RulesChange {
    const key = (ns: MasqNets[]) => ns.map((n) => `${formatNet(n.network)} ${formatNet(n.podSubnet)}`).join();
    if (!this.#listing || key(nets) !== key(this.#nets)) {
      applyMasq(nets, this.ipMasq, this.sw);
      this.#nets = nets;
      this.#listing = listMasq(nets);
      return "installed";
    }
    if (listMasq(nets) === this.#listing) return "unchanged";
    applyMasq(nets, this.ipMasq, this.sw);
    this.#listing = listMasq(nets);
    return "repaired";
  }
}
