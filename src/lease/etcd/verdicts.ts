/**
 * The cluster-wide verdict on every entry of a store, as `weft leases` shows it: what every agent
 * refuses whatever node it runs on (keys and values that do not parse, subnets outside the Network or
 * of the wrong length, PublicIPs that are not unicast, bad VtepMACs, the younger side of a conflict).
 * Each agent also refuses, for itself, leases that overlap its own subnet or its connected networks —
 * `weft status` on the node shows those.
 *
 * @module
 */
import type { NetworkConfig } from "../../config/net_conf.ts";
import { LeaseFilter } from "../lease_filter.ts";
import { entryForParse, type RegistryEntry } from "./registry.ts";
import { type LeaseRejection, networkRules, type ParsedLeaseEntry, parseLeaseEntry } from "../validate.ts";

/** One entry with its parse result and its verdict (undefined: accepted). */
export interface EntryVerdict {
  /** The raw entry. */
  entry: RegistryEntry;
  /** The lease it holds, or why it holds none. */
  parsed: ParsedLeaseEntry;
  /** Why every agent refuses it, or undefined. */
  rejection?: LeaseRejection;
}

/** Judges every entry against `cfg` (without a config only parse errors are known). */
export function clusterVerdicts(entries: RegistryEntry[], cfg: NetworkConfig | undefined): EntryVerdict[] {
  const parsed = entries.map((entry) => ({ entry, parsed: parseLeaseEntry(entryForParse(entry)) }));
  if (!cfg) {
    return parsed.map((p) => p.parsed.ok ? p : { ...p, rejection: p.parsed.rejection });
  }
  const filter = new LeaseFilter({ rules: networkRules(cfg), apply() {}, report() {} });
  filter.update(parsed.map((p) => ({ key: p.entry.key, entry: p.parsed })));
  return parsed.map((p) => {
    const rejection = filter.verdict(p.entry.key);
    return rejection ? { ...p, rejection } : p;
  });
}
