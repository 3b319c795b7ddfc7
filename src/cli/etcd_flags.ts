/**
 * flanneld's etcd flags for any command, each also read from `FLANNELD_<FLAG>`:
 * `--etcd-endpoints --etcd-prefix --etcd-cafile --etcd-certfile --etcd-keyfile --etcd-username
 * --etcd-password`.
 *
 * @module
 */
import type { Command } from "@commander-js/extra-typings";
import type { EtcdOptions } from "../subnet/mod.ts";

/** The environment variable flanneld reads for `--flag-name`: `FLANNELD_FLAG_NAME`. */
export function envName(flag: string): string {
  return `FLANNELD_${flag.replace(/^--/, "").replace(/-/g, "_").toUpperCase()}`;
}

/** Default of `--flag` from its FLANNELD_* variable, else `dflt`. */
export function envDefault(flag: string, dflt: string): string {
  return Deno.env.get(envName(flag)) ?? dflt;
}

/** Adds the etcd flags to `cmd` (typed so `opts.etcdEndpoints` … are known). */
export function addEtcdFlags(cmd: Command) {
  return cmd
    .option(
      "--etcd-endpoints <urls>",
      "comma-separated etcd endpoints",
      envDefault("--etcd-endpoints", "http://127.0.0.1:2379"),
    )
    .option("--etcd-prefix <prefix>", "etcd key prefix", envDefault("--etcd-prefix", "/coreos.com/network"))
    .option("--etcd-cafile <file>", "CA certificate for etcd TLS", envDefault("--etcd-cafile", ""))
    .option("--etcd-certfile <file>", "client certificate for etcd TLS", envDefault("--etcd-certfile", ""))
    .option("--etcd-keyfile <file>", "client key for etcd TLS", envDefault("--etcd-keyfile", ""))
    .option("--etcd-username <name>", "etcd username", envDefault("--etcd-username", ""))
    .option("--etcd-password <password>", "etcd password", envDefault("--etcd-password", ""));
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

/** Converts flag values to registry options. */
export function etcdOptionsFrom(v: EtcdFlagValues): EtcdOptions {
  const o: EtcdOptions = {
    endpoints: v.etcdEndpoints.split(",").map((s) => s.trim()).filter(Boolean),
    prefix: v.etcdPrefix.replace(/\/$/, ""),
  };
  if (v.etcdCafile) o.caFile = v.etcdCafile;
  if (v.etcdCertfile) o.certFile = v.etcdCertfile;
  if (v.etcdKeyfile) o.keyFile = v.etcdKeyfile;
  if (v.etcdUsername) o.username = v.etcdUsername;
  if (v.etcdPassword) o.password = v.etcdPassword;
  return o;
}
