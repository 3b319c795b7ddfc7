/**
 * `weft policy [--json]`: network policy on this node as the kernel enforces it — per isolated pod,
 * the policies selecting it, the allow rules in force with their packet/byte counters, and the drops —
 * read from weft's `inet weft-policy` table (so it works whether or not the agent is running).
 *
 * @module
 */
import type { Command } from "@commander-js/extra-typings";
import { listPolicyTable } from "../policy/nft_table.ts";
import { formatTableStatus, parseTableStatus } from "../policy/table_status.ts";

/** Adds `weft policy`. */
export function registerPolicy(program: Command): void {
  program
    .command("policy")
    .description(
      "network policy on this node: per pod, the policies isolating it and the allow rules in force " +
        "with their packet/byte counters (read from the kernel)",
    )
    .option("--json", "machine-readable output")
    .action((o) => {
      const status = parseTableStatus(listPolicyTable());
      if (o.json) console.log(JSON.stringify(status, null, 2));
      else Deno.stdout.writeSync(new TextEncoder().encode(formatTableStatus(status)));
    });
}
