/**
 * `weft agent` with flanneld's flag names (each also read from `FLANNELD_<FLAG>`).
 *
 * @module
 */
import type { Command } from "@commander-js/extra-typings";
import { DEFAULT_SUBNET_FILE } from "../config/subnet_env.ts";
import { LOG_LEVELS, setupLogging } from "../log.ts";
import { CliError } from "./main.ts";
import { addEtcdFlags, envDefault, envName, etcdOptionsFrom } from "./etcd_flags.ts";

function collect(value: string, previous: string[]): string[] {
  return [...previous, ...value.split(",").map((s) => s.trim()).filter(Boolean)];
}

function envList(flag: string): string[] {
  const v = Deno.env.get(envName(flag));
  return v ? v.split(",").map((s) => s.trim()).filter(Boolean) : [];
}

function num(flag: string, v: string, min: number): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n < min) throw new CliError(`${flag} ${v}: must be a number ≥ ${min}`, 2);
  return n;
}

/** Registers `weft agent`. */
export function registerAgent(program: Command): void {
  const cmd = program.command("agent")
    .description("the per-node agent (flanneld's job): lease, datapath, subnet.env, rules, metrics");
  addEtcdFlags(cmd)
    .option(
      "--iface <name-or-ip>",
      "external interface (repeatable; first match wins)",
      collect,
      envList("--iface"),
    )
    .option(
      "--iface-regex <regex>",
      "external interface by regex (repeatable)",
      collect,
      envList("--iface-regex"),
    )
    .option(
      "--public-ip <ip>",
      "IP to publish in the lease (default: the interface's)",
      envDefault("--public-ip", ""),
    )
    .option(
      "--ip-masq",
      "install masquerade rules for traffic leaving the cluster network",
      envDefault("--ip-masq", "") === "true",
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
    .option("--healthz-port <port>", "health/metrics port (0 disables)", envDefault("--healthz-port", "0"))
    .option("--resync-interval <seconds>", "full reconcile period", envDefault("--resync-interval", "10"))
    .option("-v, --verbose", "debug logging")
    .option("--log-level <level>", `one of ${LOG_LEVELS.join(", ")}`, envDefault("--log-level", "info"))
    .option("--log-json", "JSON log lines")
    .action(async (opts) => {
      const level = opts.verbose ? "debug" : opts.logLevel;
      if (!(LOG_LEVELS as readonly string[]).includes(level)) {
        throw new CliError(`--log-level ${level}: one of ${LOG_LEVELS.join(", ")}`, 2);
      }
      await setupLogging({ level: level as (typeof LOG_LEVELS)[number], json: !!opts.logJson });
      const stop = new AbortController();
      const onSignal = () => stop.abort();
      Deno.addSignalListener("SIGTERM", onSignal);
      Deno.addSignalListener("SIGINT", onSignal);
      const { runAgent } = await import("../agent/agent.ts");
      try {
        await runAgent({
          etcd: etcdOptionsFrom(opts),
          iface: opts.iface,
          ifaceRegex: opts.ifaceRegex,
          ...(opts.publicIp ? { publicIP: opts.publicIp } : {}),
          ipMasq: !!opts.ipMasq,
          subnetFile: opts.subnetFile,
          renewMarginSeconds: num("--subnet-lease-renew-margin", opts.subnetLeaseRenewMargin, 0) * 60,
          leaseTtlSeconds: num("--lease-ttl", opts.leaseTtl, 2),
          healthz: { hostname: opts.healthzIp, port: num("--healthz-port", opts.healthzPort, 0) },
          resyncSeconds: num("--resync-interval", opts.resyncInterval, 0.1),
          signal: stop.signal,
        });
      } catch (err) {
        if (stop.signal.aborted) return;
        throw new CliError((err as Error).message);
      }
    });
}
