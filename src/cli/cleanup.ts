/**
 * `weft cleanup`: removes what weft created on this node (and, with `--flannel`, what flanneld left), so
 * the node is as it was before: links, routes, nftables tables, iptables chains, the CNI socket, and on
 * request subnet.env and the installed CNI files (cleanup_plan.ts lists them).
 *
 * A dry run unless `--yes`: it prints what it would remove and what it keeps, and why. flanneld has no
 * such command; `kubeadm reset` asks before it acts, which a command run through `ssh` or `kubectl debug`
 * cannot answer, so weft does what `terraform plan`/`apply` do: show first, act on an explicit flag. It
 * refuses to act while an agent runs in the namespace (the agent would put everything back), and keeps
 * `cni0` while pods are attached to it. Everything goes through netlink and libnftables, as the agent
 * does; iptables through `iptables-restore`, as it is programmed. Each removal is independent: one that
 * fails is reported and the others still run.
 *
 * @module
 */
import type { Command } from "@commander-js/extra-typings";
import { Netlink, nftRun } from "../../ffi/mod.ts";
import { WEFT_ROUTE_PROTOCOL } from "../../ffi/types.ts";
import { DEFAULT_SUBNET_FILE } from "../config/subnet_env.ts";
import {
  type CleanupAction,
  type CleanupOptions,
  type CleanupPlan,
  describe,
  planCleanup,
} from "./cleanup_plan.ts";
import { CliError } from "./errors.ts";

/** One removal's outcome. */
export interface CleanupResult {
  /** What was removed (the action's description). */
  what: string;
  /** Why it failed, when it did. */
  error?: string;
}

async function runRestore(bin: string, script: string): Promise<void> {
  const child = new Deno.Command(bin, {
    args: ["--noflush"],
    stdin: "piped",
    stdout: "null",
    stderr: "piped",
  })
    .spawn();
  const w = child.stdin.getWriter();
  await w.write(new TextEncoder().encode(script));
  await w.close();
  const out = await child.output();
  if (!out.success) throw new Error(new TextDecoder().decode(out.stderr).trim() || `exit ${out.code}`);
}

/** Waits up to `ms` for `pid` to exit. */
async function waitGone(pid: number, ms: number): Promise<boolean> {
  for (const end = Date.now() + ms; Date.now() < end;) {
    try {
      Deno.statSync(`/proc/${pid}`);
    } catch {
      return true;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

/** Removes one thing; "already gone" is success. */
async function apply(a: CleanupAction, nl: Netlink): Promise<void> {
  switch (a.kind) {
    case "process":
      try {
        Deno.kill(a.pid, "SIGTERM");
      } catch { /* gone */ }
      if (!await waitGone(a.pid, 3000)) throw new Error(`pid ${a.pid} did not exit on SIGTERM`);
      return;
    case "routes":
      // With the protocol set the kernel deletes only protocol-87 routes: never somebody else's.
      for (const r of a.routes) {
        nl.routeDelete({ dst: r.dst, protocol: WEFT_ROUTE_PROTOCOL, table: r.table, metric: r.metric });
      }
      return;
    case "nexthops":
      for (const id of a.ids) nl.nexthopDelete(id); // absent (gone with its device) is fine
      return;
    case "link":
      nl.linkDelete(a.name);
      return;
    case "nft-table":
      nftRun(`add table ${a.family} ${a.name}\ndelete table ${a.family} ${a.name}\n`);
      return;
    case "iptables":
      await runRestore(a.bin, a.restore);
      for (const t of a.emptyTables) nftRun(`delete table ${t}\n`);
      return;
    case "file":
      try {
        Deno.removeSync(a.path);
      } catch (err) {
        if (!(err instanceof Deno.errors.NotFound)) throw err;
      }
      return;
  }
}

/** Applies a plan (refused when it has blockers); one failure does not stop the rest. */
export async function applyCleanup(plan: CleanupPlan): Promise<CleanupResult[]> {
  if (plan.blockers.length) throw new CliError(plan.blockers.join("\n"), 3);
  using nl = Netlink.open();
  const results: CleanupResult[] = [];
  for (const a of plan.actions) {
    try {
      await apply(a, nl);
      results.push({ what: describe(a) });
    } catch (err) {
      results.push({ what: describe(a), error: err instanceof Error ? err.message : String(err) });
    }
  }
  return results;
}

function printPlan(plan: CleanupPlan, results: CleanupResult[] | undefined): void {
  const lines: string[] = [];
  if (!results) {
    lines.push(
      "weft cleanup: dry run, nothing changed (run it with --yes to remove these)",
      plan.actions.length ? "would remove:" : "nothing of weft's to remove",
      ...plan.actions.map((a) => `  ${describe(a)}`),
    );
  } else {
    lines.push(
      results.length ? "removed:" : "nothing of weft's to remove",
      ...results.map((r) => r.error ? `  ✗ ${r.what}: ${r.error}` : `  ✓ ${r.what}`),
    );
  }
  if (plan.kept.length) lines.push("kept:", ...plan.kept.map((k) => `  ${k.what}: ${k.why}`));
  if (plan.blockers.length) lines.push("not now:", ...plan.blockers.map((b) => `  ${b}`));
  console.log(lines.join("\n"));
}

/** Registers `weft cleanup`. */
export function registerCleanup(program: Command): void {
  program.command("cleanup")
    .description(
      "remove what weft (and with --flannel, flanneld) created on this node; a dry run unless --yes",
    )
    .option("--yes", "remove them (without it: print what would be removed)")
    .option(
      "--keep-overlay",
      "rolling back to flanneld: keep the links, routes and FLANNEL-* chains it adopts",
    )
    .option(
      "--flannel",
      "also flanneld's leftovers: FLANNEL-* chains, flannel-ipv4/-ipv6 tables, its CNI plugin",
    )
    .option(
      "--flannel-only",
      "after a switch to weft: only flanneld's own tables (flannel-ipv4/-ipv6); weft may run",
    )
    .option("--subnet-env", "also remove subnet.env (and the WireGuard key file beside it)")
    .option(
      "--cni-files",
      "also remove the installed CNI plugin (<cni-bin-dir>/flannel) and 10-flannel.conflist",
    )
    .option(
      "--subnet-file <path>",
      "subnet.env of the agent (the CNI socket is beside it)",
      DEFAULT_SUBNET_FILE,
    )
    .option("--cni-bin-dir <dir>", "where the CNI plugin is installed", "/opt/cni/bin")
    .option("--cni-conf-dir <dir>", "where the CNI config is", "/etc/cni/net.d")
    .option("--json", "print JSON")
    .action(async (f) => {
      const opts: CleanupOptions = {
        flannel: !!f.flannel,
        keepOverlay: !!f.keepOverlay,
        flannelOnly: !!f.flannelOnly,
        subnetFile: f.subnetFile,
        subnetEnv: !!f.subnetEnv,
        cniFiles: !!f.cniFiles,
        cniBinDir: f.cniBinDir,
        cniConfDir: f.cniConfDir,
      };
      const plan = await planCleanup(opts);
      if (f.yes && plan.blockers.length) {
        printPlan(plan, undefined);
        throw new CliError("not cleaning while an agent runs on this node", 3);
      }
      const results = f.yes ? await applyCleanup(plan) : undefined;
      if (f.json) console.log(JSON.stringify({ dryRun: !f.yes, ...plan, results }, null, 2));
      else printPlan(plan, results);
      if (results?.some((r) => r.error)) Deno.exitCode = 1;
    });
}
