/**
 * The node's masquerade and forward rules, where the host keeps its own (flannel's trafficmngr):
 *
 * - `EnableNFTables: false` (flannel's default): flanneld's chains in iptables — FLANNEL-POSTRTG (nat,
 *   with `--ip-masq`) and FLANNEL-FWD (filter, unless `--iptables-forward-rules=false`) — in the backend
 *   the host uses (iptables-nft or iptables-legacy, detected once as kube-proxy does), for each family of
 *   the network; weft's nftables tables (and flanneld's `flannel-ipv4`/`flannel-ipv6`) are removed, as
 *   flanneld removes the other mode's rules.
 * - `EnableNFTables: true`: weft's nftables tables (src/datapath/masq.ts); FLANNEL-POSTRTG chains a
 *   previous flanneld left in iptables are removed.
 *
 * Either way, an iptables FORWARD chain that would drop pod traffic (policy DROP, a REJECT — Docker and
 * hardened hosts) gets FLANNEL-FWD's jump first, in whichever backend holds it: an accept elsewhere cannot
 * overrule it. What no rule of weft's can overrule — a drop in another nftables table's forward hook
 * (firewalld) — is found by src/datapath/firewall.ts, logged once with the fix, and reported.
 *
 * A pass runs every `--iptables-resync` seconds and when the lease changes. It reads (iptables-save, nft
 * list) and writes only what differs: in steady state, no write at all. Nor, mostly, a read: a pass first
 * asks the kernel for nftables' ruleset generation (one netlink round trip on a socket kept open), and
 * when it is the one a previous pass left every rule in place at — no nftables transaction since, by
 * anyone — and no iptables-legacy table is in play (legacy rules change without it), there is nothing to
 * read. An idle node then spawns no iptables-save every 5 s (each left ~100 KB of native heap behind until
 * V8's next full collection: the agent's RSS grew ~1.5 MB a minute between them, measured), walks no
 * ruleset, and lets libnftables be unloaded (ffi/nftables.ts).
 *
 * What weft creates here, for `weft cleanup`: iptables/ip6tables chains FLANNEL-POSTRTG (nat) and
 * FLANNEL-FWD (filter) with their jumps from POSTROUTING and FORWARD, in iptables-nft and/or
 * iptables-legacy (see iptables_rules.ts); nftables tables `ip weft` and `ip6 weft` (masq.ts).
 *
 * @module
 */
import { NftNetlink, nftRun, unloadNftablesIfIdle } from "../../ffi/mod.ts";
import { log } from "../log.ts";
import { formatNet } from "../net/ip.ts";
import { type ForwardBlocker, podProbes, scanForwardBlockers } from "./firewall.ts";
import {
  detectIptablesMode,
  findBinary,
  Iptables,
  type IptablesFamily,
  type IptablesMode,
  legacyInUse,
} from "./iptables.ts";
import { forwardMayDrop, type IptablesWant, planIptables } from "./iptables_rules.ts";
import { MASQ_TABLE, type MasqNets, RulesKeeper } from "./masq.ts";

const logger = log("datapath", "rules");

/** How the node's rules are kept (flanneld's flags and the network config). */
export interface HostRulesOptions {
  /** `EnableNFTables` of the network config. */
  nftables: boolean;
  /** `--ip-masq`. */
  ipMasq: boolean;
  /** MASQUERADE `--random-fully` (false with `--ip-masq-fully-random-disable`). */
  fullyRandom: boolean;
  /** `--iptables-forward-rules`. */
  forwardRules: boolean;
}

/** What a pass found, for readiness, metrics and the log. */
export interface HostRulesState {
  /** Where the rules live: `nftables`, `iptables-nft`, `iptables-legacy` (empty before the first pass). */
  mode: string;
  /** The last pass put every rule in place. */
  ok: boolean;
  /** Its error, when not. */
  error: string;
  /** Rule writes that repaired drift (a chain deleted or edited, a jump moved behind a REJECT). */
  repaired: number;
  /** Writes of any kind (iptables-restore calls and nft transactions). */
  writes: number;
  /** Passes run. */
  passes: number;
  /** Passes that read the rules (the others found nftables' ruleset generation unchanged; see above). */
  reads: number;
  /** Base chains on the forward hook that drop pod traffic, which no rule of weft's can overrule. */
  blockers: ForwardBlocker[];
}

/** Keeps the node's masquerade/forward rules; see the module comment. */
export class HostRules {
  readonly state: HostRulesState = {
    mode: "",
    ok: false,
    error: "",
    repaired: 0,
    writes: 0,
    passes: 0,
    reads: 0,
    blockers: [],
  };
  #nets: MasqNets[] = [];
  #netsKey = "";
  #appliedKey = "";
  #mode: IptablesMode | undefined;
  #tables = new Map<string, Iptables>();
  #nft: RulesKeeper | undefined;
  #running: Promise<void> = Promise.resolve();
  #reported = new Set<string>();
  #started = false;
  /**
   * nftables' ruleset generation and the overlay devices at the start of the last pass that found every
   * rule in place and wrote nothing; undefined when that pass wrote, failed, or the generation is unknown.
   */
  #settled: string | undefined;
  /** The socket the generation is asked on: opened once (in the agent's namespace), again after an error. */
  #nl: NftNetlink | undefined;
  /** Told the state after every pass. */
  onPass: (state: HostRulesState) => void = () => {};

  /**
   * @param opts the rule set and where it goes
   * @param overlays names of the devices peers' traffic comes through (for the firewall probes)
   */
  constructor(private readonly opts: HostRulesOptions, private readonly overlays: () => string[]) {}

  /** Sets the networks the rules are about (the lease's); a change is applied at once. */
  want(nets: MasqNets[]): void {
    const k = nets.map((n) => `${formatNet(n.network)} ${formatNet(n.podSubnet)}`).join();
    if (k === this.#netsKey) return;
    this.#nets = nets;
    this.#netsKey = k;
    void this.pass();
  }

  /** One pass (serialised with any pass still running). */
  pass(): Promise<void> {
    this.#running = this.#running.then(() => this.#pass()).catch(() => {});
    return this.#running;
  }

  /** A pass every `seconds` until `signal` aborts (`--iptables-resync`). */
  async run(seconds: number, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await new Promise<void>((r) => {
        const t = setTimeout(r, seconds * 1000);
        signal.addEventListener("abort", () => (clearTimeout(t), r()), { once: true });
      });
      if (!signal.aborted && this.#nets.length) await this.pass();
    }
  }

  async #pass(): Promise<void> {
    if (!this.#nets.length) return;
    const fresh = this.#netsKey !== this.#appliedKey;
    const key = this.#netsKey;
    const at = this.#generationKey();
    if (!fresh && this.state.ok && at !== undefined && at === this.#settled) {
      unloadNftablesIfIdle(); // nothing to read: libnftables can go until something changes
      this.state.passes++;
      this.onPass(this.state);
      return;
    }
    this.state.reads++;
    const writesBefore = this.state.writes;
    const errors: string[] = [];
    try {
      if (!this.#started) await this.#start();
      if (this.opts.nftables) this.#nftPass();
      for (const n of this.#nets) {
        const fam = n.network.ip.family;
        try {
          await this.#iptablesPass(n, fam);
        } catch (err) {
          errors.push((err as Error).message);
        }
      }
      const total = (this.#nft?.writes ?? 0) + [...this.#tables.values()].reduce((s, t) => s + t.writes, 0);
      const wrote = total - this.state.writes;
      this.state.writes = total;
      if (wrote && !fresh && this.state.ok) this.state.repaired++;
      this.#appliedKey = key;
    } catch (err) {
      errors.push((err as Error).message);
    }
    this.state.ok = errors.length === 0;
    const error = errors.join("; ");
    // Logged when it starts or changes (not every pass: a missing binary would fill the log).
    if (error && error !== this.state.error) logger.error("rules: {error}", { error });
    if (!error && this.state.error) logger.info("rules in place again");
    this.state.error = error;
    this.#scanFirewall();
    // Our own writes moved the generation: the next pass reads once more and settles on what it finds.
    this.#settled = this.state.ok && this.state.writes === writesBefore ? at : undefined;
    this.state.passes++;
    this.onPass(this.state);
  }

  /**
   * What must be unchanged for a pass to read nothing: nftables' ruleset generation and the overlay
   * devices (the firewall probes'); undefined — always read — when iptables-legacy is the backend or holds
   * a table of a family in play, or the generation cannot be read.
   */
  #generationKey(): string | undefined {
    if (this.#mode === "legacy") return undefined;
    if (this.#nets.some((n) => legacyInUse(n.network.ip.family))) return undefined;
    try {
      this.#nl ??= NftNetlink.open();
      return `${this.#nl.generation()} ${this.overlays().join(",")}`;
    } catch {
      this.#nl?.close();
      this.#nl = undefined;
      return undefined;
    }
  }

  /** First pass: the backend, and the other mode's rules removed (flanneld's CleanUp). */
  async #start(): Promise<void> {
    if (this.opts.nftables) {
      this.state.mode = "nftables";
      this.#nft = new RulesKeeper(this.opts.ipMasq, {
        forward: this.opts.forwardRules,
        fullyRandom: this.opts.fullyRandom,
      });
    } else {
      const d = await detectIptablesMode();
      this.#mode = d.mode;
      this.state.mode = `iptables-${d.mode}`;
      logger.info("masquerade and forward rules go to iptables-{mode} ({why})", {
        mode: d.mode,
        why: d.reason,
      });
      removeNftTables([...WEFT_NFT_TABLES, ...FLANNEL_NFT_TABLES]);
    }
    this.#started = true;
  }

  /** nftables mode: weft's tables (then flanneld's, which they replace, are removed). */
  #nftPass(): void {
    const change = this.#nft!.ensure(this.#nets);
    if (change === "repaired") logger.warn("nftables table weft was deleted or altered: re-installed it");
    if (change === "installed") removeNftTables(FLANNEL_NFT_TABLES);
  }

  /**
   * One family's iptables: the primary backend gets flanneld's chains as the flags say; any other backend
   * in use gets FLANNEL-FWD when its FORWARD chain would drop pod traffic, and loses FLANNEL-POSTRTG in
   * nftables mode.
   */
  async #iptablesPass(n: MasqNets, fam: IptablesFamily): Promise<void> {
    const nets = { network: n.network, podSubnet: n.podSubnet };
    for (const mode of ["nft", "legacy"] as const) {
      const primary = mode === this.#mode;
      if (!primary && !backendInUse(mode, fam)) continue;
      const ipt = this.#iptables(mode, fam);
      if (!ipt) continue;
      const tables = await ipt.save();
      const want: IptablesWant = primary
        ? {
          masq: this.opts.ipMasq ? "present" : "absent",
          forward: this.opts.forwardRules ? "present" : "absent",
          fullyRandom: this.opts.fullyRandom,
        }
        : {
          masq: this.opts.nftables ? "absent" : "untouched",
          forward: this.opts.forwardRules && forwardMayDrop(tables) ? "present" : "untouched",
          fullyRandom: this.opts.fullyRandom,
        };
      const plan = planIptables(tables, nets, want);
      if (!plan.payload) continue;
      logger.info("{ipt}: {why}: rewriting", { ipt: ipt.name, why: plan.why.join(", ") });
      await ipt.restore(plan.payload);
    }
  }

  #iptables(mode: IptablesMode, fam: IptablesFamily): Iptables | undefined {
    const k = `${mode}${fam}`;
    let t = this.#tables.get(k);
    if (t) return t;
    try {
      t = new Iptables(mode, fam);
    } catch (err) {
      if (mode === this.#mode) throw err; // the backend the rules must go to
      return undefined; // another backend whose binaries are not here: nothing weft can do there
    }
    this.#tables.set(k, t);
    return t;
  }

  #scanFirewall(): void {
    const overlays = this.overlays();
    const probes = this.#nets.flatMap((n) => podProbes(n.network, n.podSubnet, overlays));
    let found: ForwardBlocker[];
    try {
      found = scanForwardBlockers(probes);
    } catch (err) {
      logger.debug("firewall scan: {error}", { error: (err as Error).message });
      return;
    }
    this.state.blockers = found;
    const now = new Set<string>();
    for (const b of found) {
      const id = `${b.family} ${b.table} ${b.chain} ${b.verdict}`;
      now.add(id);
      if (this.#reported.has(id)) continue;
      logger.error("{what}; fix: {fix}", { what: blockerMessage(b), fix: blockerFix(b, this.#nets) });
    }
    for (const id of this.#reported) {
      if (!now.has(id)) logger.info("nftables chain {id} no longer drops pod traffic", { id });
    }
    this.#reported = now;
  }
}

/** Whether an iptables backend holds tables in this namespace (read without writing or loading anything). */
function backendInUse(mode: IptablesMode, fam: IptablesFamily): boolean {
  if (mode === "legacy") return legacyInUse(fam);
  if (!findBinary(fam === 6 ? "ip6tables-nft-save" : "iptables-nft-save")) return false;
  try {
    // iptables-nft's tables are nftables tables of family ip/ip6 named as iptables' (filter, nat).
    const tables = nftRun(`list tables ${fam === 6 ? "ip6" : "ip"}`);
    return /\btable ip6? (filter|nat)\b/.test(tables);
  } catch {
    return false;
  }
}

/** weft's nftables-mode tables. */
const WEFT_NFT_TABLES = [["ip", MASQ_TABLE], ["ip6", MASQ_TABLE]];
/** flanneld's nftables-mode tables (pkg/trafficmngr/nftables). */
const FLANNEL_NFT_TABLES = [["ip", "flannel-ipv4"], ["ip6", "flannel-ipv6"]];

/** Removes nftables tables (absent ones are fine): the other mode's, or flanneld's that weft's replace. */
function removeNftTables(names: string[][]): void {
  try {
    nftRun(names.map(([f, t]) => `add table ${f} ${t}\ndelete table ${f} ${t}\n`).join(""));
  } catch (err) {
    logger.debug("removing nftables tables: {error}", { error: (err as Error).message });
  }
}

/** One line naming a blocker. */
export function blockerMessage(b: ForwardBlocker): string {
  return `nftables chain ${b.family} ${b.table} ${b.chain} (forward hook) ${b.verdict} pod traffic ` +
    `(${b.where}; e.g. ${b.probe}): no accept in another table or in iptables can overrule a drop there`;
}

/** How to fix a blocker: let the cluster network through in that chain. */
export function blockerFix(b: ForwardBlocker, nets: MasqNets[]): string {
  const cidrs = nets.map((n) => formatNet(n.network));
  const nft = cidrs.map((c) => {
    const f = c.includes(":") ? "ip6" : "ip";
    return `nft insert rule ${b.family} ${b.table} ${b.chain} ${f} saddr ${c} accept; ` +
      `nft insert rule ${b.family} ${b.table} ${b.chain} ${f} daddr ${c} accept`;
  }).join("; ");
  const fw = b.table === "firewalld"
    ? `firewall-cmd --permanent --zone=trusted ${cidrs.map((c) => `--add-source=${c}`).join(" ")} ` +
      `--add-interface=cni0 && firewall-cmd --reload, or `
    : "";
  return `${fw}allow the cluster network in that chain (${nft}; persist it where that table is defined)`;
}
