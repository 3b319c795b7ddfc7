/**
 * flanneld's etcd flags, for any weft command that talks to etcd:
 * `--etcd-endpoints --etcd-prefix --etcd-cafile --etcd-certfile --etcd-keyfile --etcd-username
 * --etcd-password`, each also read from `FLANNELD_<FLAG>` (e.g. `FLANNELD_ETCD_ENDPOINTS`) when the
 * flag is not given — the variables a flanneld DaemonSet already sets (src/cli/flags.ts). A flag on the
 * command line wins over its variable; `--help` names the variable but never prints its value.
 *
 * @example
 * ```ts
 * addEtcdFlags(program.command("agent"))
 *   .option("--iface <name>", "…")
 *   .action(async (flags) => {
 *     const registry = await openEtcdRegistry(etcdOptionsFrom(etcdFlagValues(flags)));
 *   });
 * ```
 *
 * @module
 */
import { DEFAULT_ETCD_PREFIX, type EtcdOptions, explainEtcdError } from "../lease/etcd/options.ts";
import type { SubnetManager } from "../lease/etcd/mod.ts";
import { CliError } from "./errors.ts";
import { addFlags, type FlagSpec } from "./flags.ts";

/** flanneld's default endpoint (flanneld also tries etcd2's long-gone port 4001 first; weft does not). */
export const DEFAULT_ETCD_ENDPOINTS = "http://127.0.0.1:2379";

/** flanneld's seven etcd flags (main.go v0.28.9), shared by every command that talks to etcd. */
export const ETCD_FLAGS: readonly FlagSpec[] = [
  {
    name: "etcd-endpoints",
    kind: "string",
    arg: "urls",
    help: "comma-separated etcd endpoints",
    default: DEFAULT_ETCD_ENDPOINTS,
    origin: "flanneld",
  },
  {
    name: "etcd-prefix",
    kind: "string",
    arg: "prefix",
    help: "etcd key prefix",
    default: DEFAULT_ETCD_PREFIX,
    origin: "flanneld",
  },
  {
    name: "etcd-keyfile",
    kind: "string",
    arg: "file",
    help: "client key for etcd (TLS)",
    origin: "flanneld",
  },
  {
    name: "etcd-certfile",
    kind: "string",
    arg: "file",
    help: "client certificate for etcd (TLS)",
    origin: "flanneld",
  },
  {
    name: "etcd-cafile",
    kind: "string",
    arg: "file",
    help: "CA that signed etcd's certificate (TLS)",
    origin: "flanneld",
  },
  {
    name: "etcd-username",
    kind: "string",
    arg: "name",
    help: "etcd username (password auth)",
    origin: "flanneld",
  },
  { name: "etcd-password", kind: "string", arg: "password", help: "etcd password", origin: "flanneld" },
];

/**
 * Adds the etcd flags to `cmd` (its option type is handed back unchanged); read them with
 * {@linkcode etcdFlagValues} and pass those to {@linkcode etcdOptionsFrom}.
 */
export function addEtcdFlags<C extends object>(cmd: C): C {
  return addFlags(cmd, ETCD_FLAGS);
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

/** The etcd flags' values out of a command's parsed options. */
export function etcdFlagValues(opts: object): EtcdFlagValues {
  return opts as EtcdFlagValues;
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
 * Opens etcd with the command's etcd flags ({@linkcode EtcdFlagValues}), runs `fn` with a subnet manager, and closes etcd again. etcd
 * failures become a {@linkcode CliError} explaining the cause (unreachable, TLS, password).
 */
export async function withSubnetManager<T>(
  flags: object,
  fn: (m: SubnetManager) => Promise<T>,
): Promise<T> {
  const opts = etcdOptionsFrom(etcdFlagValues(flags));
  // Imported here: the agent reads these flags too, and in kube mode holds no etcd lease code.
  const { openEtcdRegistry, SubnetManager } = await import("../lease/etcd/mod.ts");
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
