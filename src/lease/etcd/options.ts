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

/** The address a Node socket error names (`connect ECONNREFUSED 10.0.0.1:2379.` → `10.0.0.1:2379`). */
function addressIn(msg: string): string {
  const m = /\b(?:ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|ETIMEDOUT|ECONNRESET)\s+(\[?[0-9a-fA-F:.]+\]?:\d+)/
    .exec(msg);
  return m ? ` ${m[1]}` : "";
}

/**
 * What a connection failure of the etcd client means, in plain words (gRPC's and Node's codes named for
 * what they are), or undefined when the error itself says nothing: etcd3's "Execution prevented because
 * the circuit breaker is open" only means the last attempts failed and the client pauses — the cause is
 * the failure before it.
 */
export function etcdConnectionCause(msg: string): string | undefined {
  if (/circuit breaker is open/i.test(msg)) return undefined;
  const at = addressIn(msg);
  if (/ECONNREFUSED/.test(msg)) {
    return `connection refused by${at}: nothing listens there (etcd stopped, or a wrong port)`;
  }
  if (/EHOSTUNREACH|ENETUNREACH|No route to host/i.test(msg)) return `no route to${at || " etcd"}`;
  if (/ENOTFOUND|EAI_AGAIN|getaddrinfo|Name resolution/i.test(msg)) return "its host name does not resolve";
  if (/ETIMEDOUT|DEADLINE_EXCEEDED|deadline|not established within/i.test(msg)) {
    return `no answer in time${
      at ? ` from${at}` : ""
    }: a partition, a firewall dropping packets, or etcd overloaded`;
  }
  if (/Connection dropped|ECONNRESET|socket hang up|stream lost|closed/i.test(msg)) {
    return "the connection dropped (etcd restarted, or went away)";
  }
  if (/UNAVAILABLE|No connection/i.test(msg)) return `etcd is unavailable (${msg})`;
  return undefined;
}

/**
 * Explains an etcd client error in one line, naming the likely cause and the flag to look at. `lastCause`
 * stands in when the error names none (etcd3's circuit breaker: see {@linkcode etcdConnectionCause}).
 *
 * @example
 * ```ts
 * try { await manager.listLeases(); } catch (err) { console.error(explainEtcdError(err, opts)); }
 * ```
 */
export function explainEtcdError(
  err: unknown,
  opts: Pick<EtcdOptions, "endpoints">,
  lastCause?: string,
): string {
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
  if (
    /circuit breaker|UNAVAILABLE|ECONNREFUSED|EHOSTUNREACH|ENETUNREACH|ENOTFOUND|ETIMEDOUT|No connection|deadline|not established within|stream lost/i
      .test(msg)
  ) {
    const cause = etcdConnectionCause(msg) ?? lastCause ??
      "the last attempts failed (the client pauses a moment)";
    return `etcd is unreachable at ${opts.endpoints.join(",")}: ${cause}; check that etcd runs there and ` +
      "that --etcd-endpoints names it";
  }
  return msg;
}
