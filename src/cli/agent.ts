/**
 * `weft agent` with every flag of flanneld v0.28.9, in Go's syntax, each also read from `FLANNELD_<FLAG>`
 * (e.g. `--ip-masq` from `FLANNELD_IP_MASQ`), plus weft's own `--resync-interval`, `--lease-ttl`,
 * `--log-level` and `--log-json` (the flags: agent_flags.ts; their syntax: flags.ts).
 *
 * ```
 * weft agent -etcd-endpoints=http://10.0.0.1:2379 -iface=eth0 -ip-masq \
 *   --healthz-ip=127.0.0.1 --healthz-port=8471 --resync-interval=10
 * ```
 *
 * The agent itself (and etcd3) is imported only when the command runs.
 *
 * @module
 */
import type { Command } from "@commander-js/extra-typings";
import type { EtcdOptions } from "../lease/etcd/options.ts";
import { log, setupLogging } from "../log.ts";
import { WEFT_VERSION } from "../version.ts";
import { AGENT_FLAGS, type AgentCliOptions, type AgentFlagValues, agentOptionsFrom } from "./agent_flags.ts";
import { CliError } from "./errors.ts";
import { ETCD_FLAGS } from "./etcd_flags.ts";
import { addFlags, FLAG_SYNTAX_HELP, type FlagSpec, parseFlags } from "./flags.ts";
import { KUBE_FLAGS } from "./kube_flags.ts";
import {
  agentSourceOpener,
  podRegistrationKinds,
  POLICY_FLAGS,
  type RegistrationsHolder,
} from "./policy_flags.ts";

export { type AgentCliOptions, type AgentFlagValues, agentOptionsFrom };

/** Every flag of `weft agent`, in `--help`'s order: etcd's, kube's, flanneld's others and weft's, policy's. */
export const AGENT_COMMAND_FLAGS: readonly FlagSpec[] = [
  ...ETCD_FLAGS,
  ...KUBE_FLAGS,
  ...AGENT_FLAGS,
  ...POLICY_FLAGS,
];

/** Registers `weft agent` (main.ts runs a plain agent command line without commander, same flags). */
export function registerAgent(program: Command): void {
  const cmd = program.command("agent")
    .description("the per-node agent (flanneld's job): lease, datapath, subnet.env, rules, metrics")
    .addHelpText("after", FLAG_SYNTAX_HELP);
  addFlags(cmd, AGENT_COMMAND_FLAGS).action((flags) => runAgentCommand(flags as unknown as AgentFlagValues));
}

/**
 * `weft <args>` read from {@linkcode AGENT_COMMAND_FLAGS} alone (flags.ts `parseFlags`, no commander)
 * and run; false, having run nothing, when the arguments need the commander program (`--help`, a stray
 * argument, a flag the agent lacks).
 */
export async function runAgentWithoutCommander(args: readonly string[]): Promise<boolean> {
  const flags = parseFlags(AGENT_COMMAND_FLAGS, args);
  if (!flags) return false;
  await runAgentCommand(flags as unknown as AgentFlagValues);
  return true;
}

/** `weft agent`: logging, signals, the CNI server, then the agent until a signal stops it. */
async function runAgentCommand(flags: AgentFlagValues): Promise<void> {
  const stop = new AbortController();
  const opts = agentOptionsFrom(flags, stop.signal);
  if (opts.version) {
    // flanneld prints its version and exits 0 before reading anything else.
    console.log(WEFT_VERSION);
    return;
  }
  const registrations: RegistrationsHolder = {};
  const openSource = await agentSourceOpener(
    flags,
    opts as AgentCliOptions & { etcd: EtcdOptions },
    registrations,
  );
  await setupLogging({ level: opts.logLevel, json: opts.logJson });
  const logger = log("agent");
  logger.debug("logging at {level} (--log-level, --verbose, -v)", { level: opts.logLevel });
  for (const w of opts.warnings) logger.warn("{warning}", { warning: w });
  const onSignal = () => stop.abort();
  Deno.addSignalListener("SIGTERM", onSignal);
  Deno.addSignalListener("SIGINT", onSignal);
  // The store first: its first requests (kube: the Node list, the own Node) are on the wire while the
  // agent's modules load and the CNI socket opens (~30 ms of a start). Awaited below, where it fails.
  const opening = openSource(stop.signal);
  opening.catch(() => {});
  const { runAgent } = await import("../agent/agent.ts");
  const { startCniServer } = await import("./cni_server.ts");
  const cni = opts.cniServer
    ? await startCniServer(opts.subnetFile, { kinds: podRegistrationKinds(registrations) })
    : { close: () => Promise.resolve() };
  try {
    await runAgent(await opening, opts);
  } catch (err) {
    if (stop.signal.aborted) return;
    throw new CliError((err as Error).message);
  } finally {
    await cni.close();
  }
}
