/**
 * weft's policy table in the kernel: {@linkcode PolicyTable} installs a rendered rule set in one
 * libnftables transaction, keeps the rule counters across re-installs, re-reads the table on every
 * resync and re-installs it when it was deleted or edited (like the masquerade RulesKeeper), and
 * removes it when the feature is turned off. Everything runs in the calling thread's network namespace.
 *
 * @module
 */
import { nftRun } from "../../ffi/mod.ts";
import {
  type Count,
  type Counters,
  POLICY_TABLE_REF,
  type RenderOptions,
  renderPolicyTable,
} from "./nft_render.ts";
import type { RuleSet } from "./rule_set.ts";

/** The table as nft lists it, or undefined when it does not exist. */
export function listPolicyTable(): string | undefined {
  try {
    return nftRun(`list table ${POLICY_TABLE_REF}`);
  } catch {
    return undefined;
  }
}

/** A listing with the counter values taken out (they move with traffic, the rules do not). */
export function withoutCounts(listing: string): string {
  return listing.replace(/counter packets \d+ bytes \d+/g, "counter");
}

/** Reads every commented rule's counter from a listing, by chain then comment. */
export function parseCounters(listing: string): Counters {
  const out: Counters = new Map();
  let chain: Map<string, Count> | undefined;
  for (const line of listing.split("\n")) {
    const c = line.match(/^\s*chain (\S+) \{/);
    if (c) {
      out.set(c[1]!, chain = new Map());
      continue;
    }
    const r = line.match(/counter packets (\d+) bytes (\d+) .*comment "(.*)"\s*$/);
    if (r && chain) chain.set(r[3]!, { packets: Number(r[1]), bytes: Number(r[2]) });
  }
  return out;
}

/** Removes weft's policy table (absent is fine). */
export function removePolicyTable(): void {
  nftRun(`add table ${POLICY_TABLE_REF}\ndelete table ${POLICY_TABLE_REF}\n`);
}

/** What {@linkcode PolicyTable.apply} or {@linkcode PolicyTable.ensure} did. */
export type TableChange = "unchanged" | "installed" | "repaired";

/** Keeps weft's policy table equal to the last rule set given. */
export class PolicyTable {
  #script = ""; // the last rendered script without counter values
  #rs: RuleSet | undefined;
  #canonical = ""; // what nft listed right after the last install, counters taken out

  /** @param opts rendering options (drop logging) */
  constructor(private readonly opts: Omit<RenderOptions, "counters"> = {}) {}

  /**
   * Installs `rs` when it differs from what is installed (one transaction; counters of rules that stay
   * keep their values). Throws {@linkcode NftError} when nft rejects the script; the previous table then
   * stays in force untouched.
   */
  apply(rs: RuleSet): TableChange {
    const script = renderPolicyTable(rs, this.opts);
    if (script === this.#script && this.#canonical && this.#matchesKernel()) return "unchanged";
    this.#install(rs, script);
    return "installed";
  }

  /** Resync: re-installs the last rule set when the kernel's table differs from it (deleted, edited). */
  ensure(): TableChange {
    if (!this.#rs) return "unchanged";
    if (this.#matchesKernel()) return "unchanged";
    this.#install(this.#rs, this.#script);
    return "repaired";
  }

  /** The live counters (empty when the table is absent). */
  counters(): Counters {
    const l = listPolicyTable();
    return l ? parseCounters(l) : new Map();
  }

  /** Removes the table and forgets the rule set. */
  remove(): void {
    removePolicyTable();
    this.#rs = undefined;
    this.#script = "";
    this.#canonical = "";
  }

  #matchesKernel(): boolean {
    const l = listPolicyTable();
    return l !== undefined && withoutCounts(l) === this.#canonical;
  }

  #install(rs: RuleSet, script: string): void {
    // Read the counters just before the swap: the packets counted in between are the only ones lost.
    const before = listPolicyTable();
    const counters = before ? parseCounters(before) : undefined;
    nftRun(renderPolicyTable(rs, { ...this.opts, ...(counters ? { counters } : {}) }));
    this.#rs = rs;
    this.#script = script;
    this.#canonical = withoutCounts(listPolicyTable() ?? "");
  }
}
