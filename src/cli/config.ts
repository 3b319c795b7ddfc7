/**
 * `weft config set FILE|-` and `weft config get`: the network config at `<prefix>/config`, the key
 * flanneld reads, validated with flannel's rules before it is written.
 *
 * @module
 */
import type { Command } from "@commander-js/extra-typings";
import { parseBackendOptions } from "../backend/registry.ts";
import {
  ConfigError,
  DEFAULTED_BACKEND_WARNING,
  type NetworkConfig,
  parseNetworkConfig,
} from "../config/net_conf.ts";
import { formatIP, formatNet } from "../net/ip.ts";
import { CliError } from "./errors.ts";
import { addEnvFileFlag } from "./env_file.ts";
import { addEtcdFlags, etcdFlagValues, withSubnetManager } from "./etcd_flags.ts";

async function readInput(file: string): Promise<string> {
  if (file !== "-") {
    try {
      return await Deno.readTextFile(file);
    } catch (err) {
      throw new CliError(`${file}: ${(err as Error).message}`, 2);
    }
  }
  let text = "";
  const dec = new TextDecoder();
  for await (const c of Deno.stdin.readable) text += dec.decode(c, { stream: true });
  return text + dec.decode();
}

/** One line per family: what the config hands out. */
export function describeNetworkConfig(cfg: NetworkConfig): string[] {
  const lines: string[] = [];
  if (cfg.network && cfg.subnetMin && cfg.subnetMax) {
    lines.push(
      `IPv4 ${formatNet(cfg.network)}: /${cfg.subnetLen} subnets ${formatIP(cfg.subnetMin.ip)} – ` +
        `${formatIP(cfg.subnetMax.ip)}`,
    );
  }
  if (cfg.ipv6Network && cfg.ipv6SubnetMin && cfg.ipv6SubnetMax) {
    lines.push(
      `IPv6 ${formatNet(cfg.ipv6Network)}: /${cfg.ipv6SubnetLen} subnets ${
        formatIP(cfg.ipv6SubnetMin.ip)
      } – ` +
        `${formatIP(cfg.ipv6SubnetMax.ip)}`,
    );
  }
  lines.push(`backend ${cfg.backend.type}${cfg.backendDefaulted ? " (default)" : ""}`);
  return lines;
}

/** Registers `weft config`. */
export function registerConfig(program: Command): void {
  const config = program.command("config").description("the network config in etcd (<prefix>/config)");
  addEnvFileFlag(
    addEtcdFlags(config.command("set").description("validate FILE (or - for stdin) and write it to etcd")),
  )
    .argument("<file>", "net-conf.json, or - for stdin")
    .action(async (file, flags) => {
      const text = await readInput(file);
      let cfg: NetworkConfig;
      try {
        cfg = parseNetworkConfig(text);
        parseBackendOptions(cfg); // each backend checks its own options
      } catch (err) {
        if (err instanceof ConfigError) throw new CliError(err.message, 2);
        throw err;
      }
      if (cfg.backendDefaulted) console.error(`weft: warning: ${DEFAULTED_BACKEND_WARNING}`);
      await withSubnetManager(flags, (m) => m.registry.setConfig(text));
      console.log(`network config written to ${etcdFlagValues(flags).etcdPrefix.replace(/\/$/, "")}/config`);
      for (const line of describeNetworkConfig(cfg)) console.log(`  ${line}`);
    });
  addEnvFileFlag(addEtcdFlags(config.command("get").description("print the network config stored in etcd")))
    .action(async (flags) => {
      const text = await withSubnetManager(flags, (m) => m.registry.getConfig());
      if (text === undefined) {
        throw new CliError(
          `no network config at ${etcdFlagValues(flags).etcdPrefix.replace(/\/$/, "")}/config`,
          3,
        );
      }
      console.log(text.trimEnd());
    });
}
