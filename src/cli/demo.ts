/**
 * `weft demo up|down`: a local multi-node weft cluster in network namespaces (see demo_cluster.ts).
 *
 * @module
 */
import type { Command } from "@commander-js/extra-typings";
import { CliError } from "./errors.ts";
import { isCompiled } from "../self_command.ts";
import {
  agentsReady,
  DEMO_DIR,
  demoDown,
  type DemoState,
  demoUp,
  pingMatrix,
  type PingResult,
} from "../lab/demo_cluster.ts";

function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => [...(r[c] ?? "")].length)));
  return rows.map((r) => r.map((cell, c) => cell.padEnd(widths[c]!)).join("  ").trimEnd()).join("\n");
}

/** Renders the cluster table: node, public IP, subnet, backend, agent readiness, pods. */
export function renderNodes(state: DemoState, ready: Map<string, boolean>): string {
  const rows = [["NODE", "PUBLIC IP", "SUBNET", "BACKEND", "AGENT", "PODS"]];
  for (const n of state.nodes) {
    rows.push([
      n.name,
      n.publicIP,
      n.subnet,
      state.backend,
      ready.get(n.name) ? "ready" : "not ready",
      n.pods.map((p) => `${p.name}=${p.ip}`).join(" "),
    ]);
  }
  return table(rows);
}

/** Renders the ping matrix: ✓ with the RTT, or ✗. */
export function renderMatrix(state: DemoState, results: PingResult[]): string {
  const pods = state.nodes.flatMap((n) => n.pods.map((p) => p.name));
  const cell = new Map(results.map((r) => [`${r.from}>${r.to}`, r]));
  const rows = [["FROM \\ TO", ...pods]];
  for (const a of pods) {
    rows.push([
      a,
      ...pods.map((b) => {
        if (a === b) return "-";
        const r = cell.get(`${a}>${b}`);
        return r?.ok ? `✓ ${r.rttMs?.toFixed(2) ?? "?"}ms` : "✗";
      }),
    ]);
  }
  return table(rows);
}

/**
 * How a user runs weft here: the binary itself, or from a checkout `./dev weft` (the pinned Deno, this
 * checkout's main.ts; absolute when the shell is elsewhere). `weft` is never assumed to be on PATH.
 */
export function weftCommand(): string {
  if (isCompiled()) return Deno.execPath();
  const dev = new URL("../../dev", import.meta.url).pathname;
  return Deno.cwd() === dev.slice(0, -"/dev".length) ? "./dev weft" : `${dev} weft`;
}

/** The commands to look inside the demo, exactly as they run (namespaces, subnet.env, etcd). */
export function demoCommands(state: DemoState, weft = weftCommand()): string[] {
  const n = state.nodes[0];
  if (!n) return [];
  const inNode = `ip netns exec ${n.netns} ${weft}`;
  const pods = state.nodes.flatMap((x) => x.pods);
  return [
    `${inNode} status`,
    `${inNode} doctor --subnet-file ${n.subnetFile} --etcd-endpoints ${state.etcd}`,
    `${inNode} leases --etcd-endpoints ${state.etcd}`,
    ...(pods.length > 1 ? [`ip netns exec ${pods[0]!.netns} ping -c 3 ${pods.at(-1)!.ip}`] : []),
  ];
}

/** Registers `weft demo up|down`. */
export function registerDemo(program: Command): void {
  const demo = program.command("demo").description("a local multi-node weft cluster in network namespaces");
  demo.command("up")
    .description("build the demo cluster (removes leftovers of an earlier one first)")
    .option("--nodes <n>", "number of nodes (1-9)", "3")
    .option("--pods <n>", "pods per node (0-9)", "2")
    .option("--backend <type>", "vxlan, host-gw or udp", "vxlan")
    .action(async (opts) => {
      if (Deno.uid() !== 0) throw new CliError("weft demo needs root (it creates network namespaces)");
      const nodes = Number(opts.nodes), pods = Number(opts.pods);
      if (!Number.isInteger(nodes) || nodes < 1 || nodes > 9) throw new CliError("--nodes must be 1-9");
      if (!Number.isInteger(pods) || pods < 0 || pods > 9) throw new CliError("--pods must be 0-9");
      if (opts.backend !== "vxlan" && opts.backend !== "host-gw" && opts.backend !== "udp") {
        throw new CliError(`--backend must be vxlan, host-gw or udp, not ${opts.backend}`);
      }
      const started = Date.now();
      const onInterrupt = () => {
        console.error("\ninterrupted: removing the demo cluster…");
        demoDown().finally(() => Deno.exit(130));
      };
      Deno.addSignalListener("SIGINT", onInterrupt);
      let state: DemoState;
      try {
        state = await demoUp({
          nodes,
          pods,
          backend: opts.backend,
          progress: (msg) =>
            console.error(`  [${((Date.now() - started) / 1000).toFixed(1).padStart(5)}s] ${msg}`),
        });
      } catch (err) {
        console.error(`weft demo: ${(err as Error).message}`);
        console.error(`weft demo: logs are in ${DEMO_DIR}/logs; removing the partial cluster`);
        await demoDown();
        throw new CliError("demo failed");
      } finally {
        Deno.removeSignalListener("SIGINT", onInterrupt);
      }
      const ready = await agentsReady(state);
      console.log(`\n${renderNodes(state, ready)}\n`);
      console.error("  pinging every pod from every other pod…");
      const results = await pingMatrix(state);
      console.log(`${renderMatrix(state, results)}\n`);
      const ok = results.filter((r) => r.ok).length;
      console.log(`ping matrix: ${ok}/${results.length} ✓ in ${((Date.now() - started) / 1000).toFixed(1)}s`);
      console.log(
        `the cluster keeps running: logs in ${DEMO_DIR}/logs; remove it with: ./dev demo down (or weft demo down)`,
      );
      console.log(
        `look inside (node ${state.nodes[0]?.name ?? ""} is namespace ${state.nodes[0]?.netns ?? ""}):`,
      );
      for (const c of demoCommands(state)) console.log(`  ${c}`);
      if (ok !== results.length) Deno.exitCode = 1;
    });
  demo.command("down")
    .description("remove the demo cluster: processes, namespaces, files")
    .action(async () => {
      const { processes, namespaces } = await demoDown();
      console.log(
        `demo removed: ${processes} processes stopped, ${namespaces} namespaces deleted, ${DEMO_DIR} removed`,
      );
    });
}
