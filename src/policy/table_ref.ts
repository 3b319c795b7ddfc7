/**
 * weft's policy table by name, and the two things done to it without compiling any policy: list it and
 * remove it. An agent without `--network-policy` removes a table an earlier run left and needs nothing
 * else of src/policy, so it imports only this (the rest is a few MB of an agent's memory;
 * BENCHMARKS.md, bench/kube_scale.ts).
 *
 * @module
 */
import { nftRun } from "../../ffi/mod.ts";
import { log } from "../log.ts";

/** The table weft owns for network policy. */
export const POLICY_TABLE = "weft-policy";
/** The full table reference in nft syntax. */
export const POLICY_TABLE_REF = `inet ${POLICY_TABLE}`;

/** The table as nft lists it, or undefined when it does not exist (calling thread's namespace). */
export function listPolicyTable(): string | undefined {
  try {
    return nftRun(`list table ${POLICY_TABLE_REF}`);
  } catch {
    return undefined;
  }
}

/** Removes weft's policy table (absent is fine). */
export function removePolicyTable(): void {
  nftRun(`add table ${POLICY_TABLE_REF}\ndelete table ${POLICY_TABLE_REF}\n`);
}

/** Without `--network-policy`: removes weft's policy table if an earlier run left one (never throws). */
export function removeLeftoverPolicyTable(): void {
  try {
    if (listPolicyTable() === undefined) return;
    removePolicyTable();
    log("agent").info("network policy is off: removed the table inet weft-policy");
  } catch (err) {
    log("agent").warn("removing the policy table failed: {error}", { error: (err as Error).message });
  }
}
