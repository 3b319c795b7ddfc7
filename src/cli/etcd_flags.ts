/**
 * flanneld's etcd flags, for any weft command that talks to etcd:
 * `--etcd-endpoints --etcd-prefix --etcd-cafile --etcd-certfile --etcd-keyfile --etcd-username
 * --etcd-password`, each also read from `FLANNELD_<FLAG>` (e.g. `FLANNELD_ETCD_ENDPOINTS`) when the
 * flag is not given — the variables a flanneld DaemonSet already sets. A flag on the command line wins
 * over its variable; `--help` names the variable but never prints its value (passwords).
 *
 * @example
 * ```ts
 * addEtcdFlags(program.command("agent"))
 *   .option("--iface <name>", "…")
 *   .action(async (flags) => {
 *     const registry = await openEtcdRegistry(etcdOptionsFrom(flags));
 *   });
 * ```
 *
 * @module
 */
import type { Command } from "@commander-js/extra-typings";
import { DEFAULT_ETCD_PREFIX, type EtcdOptions, explainEtcdError } from "../lease/etcd/options.ts";
import { openEtcdRegistry, SubnetManager } from "../lease/etcd/mod.ts";
import { CliError } from "./errors.ts";
import { flagOption as flag } from "./flags.ts";

/** flanneld's default endpoint (it also tries the long-gone port 4001). */
export const DEFAULT_ETCD_ENDPOINTS = "http://127.0.0.1:2379";

/**
 * Adds the etcd flags to `cmd` and returns it, typed so that the action's options have
 * {@linkcode EtcdFlagValues}' fields. Pass those to {@linkcode etcdOptionsFrom}.
 */
export function addEtcdFlags(cmd: Command) {
  return cmd
    .addOption(flag("--etcd-endpoints <urls>", "comma-separated etcd endpoints", DEFAULT_ETCD_ENDPOINTS))
    .addOption(flag("--etcd-prefix <prefix>", "etcd key prefix", DEFAULT_ETCD_PREFIX))
    .addOption(flag("--etcd-cafile <file>", "CA that signed etcd's certificate (TLS)", ""))
    .addOption(flag("--etcd-certfile <file>", "client certificate for etcd (TLS)", ""))
    .addOption(flag("--etcd-keyfile <file>", "client key for etcd (TLS)", ""))
    .addOption(flag("--etcd-username <name>", "etcd username (password auth)", ""))
    .addOption(flag("--etcd-password <password>", "etcd password", ""));
}

/** The etcd flag values of a command. */
export interface EtcdFlagValues {
  /** --etcd-endpoints */
  etcdEndpoints: string;
  /** --etcd-prefix */
  etcdPrefix: string;
  /** --etcd-cafile */
  etcdCafile: string;
  /** --etcd-certfile */
  etcdCertfile: string;
  /** --etcd-keyfile */
  etcdKeyfile: string;
  /** --etcd-username */
  etcdUsername: string;
  /** --etcd-password */
  etcdPassword: string;
}

/** Converts flag values to registry options (empty values are left out). */
export function etcdOptionsFrom(v: EtcdFlagValues): EtcdOptions {
  const o: EtcdOptions = {
    endpoints: v.etcdEndpoints.split(",").map((s) => s.trim()).filter(Boolean),
    prefix: v.etcdPrefix.replace(/\/$/, "") || DEFAULT_ETCD_PREFIX,
  };
  if (v.etcdCafile) o.caFile = v.etcdCafile;
  if (v.etcdCertfile) o.certFile = v.etcdCertfile;
  if (v.etcdKeyfile) o.keyFile = v.etcdKeyfile;
  if (v.etcdUsername) o.username = v.etcdUsername;
  if (v.etcdPassword) o.password = v.etcdPassword;
  return o;
}

/**
 * Opens etcd with the command's flags, runs `fn` with a subnet manager, and closes etcd again. etcd
 * failures become a {@linkcode CliError} explaining the cause (unreachable, TLS, password).
 */
export async function withSubnetManager<T>(
  flags: EtcdFlagValues,
  fn: (m: SubnetManager) => Promise<T>,
): Promise<T> {
  const opts = etcdOptionsFrom(flags);
  let reg;
  try {
    reg = await openEtcdRegistry(opts);
  } catch (err) {
    throw new CliError(explainEtcdError(err, opts));
  }
  try {
    return await fn(new SubnetManager(reg));
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw new CliError(explainEtcdError(err, opts));
  } finally {
    await reg.close();
  }
}
