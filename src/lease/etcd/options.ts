/**
 * How to reach etcd (flanneld's `--etcd-*` flags as data) and how to explain etcd failures to a human.
 *
 * This file does not touch `npm:etcd3`: the CLI and the CNI plugin import it freely, and only
 * `openEtcdRegistry()` (etcd_registry.ts) pays the client's ~200 ms import.
 *
 * @module
 */

/** Default key prefix, flannel's. */
export const DEFAULT_ETCD_PREFIX = "/coreos.com/network";

/** How to reach etcd (flanneld's flags). */
export interface EtcdOptions {
  /** Client URLs (`http://…` or `https://…`); calls go to any of them, failing over to the others. */
  endpoints: string[];
  /** Key prefix, default `/coreos.com/network` ({@linkcode DEFAULT_ETCD_PREFIX}). */
  prefix: string;
  /** CA file (PEM) that signed etcd's server certificate (`--etcd-cafile`). */
  caFile?: string;
  /** Client certificate (PEM) for client-certificate TLS (`--etcd-certfile`). */
  certFile?: string;
  /** Client key (PEM) (`--etcd-keyfile`). */
  keyFile?: string;
  /** Username for password auth (`--etcd-username`). */
  username?: string;
  /** Password (`--etcd-password`). */
  password?: string;
  /** Per-call timeout in ms for unary calls (default 5000). Watch streams have none. */
  timeoutMs?: number;
}

/** Thrown when etcd cannot be used with the given options (an unreadable TLS file, no endpoints). */
export class EtcdConfigError extends Error {
  /** Creates the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "EtcdConfigError";
  }
}

/**
 * Explains an etcd client error in one line, naming the likely cause and the flag to look at.
 *
 * @example
 * ```ts
 * try { await manager.listLeases(); } catch (err) { console.error(explainEtcdError(err, opts)); }
 * ```
 */
export function explainEtcdError(err: unknown, opts: Pick<EtcdOptions, "endpoints">): string {
  const msg = err instanceof Error ? err.message : String(err);
  if (err instanceof EtcdConfigError) return msg;
  if (/authentication failed|invalid user ID or password/i.test(msg)) {
    return `etcd rejected the username or password (--etcd-username/--etcd-password): ${msg}`;
  }
  const https = opts.endpoints.some((e) => e.startsWith("https://"));
  if (
    /BadCertificate|bad certificate|CertificateRequired|certificate required|UnknownCA|unknown ca/i.test(msg)
  ) {
    return `TLS with etcd failed: etcd refused the client certificate (--etcd-certfile/--etcd-keyfile) — is ` +
      `it signed by a CA that etcd trusts (its --trusted-ca-file)? (${msg})`;
  }
  if (
    /unable to verify|self.signed certificate|unable to get (local )?issuer|certificate verify failed|UnknownIssuer/i
      .test(msg)
  ) {
    return `TLS with etcd failed: etcd's server certificate is not signed by --etcd-cafile (${msg})`;
  }
  if (/altname|does not match|ERR_TLS_CERT_ALTNAME|NotValidForName/i.test(msg)) {
    return `TLS with etcd failed: etcd's server certificate does not name the address in --etcd-endpoints ` +
      `(${msg})`;
  }
  if (https && /EPIPE|ECONNRESET|socket hang up|closed/i.test(msg)) {
    // etcd drops the connection mid-handshake when it does not trust the client certificate.
    return `TLS with etcd failed: the server closed the connection during the handshake — is the client ` +
      `certificate (--etcd-certfile/--etcd-keyfile) signed by a CA that etcd trusts? (${msg})`;
  }
  if (/certificate|handshake|SSL|TLS|alert/i.test(msg)) {
    return `TLS with etcd failed: check --etcd-cafile/--etcd-certfile/--etcd-keyfile (${msg})`;
  }
  if (/user name is empty|permission denied/i.test(msg)) {
    return `etcd denied access (auth is enabled: set --etcd-username/--etcd-password): ${msg}`;
  }
  if (/circuit breaker|UNAVAILABLE|ECONNREFUSED|No connection|deadline/i.test(msg)) {
    return `etcd is unreachable at ${opts.endpoints.join(",")} (${msg})`;
  }
  return msg;
}
