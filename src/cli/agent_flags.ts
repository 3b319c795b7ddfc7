/**
 * `weft agent`'s flags: every flag of flanneld v0.28.9 (main.go, with the etcd, kube flags of
 * etcd_flags.ts and kube_flags.ts, and klog's `-v`, `-vmodule`, `-log_backtrace_at` that flanneld
 * copies), each with flanneld's meaning, plus weft's own (`--resync-interval`, `--lease-ttl`,
 * `--log-level`, …). Syntax and `FLANNELD_*` variables: src/cli/flags.ts.
 *
 * Where a flanneld flag cannot apply to weft it is accepted with one warning saying why
 * ({@linkcode AgentCliOptions.warnings}); nothing flanneld takes is refused.
 *
 * @module
 */
import type { AgentOptions } from "../agent/agent.ts";
import { DEFAULT_SUBNET_FILE } from "../config/subnet_env.ts";
import type { EtcdOptions } from "../lease/etcd/options.ts";
import { LOG_LEVELS } from "../log.ts";
import { formatIP, parseIP } from "../net/ip.ts";
import { CliError } from "./errors.ts";
import { type EtcdFlagValues, etcdOptionsFrom } from "./etcd_flags.ts";
import { type FlagSpec, parseBool } from "./flags.ts";

/** A flanneld flag of main.go (not etcd's or kube's). */
function flanneld(
  name: string,
  kind: FlagSpec["kind"],
  help: string,
  more: Partial<FlagSpec> = {},
): FlagSpec {
  return { name, kind, help, origin: "flanneld", ...more };
}

/** weft's own flag. */
function weft(name: string, kind: FlagSpec["kind"], help: string, more: Partial<FlagSpec> = {}): FlagSpec {
  return { name, kind, help, origin: "weft", ...more };
}

/** The agent's flags besides the etcd, kube and policy ones, in flanneld's order, then weft's. */
export const AGENT_FLAGS: readonly FlagSpec[] = [
  flanneld(
    "iface",
    "list",
    "external interface by name or IP (repeatable or comma-separated; first found wins)",
    {
      arg: "name-or-ip",
    },
  ),
  flanneld("iface-regex", "list", "external interface whose IP, else name, matches (repeatable)", {
    arg: "regex",
  }),
  flanneld("iface-can-reach", "string", "external interface: the one `ip route get <ip>` uses", {
    arg: "ip",
  }),
  flanneld("subnet-file", "string", "where to write subnet.env", {
    arg: "path",
    default: DEFAULT_SUBNET_FILE,
  }),
  flanneld("public-ip", "string", "IP to publish in the lease (default: the interface's)", { arg: "ip" }),
  flanneld("public-ipv6", "string", "IPv6 address to publish in a dual-stack lease", { arg: "ip" }),
  flanneld("subnet-lease-renew-margin", "int", "renew the lease this long before it expires (1–1439)", {
    arg: "minutes",
    default: "60",
  }),
  flanneld("ip-masq", "bool", "masquerade traffic from pods leaving the cluster network"),
  flanneld("ip-masq-fully-random-disable", "bool", "masquerade without fully-random port mapping"),
  flanneld("version", "bool", "print the version and exit", { env: false }),
  flanneld("healthz-ip", "string", "health/metrics listen address", { arg: "ip", default: "0.0.0.0" }),
  flanneld("healthz-port", "int", "port of /healthz, /readyz and /metrics (0 disables)", {
    arg: "port",
    default: "0",
  }),
  flanneld("iptables-resync", "int", "period of the iptables rules' resync", {
    arg: "seconds",
    default: "5",
  }),
  flanneld("iptables-forward-rules", "bool", "accept the cluster network's traffic in the FORWARD chain", {
    default: "true",
  }),
  flanneld("ip-blackhole-route", "bool", "blackhole route for the node's own subnet (kept each resync)"),
  {
    name: "v",
    kind: "int",
    arg: "level",
    help: "verbosity: ≥ 1 debug, ≥ 4 trace",
    default: "0",
    origin: "klog",
  },
  {
    name: "vmodule",
    kind: "string",
    arg: "pattern=N,…",
    help: "per-file verbosity (no effect)",
    origin: "klog",
  },
  {
    name: "log_backtrace_at",
    kind: "string",
    arg: "file:line",
    help: "Go stack trace (no effect)",
    origin: "klog",
  },
  weft("lease-ttl", "string", "lease TTL (flanneld: 24 h, fixed)", { arg: "seconds", default: "86400" }),
  weft("resync-interval", "string", "period of the full reconcile pass (kernel drift, pruning, rules)", {
    arg: "seconds",
    default: "10",
  }),
  weft("verbose", "bool", "debug logging (same as --log-level=debug; also -v alone)"),
  weft("log-level", "string", `one of ${LOG_LEVELS.join(", ")}`, { arg: "level", default: "info" }),
  weft("log-json", "bool", "one JSON object per log line"),
  weft("cni-server", "bool", "run the node's CNI calls in the agent (the plugin falls back to itself)", {
    default: "true",
  }),
];

/** The flag values of `weft agent`, as commander hands them over (after src/cli/flags.ts's goArgs). */
export interface AgentFlagValues extends EtcdFlagValues {
  /** --iface (repeatable). */
  iface: string[];
  /** --iface-regex (repeatable). */
  ifaceRegex: string[];
  /** --iface-can-reach. */
  ifaceCanReach: string;
  /** --public-ip. */
  publicIp: string;
  /** --public-ipv6. */
  publicIpv6: string;
  /** --ip-masq[=bool]. */
  ipMasq: string | boolean;
  /** --ip-masq-fully-random-disable[=bool]. */
  ipMasqFullyRandomDisable: string | boolean;
  /** --version[=bool]. */
  version: string | boolean;
  /** --subnet-file. */
  subnetFile: string;
  /** --subnet-lease-renew-margin, minutes. */
  subnetLeaseRenewMargin: string;
  /** --healthz-ip. */
  healthzIp: string;
  /** --healthz-port. */
  healthzPort: string;
  /** --iptables-resync, seconds. */
  iptablesResync: string;
  /** --iptables-forward-rules[=bool]. */
  iptablesForwardRules: string | boolean;
  /** --ip-blackhole-route[=bool]. */
  ipBlackholeRoute: string | boolean;
  /** klog's -v. */
  v: string;
  /** klog's -vmodule. */
  vmodule: string;
  /** klog's -log_backtrace_at. */
  log_backtrace_at: string;
  /** --lease-ttl, seconds. */
  leaseTtl: string;
  /** --resync-interval, seconds. */
  resyncInterval: string;
  /** --verbose[=bool] (and -v alone). */
  verbose: string | boolean;
  /** --log-level. */
  logLevel: string;
  /** --log-json[=bool]. */
  logJson: string | boolean;
  /** --cni-server[=bool]. */
  cniServer: string | boolean;
}

/** The agent's options, the lease store it runs on, and what the CLI itself does with the flags. */
export interface AgentCliOptions extends AgentOptions {
  /** etcd connection (the etcd lease store). */
  etcd: EtcdOptions;
  /** `--version`: print the version and exit. */
  version: boolean;
  /** The log level `--log-level`, `--verbose` and `-v` make (the most verbose wins). */
  logLevel: (typeof LOG_LEVELS)[number];
  /** `--log-json`. */
  logJson: boolean;
  /** `--cni-server`. */
  cniServer: boolean;
  /** One line per flag given that cannot apply to weft, saying why (logged once at start). */
  warnings: string[];
}

function num(flag: string, v: string, min: number, max = Infinity): number {
  const n = Number(v);
  if (v.trim() === "" || !Number.isFinite(n) || n < min || n > max) {
    throw new CliError(`${flag} ${v}: must be a number ≥ ${min}${max < Infinity ? ` and ≤ ${max}` : ""}`, 2);
  }
  return n;
}

/** An IP address flag, in its canonical spelling (as leases and the kernel print it). */
function ipFlag(flag: string, v: string, family?: 4 | 6): string {
  let ip;
  try {
    ip = parseIP(v.trim());
  } catch {
    throw new CliError(`${flag} ${v}: not an IP address`, 2);
  }
  if (family && ip.family !== family) throw new CliError(`${flag} ${v}: must be an IPv${family} address`, 2);
  return formatIP(ip);
}

/**
 * The log level of `--log-level`, `--verbose` and klog's `-v` (flanneld logs at klog V(0) to V(6):
 * V(1)–V(3) are weft's debug, V(4) and more its trace); the most verbose of them wins.
 */
export function logLevelFrom(
  v: Pick<AgentFlagValues, "logLevel" | "verbose" | "v">,
): AgentCliOptions["logLevel"] {
  const levels = LOG_LEVELS as readonly string[];
  if (!levels.includes(v.logLevel)) {
    throw new CliError(`--log-level ${v.logLevel}: one of ${levels.join(", ")}`, 2);
  }
  const klog = Number(v.v || "0");
  const wanted = [
    v.logLevel,
    parseBool("--verbose", v.verbose) ? "debug" : "info",
    klog >= 4 ? "trace" : klog >= 1 ? "debug" : "info",
  ];
  return levels[Math.min(...wanted.map((l) => levels.indexOf(l)))] as AgentCliOptions["logLevel"];
}

/** The warnings for flanneld flags given that cannot apply to weft. */
function inapplicable(v: AgentFlagValues): string[] {
  const out: string[] = [];
  if (v.vmodule) {
    out.push(
      `-vmodule=${v.vmodule} has no effect: it sets klog's verbosity per Go source file, and weft is not ` +
        "flanneld's Go code; use -v or --log-level",
    );
  }
  if (v.log_backtrace_at) {
    out.push(
      `-log_backtrace_at=${v.log_backtrace_at} has no effect: it prints a Go stack trace when klog logs ` +
        "at that Go source line, and weft has no such lines",
    );
  }
  return out;
}

/** The interface and address flags. */
function ifaceOptionsFrom(v: AgentFlagValues) {
  return {
    // Comma-separated lists are weft's addition for --iface only (flanneld takes one name or IP per
    // use); a regex may well contain a comma (`{1,3}`).
    iface: v.iface.flatMap((s) => s.split(",")).map((s) => s.trim()).filter(Boolean),
    ifaceRegex: v.ifaceRegex.filter(Boolean),
    ...(v.ifaceCanReach ? { ifaceCanReach: ipFlag("--iface-can-reach", v.ifaceCanReach) } : {}),
    ...(v.publicIp ? { publicIP: ipFlag("--public-ip", v.publicIp, 4) } : {}),
    ...(v.publicIpv6 ? { publicIPv6: ipFlag("--public-ipv6", v.publicIpv6, 6) } : {}),
  };
}

/** Validates flag values and turns them into the agent's options (throws {@linkcode CliError}). */
export function agentOptionsFrom(v: AgentFlagValues, signal: AbortSignal): AgentCliOptions {
  for (const re of v.ifaceRegex) {
    try {
      new RegExp(re);
    } catch (err) {
      throw new CliError(`--iface-regex ${re}: ${(err as Error).message}`, 2);
    }
  }
  return {
    etcd: etcdOptionsFrom(v),
    ...ifaceOptionsFrom(v),
    ipMasq: parseBool("--ip-masq", v.ipMasq),
    ipMasqFullyRandom: !parseBool("--ip-masq-fully-random-disable", v.ipMasqFullyRandomDisable),
    iptablesResyncSeconds: num("--iptables-resync", v.iptablesResync, 1),
    iptablesForwardRules: parseBool("--iptables-forward-rules", v.iptablesForwardRules),
    ipBlackholeRoute: parseBool("--ip-blackhole-route", v.ipBlackholeRoute),
    subnetFile: v.subnetFile,
    // flanneld exits on a margin outside 1–1439 minutes; weft also caps it at half the TTL.
    renewMarginSeconds: num("--subnet-lease-renew-margin", v.subnetLeaseRenewMargin, 1, 1439) * 60,
    leaseTtlSeconds: num("--lease-ttl", v.leaseTtl, 2),
    healthz: { hostname: v.healthzIp, port: num("--healthz-port", v.healthzPort, 0, 65535) },
    resyncSeconds: num("--resync-interval", v.resyncInterval, 0.1),
    signal,
    version: parseBool("--version", v.version),
    logLevel: logLevelFrom(v),
    logJson: parseBool("--log-json", v.logJson),
    cniServer: parseBool("--cni-server", v.cniServer),
    warnings: inapplicable(v),
  };
}
