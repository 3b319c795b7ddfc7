/**
 * The etcd v3 {@linkcode Registry}, on `npm:etcd3` — imported lazily here, so the CNI mode and the CLI's
 * help never pay its ~200 ms import.
 *
 * Leases are etcd leases with a TTL; renewal grants a fresh lease and re-puts the key under a
 * compare-on-value transaction, then revokes the old lease (flannel's way: a renewal that races an
 * operator's delete never resurrects the key with someone else's value).
 *
 * @module
 */
import type { Registry, RegistryEntry, RegistryEvent } from "./registry.ts";

/** How to reach etcd (flanneld's flags). */
export interface EtcdOptions {
  /** Client URLs. */
  endpoints: string[];
  /** Key prefix, default `/coreos.com/network`. */
  prefix: string;
  /** CA file (PEM). */
  caFile?: string;
  /** Client certificate (PEM). */
  certFile?: string;
  /** Client key (PEM). */
  keyFile?: string;
  /** Username for password auth. */
  username?: string;
  /** Password. */
  password?: string;
  /** Per-call timeout in ms (default 5000). */
  timeoutMs?: number;
}

/** Thrown when etcd cannot be used with the given options (TLS files, auth). */
export class EtcdConfigError extends Error {
  /** Creates the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "EtcdConfigError";
  }
}

type Etcd3Module = typeof import("etcd3");
type Etcd3 = InstanceType<Etcd3Module["Etcd3"]>;

const enc = new TextEncoder();

/** Explains an etcd client error in one line, naming the likely cause. */
export function explainEtcdError(err: unknown, opts: Pick<EtcdOptions, "endpoints">): string {
  const msg = err instanceof Error ? err.message : String(err);
  if (/authentication failed|invalid user ID or password/i.test(msg)) {
    return `etcd rejected the username or password (${msg})`;
  }
  const https = opts.endpoints.some((e) => e.startsWith("https://"));
  if (https && /EPIPE|ECONNRESET|socket hang up|closed/i.test(msg)) {
    // etcd drops the connection mid-handshake when it does not trust the client certificate.
    return `TLS with etcd failed: the server closed the connection during the handshake — is the client ` +
      `certificate (--etcd-certfile/--etcd-keyfile) signed by a CA that etcd trusts? (${msg})`;
  }
  if (/certificate|handshake|SSL|TLS|alert/i.test(msg)) {
    return `TLS with etcd failed: check --etcd-cafile/--etcd-certfile/--etcd-keyfile (${msg})`;
  }
  if (/user name is empty|permission denied/i.test(msg)) return `etcd denied access: ${msg}`;
  if (/circuit breaker|UNAVAILABLE|ECONNREFUSED|No connection|deadline/i.test(msg)) {
    return `etcd is unreachable at ${opts.endpoints.join(",")} (${msg})`;
  }
  return msg;
}

function readPem(path: string | undefined, flag: string): Uint8Array | undefined {
  if (!path) return undefined;
  try {
    return Deno.readFileSync(path);
  } catch (err) {
    throw new EtcdConfigError(`${flag} ${path}: ${(err as Error).message}`, { cause: err });
  }
}

let sniPatched = false;

/**
 * gRPC sets the TLS server name (SNI) to the endpoint's host, also when that is an IP address. Node
 * ignores an IP there (RFC 6066 forbids IP SNI); Deno's node:tls throws, which made `https://<ip>:2379`
 * endpoints unusable. Drop an IP server name: the certificate is still verified against the address.
 */
async function allowIpEndpointsWithTls(): Promise<void> {
  if (sniPatched) return;
  sniPatched = true;
  const tls = (await import("node:tls")).default as unknown as { connect: (...args: unknown[]) => unknown };
  const { isIP } = await import("node:net");
  const connect = tls.connect;
  tls.connect = function (this: unknown, ...args: unknown[]) {
    for (const a of args) {
      if (a && typeof a === "object" && "servername" in a) {
        const o = a as { servername?: string };
        if (typeof o.servername === "string" && isIP(o.servername)) delete o.servername;
      }
    }
    return connect.apply(this, args);
  };
}

/** Opens an etcd registry (and the etcd3 client under it). */
export async function openEtcdRegistry(opts: EtcdOptions): Promise<EtcdRegistry> {
  const mod: Etcd3Module = await import("etcd3");
  const { Buffer } = await import("node:buffer");
  const ca = readPem(opts.caFile, "--etcd-cafile");
  const cert = readPem(opts.certFile, "--etcd-certfile");
  const key = readPem(opts.keyFile, "--etcd-keyfile");
  const hosts = opts.endpoints.map((e) => e.trim()).filter(Boolean);
  if (!hosts.length) throw new EtcdConfigError("--etcd-endpoints is empty");
  const tls = hosts.some((h) => h.startsWith("https://"));
  if (tls) await allowIpEndpointsWithTls();
  const timeout = opts.timeoutMs ?? 5000;
  const client = new mod.Etcd3({
    hosts,
    dialTimeout: timeout,
    ...(tls
      ? {
        credentials: {
          rootCertificate: Buffer.from(ca ?? new Uint8Array()),
          ...(key ? { privateKey: Buffer.from(key) } : {}),
          ...(cert ? { certChain: Buffer.from(cert) } : {}),
        },
      }
      : {}),
    ...(opts.username ? { auth: { username: opts.username, password: opts.password ?? "" } } : {}),
    defaultCallOptions: () => ({ deadline: Date.now() + timeout }),
  });
  return new EtcdRegistry(client, opts.prefix.replace(/\/$/, ""), Buffer);
}

/** Registry on etcd v3. */
export class EtcdRegistry implements Registry {
  readonly #subnets: string;

  /** Use {@linkcode openEtcdRegistry}. */
  constructor(
    readonly client: Etcd3,
    readonly prefix: string,
    private readonly buf: typeof import("node:buffer").Buffer,
  ) {
    this.#subnets = `${prefix}/subnets/`;
  }

  #b(s: string) {
    return this.buf.from(enc.encode(s));
  }

  async getConfig(): Promise<string | undefined> {
    return (await this.client.get(`${this.prefix}/config`).string()) ?? undefined;
  }

  async setConfig(text: string): Promise<void> {
    await this.client.put(`${this.prefix}/config`).value(text);
  }

  #entry(kv: { key: Uint8Array; value: Uint8Array; lease: string }): RegistryEntry {
    const e: RegistryEntry = {
      key: new TextDecoder().decode(kv.key).slice(this.#subnets.length),
      value: new TextDecoder().decode(kv.value),
    };
    if (kv.lease && kv.lease !== "0") e.leaseId = kv.lease;
    return e;
  }

  async listSubnets(): Promise<{ entries: RegistryEntry[]; revision: number }> {
    const res = await this.client.kv.range({
      key: this.#b(this.#subnets),
      range_end: this.#b(this.#subnets.slice(0, -1) + "0"), // '/' + 1 = '0': the whole prefix
    });
    return { entries: res.kvs.map((kv) => this.#entry(kv)), revision: Number(res.header.revision) };
  }

  /** Remaining TTL of an etcd lease, in seconds (-1 when it no longer exists). */
  async leaseTTL(leaseId: string): Promise<number> {
    const res = await this.client.leaseClient.leaseTimeToLive({ ID: leaseId });
    return Number(res.TTL);
  }

  async #grant(ttl: number): Promise<string> {
    const res = await this.client.leaseClient.leaseGrant({ TTL: ttl, ID: 0 });
    return String(res.ID);
  }

  async #revoke(id: string | undefined): Promise<void> {
    if (!id || id === "0") return;
    await this.client.leaseClient.leaseRevoke({ ID: id }).catch(() => {});
  }

  async #putIf(
    key: string,
    value: string,
    ttl: number,
    compare: { target: "Version"; version: number } | { target: "Value"; value: string },
  ): Promise<RegistryEntry | undefined> {
    const id = await this.#grant(ttl);
    const full = this.#b(this.#subnets + key);
    try {
      const res = await this.client.kv.txn({
        compare: [
          compare.target === "Version"
            ? { key: full, target: "Version", result: "Equal", version: compare.version }
            : { key: full, target: "Value", result: "Equal", value: this.#b(compare.value) },
        ],
        success: [{ request_put: { key: full, value: this.#b(value), lease: id } }],
        failure: [],
      });
      if (!res.succeeded) {
        await this.#revoke(id);
        return undefined;
      }
    } catch (err) {
      await this.#revoke(id);
      throw err;
    }
    return { key, value, leaseId: id, expiration: new Date(Date.now() + ttl * 1000) };
  }

  createSubnet(key: string, value: string, ttl: number): Promise<RegistryEntry | undefined> {
    return this.#putIf(key, value, ttl, { target: "Version", version: 0 });
  }

  async renewSubnet(
    key: string,
    value: string,
    ttl: number,
    expect: string | undefined,
    oldLeaseId?: string,
  ): Promise<RegistryEntry | undefined> {
    const e = expect === undefined
      ? await this.#putIf(key, value, ttl, { target: "Version", version: 0 })
      : await this.#putIf(key, value, ttl, { target: "Value", value: expect });
    if (e && oldLeaseId && oldLeaseId !== e.leaseId) await this.#revoke(oldLeaseId);
    return e;
  }

  async reserveSubnet(key: string, value: string): Promise<void> {
    await this.client.put(this.#subnets + key).value(value);
  }

  async deleteSubnet(key: string): Promise<boolean> {
    const res = await this.client.delete().key(this.#subnets + key).exec();
    return Number(res.deleted) > 0;
  }

  async watchSubnets(
    revision: number,
    onEvents: (events: RegistryEvent[], revision: number) => void,
    onReset: (err: Error) => void,
  ): Promise<() => Promise<void>> {
    const watcher = await this.client.watch().prefix(this.#subnets).startRevision(String(revision + 1))
      .withPreviousKV().create();
    watcher.on("data", (res) => {
      const events: RegistryEvent[] = [];
      for (const ev of res.events) {
        if (ev.type === "Put") events.push({ type: "put", entry: this.#entry(ev.kv) });
        else events.push({ type: "delete", entry: this.#entry(ev.prev_kv ?? ev.kv) });
      }
      if (events.length) onEvents(events, Number(res.header.revision));
    });
    // A compaction past our revision cancels the watch: the caller re-lists and watches again.
    watcher.on("error", (err: Error) => onReset(err));
    return async () => {
      await watcher.cancel().catch(() => {});
    };
  }

  close(): Promise<void> {
    this.client.close();
    return Promise.resolve();
  }
}
