/**
 * `weft agent` with flanneld's flag names, each also read from `FLANNELD_<FLAG>` (e.g. `--ip-masq` from
 * `FLANNELD_IP_MASQ`, `--iface` from `FLANNELD_IFACE`, comma-separated), plus weft's own
 * `--resync-interval`, `--lease-ttl`, `--log-level`/`-v` and `--log-json`.
 *
 * ```
 * weft agent --etcd-endpoints=http://10.0.0.1:2379 --iface=eth0 --ip-masq \
 *   --healthz-ip=127.0.0.1 --healthz-port=8471 --resync-interval=10
 * ```
 *
 * The agent itself (and etcd3) is imported only when the command runs.
 *
 * @module
 */
import type { Command } from "@commander-js/extra-typings";
import type { AgentOptions } from "../agent/agent.ts";
import type { EtcdOptions } from "../lease/etcd/options.ts";
import { DEFAULT_SUBNET_FILE } from "../config/subnet_env.ts";
import { LOG_LEVELS, setupLogging } from "../log.ts";
import { formatIP, parseIP } from "../net/ip.ts";
import { CliError } from "./errors.ts";
import { addEtcdFlags, envDefault, envName, type EtcdFlagValues, etcdOptionsFrom } from "./etcd_flags.ts";
import { addKubeFlags } from "./kube_flags.ts";
import { addPolicyFlags, agentSourceOpener, podRegistrationKinds } from "./policy_flags.ts";

function collect(value: string, previous: string[]): string[] {
  return [...previous, ...value.split(",").map((s) => s.trim()).filter(Boolean)];
}

function envList(flag: string): string[] {
  const v = Deno.env.get(envName(flag));
  return v ? v.split(",").map((s) => s.trim()).filter(Boolean) : [];
}

/** Go's strconv.ParseBool, which flanneld's boolean flags and FLANNELD_* variables go through. */
export function parseBool(flag: string, v: string | boolean | undefined): boolean {
  if (v === undefined || typeof v === "boolean") return !!v;
  if (["1", "t", "T", "true", "TRUE", "True"].includes(v)) return true;
  if (["0", "f", "F", "false", "FALSE", "False", ""].includes(v)) return false;
  throw new CliError(`${flag} ${v}: must be true or false`, 2);
}

function num(flag: string, v: string, min: number): number {
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n) || n < min) {
    throw new CliError(`${flag} ${v}: must be a number ≥ ${min}`, 2);
  }
  return n;
}

/** An IPv6 address flag, in its canonical spelling (as leases and the kernel print it). */
function ipv6Flag(flag: string, v: string): string {
  let ip;
  try {
    ip = parseIP(v.trim());
  } catch {
    throw new CliError(`${flag} ${v}: not an IP address`, 2);
  }
  if (ip.family !== 6) throw new CliError(`${flag} ${v}: must be an IPv6 address`, 2);
  return formatIP(ip);
}

/** The flag values of `weft agent`, as commander hands them over. */
export interface AgentFlagValues extends EtcdFlagValues {
  /** --iface (repeatable). */
  iface: string[];
  /** --iface-regex (repeatable). */
  ifaceRegex: string[];
  /** --public-ip. */
  publicIp: string;
  /** --public-ipv6. */
  publicIpv6: string;
  /** --ip-masq[=bool]. */
  ipMasq: string | boolean;
  /** --subnet-file. */
  subnetFile: string;
  /** --subnet-lease-renew-margin, minutes. */
  subnetLeaseRenewMargin: string;
  /** --lease-ttl, seconds. */
  leaseTtl: string;
  /** --healthz-ip. */
  healthzIp: string;
  /** --healthz-port. */
  healthzPort: string;
  /** --resync-interval, seconds. */
  resyncInterval: string;
  /** -v/--verbose. */
  verbose?: boolean | undefined;
  /** --log-level. */
  logLevel: string;
  /** --log-json[=bool]. */
  logJson: string | boolean;
  /** --cni-server[=bool]. */
  cniServer: string | boolean;
}

/** The agent's options and the lease store it runs on. */
export interface AgentCliOptions extends AgentOptions {
  /** etcd connection (the etcd lease store). */
  etcd: EtcdOptions;
}

/** Validates flag values and turns them into the agent's options (throws {@linkcode CliError}). */
export function agentOptionsFrom(v: AgentFlagValues, signal: AbortSignal): AgentCliOptions {
  return {
    etcd: etcdOptionsFrom(v),
    iface: v.iface,
    ifaceRegex: v.ifaceRegex,
    ...(v.publicIp ? { publicIP: v.publicIp } : {}),
    ...(v.publicIpv6 ? { publicIPv6: ipv6Flag("--public-ipv6", v.publicIpv6) } : {}),
    ipMasq: parseBool("--ip-masq", v.ipMasq),
    subnetFile: v.subnetFile,
    renewMarginSeconds: num("--subnet-lease-renew-margin", v.subnetLeaseRenewMargin, 0) * 60,
    leaseTtlSeconds: num("--lease-ttl", v.leaseTtl, 2),
    healthz: { hostname: v.healthzIp, port: num("--healthz-port", v.healthzPort, 0) },
    resyncSeconds: num("--resync-interval", v.resyncInterval, 0.1),
    signal,
  };
}

/** Registers `weft agent`. */
export function registerAgent(program: Command): void {
  const cmd = program.command("agent")
    .description("the per-node agent (flanneld's job): lease, datapath, subnet.env, rules, metrics");
  addEtcdFlags(addPolicyFlags(addKubeFlags(cmd)))
    .option(
      "--iface <name-or-ip>",
      "external interface by name or IP (repeatable; the first that exists wins)",
      collect,
      envList("--iface"),
    )
    .option(
      "--iface-regex <regex>",
      "external interface whose name or IP matches (repeatable)",
      collect,
      envList("--iface-regex"),
    )
    .option(
      "--public-ip <ip>",
      "IP to publish in the lease (default: the interface's)",
      envDefault("--public-ip", ""),
    )
    .option(
      "--public-ipv6 <ip>",
      "IPv6 address to publish in a dual-stack lease (default: the interface's global one)",
      envDefault("--public-ipv6", ""),
    )
    .option(
      "--ip-masq [bool]",
      "masquerade traffic from pods leaving the cluster network",
      envDefault("--ip-masq", "false"),
    )
    .option(
      "--subnet-file <path>",
      "where to write subnet.env",
      envDefault("--subnet-file", DEFAULT_SUBNET_FILE),
    )
    .option(
      "--subnet-lease-renew-margin <minutes>",
      "renew the lease this long before it expires",
      envDefault("--subnet-lease-renew-margin", "60"),
    )
    .option("--lease-ttl <seconds>", "lease TTL (flannel: 24 h)", envDefault("--lease-ttl", "86400"))
    .option("--healthz-ip <ip>", "health/metrics listen address", envDefault("--healthz-ip", "0.0.0.0"))
    .option(
      "--healthz-port <port>",
      "port of /healthz, /readyz and /metrics (0 disables)",
      envDefault("--healthz-port", "0"),
    )
    .option(
      "--resync-interval <seconds>",
      "period of the full reconcile pass (kernel drift, pruning, rules, subnet.env)",
      envDefault("--resync-interval", "10"),
    )
    .option("-v, --verbose", "debug logging (same as --log-level=debug)")
    .option("--log-level <level>", `one of ${LOG_LEVELS.join(", ")}`, envDefault("--log-level", "info"))
    .option("--log-json [bool]", "one JSON object per log line", envDefault("--log-json", "false"))
    .option(
      "--cni-server [bool]",
      "run the node's CNI calls in the agent (socket beside --subnet-file; the plugin falls back to itself)",
      envDefault("--cni-server", "true"),
    )
    .action((flags) => runAgentCommand(flags));
}

/** `weft agent`: logging, signals, the CNI server, then the agent until a signal stops it. */
async function runAgentCommand(flags: AgentFlagValues): Promise<void> {
  const level = flags.verbose ? "debug" : flags.logLevel;
  if (!(LOG_LEVELS as readonly string[]).includes(level)) {
    throw new CliError(`--log-level ${level}: one of ${LOG_LEVELS.join(", ")}`, 2);
  }
  const stop = new AbortController();
  const opts = agentOptionsFrom(flags, stop.signal);
  const openSource = await agentSourceOpener(flags, opts);
  await setupLogging({
    level: level as (typeof LOG_LEVELS)[number],
    json: parseBool("--log-json", flags.logJson),
  });
  const onSignal = () => stop.abort();
  Deno.addSignalListener("SIGTERM", onSignal);
  Deno.addSignalListener("SIGINT", onSignal);
  const { runAgent } = await import("../agent/agent.ts");
  const { startCniServer } = await import("./cni_server.ts");
  const cni = parseBool("--cni-server", flags.cniServer)
    ? await startCniServer(opts.subnetFile, { kinds: podRegistrationKinds(opts) })
    : { close: () => Promise.resolve() };
  try {
    await runAgent(await openSource(stop.signal), opts);
  } catch (err) {
    if (stop.signal.aborted) return;
    throw new CliError((err as Error).message);
  } finally {
    await cni.close();
  }
}
