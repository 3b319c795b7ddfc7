/**
 * Masquerade and forward rules with `EnableNFTables: true`: flannel's rule set (its iptables masquerade
 * and forward chains) in nftables tables owned by weft, `table ip weft` (and `table ip6 weft` for an IPv6
 * network). They live in their own table, so they never mix with kube-proxy's or anyone else's, and they
 * are applied through libnftables in one transaction. (`EnableNFTables: false`, flannel's default, puts
 * them in iptables instead: host_rules.ts.)
 *
 * - The forward chain (accept from/to the cluster network) unless `--iptables-forward-rules=false`.
 * - The postrouting (nat) chain only with `--ip-masq`; `masquerade fully-random` unless
 *   `--ip-masq-fully-random-disable`.
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

/** What goes in the table besides masquerading. */
export interface MasqOptions {
  /** The forward chain (`--iptables-forward-rules`, default true). */
  forward?: boolean;
  /** `masquerade fully-random` (default true; false with `--ip-masq-fully-random-disable`). */
  fullyRandom?: boolean;
}

/** Renders the rule script for one family. */
export function masqScript(
  network: IPNet,
  podSubnet: IPNet,
  ipMasq: boolean,
  opts: MasqOptions = {},
): string {
  const fam = family(network);
  const masquerade = opts.fullyRandom ?? true ? "masquerade fully-random" : "masquerade";
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
      `    ${fam} saddr ${cluster} ${fam} daddr != ${mcast} ${masquerade}`,
      `    ${fam} saddr != ${cluster} ${fam} daddr ${cluster} ${masquerade}`,
      "  }",
    ]
    : [];
  const forward = opts.forward ?? true
    ? [
      "  chain forward {",
      "    type filter hook forward priority filter; policy accept;",
      `    ${fam} saddr ${cluster} accept`,
      `    ${fam} daddr ${cluster} accept`,
      "  }",
    ]
    : [];
  return [
    // `add` makes the `delete` valid when the table does not exist yet.
    `add table ${fam} ${MASQ_TABLE}`,
    `delete table ${fam} ${MASQ_TABLE}`,
    `table ${fam} ${MASQ_TABLE} {`,
    ...nat,
    ...forward,
    "}",
    "",
  ].join("\n");
}

/** Installs (or re-installs) the rules for the given networks, all families in one transaction. */
export function applyMasq(nets: MasqNets[], ipMasq: boolean, opts: MasqOptions = {}): void {
  nftRun(nets.map((n) => masqScript(n.network, n.podSubnet, ipMasq, opts)).join(""));
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
  /** nft transactions run (installs and repairs). */
  writes = 0;

  /**
   * @param ipMasq whether to masquerade (`--ip-masq`)
   * @param opts forward chain and fully-random masquerading
   */
  constructor(private readonly ipMasq: boolean, private readonly opts: MasqOptions = {}) {}

  #apply(nets: MasqNets[]): void {
    this.writes++;
    applyMasq(nets, this.ipMasq, this.opts);
  }

  /**
   * Makes the rules match `nets`: installs when they changed (new lease) or were never installed,
   * re-installs when nft lists something else than what was installed (deleted or edited by hand).
   * Throws {@linkcode NftError} when nft rejects them.
   */
  ensure(nets: MasqNets[]): RulesChange {
    const key = (ns: MasqNets[]) => ns.map((n) => `${formatNet(n.network)} ${formatNet(n.podSubnet)}`).join();
    if (!this.#listing || key(nets) !== key(this.#nets)) {
      this.#apply(nets);
      this.#nets = nets;
      this.#listing = listMasq(nets);
      return "installed";
    }
    if (listMasq(nets) === this.#listing) return "unchanged";
    this.#apply(nets);
    this.#listing = listMasq(nets);
    return "repaired";
  }
}
