/**
 * The etcd v3 {@linkcode Registry}, on `npm:etcd3` — imported lazily here, so the CNI mode and the CLI's
 * help never pay its ~200 ms import.
 *
 * Leases are etcd leases with a TTL. Renewal grants a fresh lease and re-puts the key under a
 * compare-on-value transaction, then revokes the old lease — flannel's way, chosen over etcd keep-alive:
 * - a renewal that races an operator's delete fails the compare instead of resurrecting the key, so the
 *   keeper notices the loss and re-acquires (a keep-alive would keep a lease alive that has no key);
 * - it needs no long-lived keep-alive stream, whose `npm:etcd3` implementation keeps running after
 *   `client.close()` (a lease must be revoked to stop it) and, like a watch, silently stalls when the
 *   member behind the stream dies;
 * - the key's value is what flanneld writes after a renewal, lease id aside: peers cannot tell.
 * It costs three unary calls per renewal (grant, txn, revoke) once per TTL/2 at most (24 h TTL: daily).
 *
 * Connection behaviour, fixed here once for every caller:
 * - the per-call deadline applies to unary calls only: a deadline on the watch stream would end it
 *   every `timeoutMs` and count as a host failure in the client's circuit breaker;
 * - calls go to a random endpoint and fail over to the others; a failing endpoint is skipped for 5 s
 *   after three consecutive failures (the client's circuit breaker);
 * - a watch reports a lost stream to the caller (`onReset`) instead of letting `npm:etcd3` reconnect it
 *   with its own back-off of up to 30 s: the subnet manager re-lists and re-watches with 100 ms → 5 s.
 *
 * @module
 */
import { EtcdConfigError, etcdConnectionCause, type EtcdOptions, explainEtcdError } from "./options.ts";
import { installEtcdProtoCodec } from "./proto.ts";
import type { Registry, RegistryEntry, RegistryEvent } from "./registry.ts";

export { EtcdConfigError, type EtcdOptions, explainEtcdError } from "./options.ts";

type Etcd3Module = typeof import("etcd3");
type Etcd3 = InstanceType<Etcd3Module["Etcd3"]>;

const enc = new TextEncoder();

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

/** Opens an etcd registry (and the etcd3 client under it). Throws {@linkcode EtcdConfigError}. */
export async function openEtcdRegistry(opts: EtcdOptions): Promise<EtcdRegistry> {
  const hosts = opts.endpoints.map((e) => e.trim()).filter(Boolean);
  if (!hosts.length) throw new EtcdConfigError("--etcd-endpoints is empty");
  for (const h of hosts) {
    if (!/^https?:\/\/[^/]+\/?$/.test(h)) {
      throw new EtcdConfigError(`--etcd-endpoints: ${h} is not an http:// or https:// URL (host:port)`);
    }
  }
  const ca = readPem(opts.caFile, "--etcd-cafile");
  const cert = readPem(opts.certFile, "--etcd-certfile");
  const key = readPem(opts.keyFile, "--etcd-keyfile");
  if (!!cert !== !!key) {
    throw new EtcdConfigError("--etcd-certfile and --etcd-keyfile must be given together");
  }
  const tls = hosts.some((h) => h.startsWith("https://"));
  if (!tls && (ca || cert)) {
    throw new EtcdConfigError("TLS files are set but no --etcd-endpoints URL is https://");
  }
  // etcd3 would load protobufjs and parse its rpc.proto on import (~10 MB, 100+ ms): give it weft's
  // codec of the same API instead (etcd_proto.ts).
  installEtcdProtoCodec();
  const mod: Etcd3Module = await import("etcd3");
  const { Buffer } = await import("node:buffer");
  if (tls) await allowIpEndpointsWithTls();
  const timeout = opts.timeoutMs ?? 5000;
  const client = new mod.Etcd3({
    hosts,
    dialTimeout: timeout,
    ...(tls
      ? {
        credentials: {
          // No CA file: the system's roots (gRPC's default for a null root certificate).
          rootCertificate: (ca ? Buffer.from(ca) : null) as unknown as import("node:buffer").Buffer,
          ...(key ? { privateKey: Buffer.from(key) } : {}),
          ...(cert ? { certChain: Buffer.from(cert) } : {}),
        },
      }
      : {}),
    ...(opts.username ? { auth: { username: opts.username, password: opts.password ?? "" } } : {}),
    // Unary calls only: see the module comment.
    defaultCallOptions: (ctx) => ctx.isStream ? {} : { deadline: Date.now() + timeout },
    grpcOptions: {
      // A fresh channel to a member that came back connects within 100 ms → 5 s, not gRPC's 120 s cap.
      "grpc.initial_reconnect_backoff_ms": 100,
      "grpc.max_reconnect_backoff_ms": 5000,
      // Notice a member that vanished without closing the connection (power loss, partition) on the
      // watch stream too; etcd accepts pings every 5 s or slower.
      "grpc.keepalive_time_ms": 10_000,
      "grpc.keepalive_timeout_ms": 5_000,
    },
  });
  return new EtcdRegistry(client, opts.prefix.replace(/\/$/, ""), Buffer, timeout, hosts);
}

/** Registry on etcd v3 (flannel's layout: `<prefix>/config`, `<prefix>/subnets/<key>`). */
export class EtcdRegistry implements Registry {
  readonly #subnets: string;
  readonly #dec = new TextDecoder();

  /** Use {@linkcode openEtcdRegistry}. */
  constructor(
    /** The etcd3 client, for tests and tools that need raw access. */
    readonly client: Etcd3,
    /** Key prefix without a trailing slash. */
    readonly prefix: string,
    private readonly buf: typeof import("node:buffer").Buffer,
    /** Per-call timeout of unary calls, ms. */
    readonly timeoutMs = 5000,
    /** The endpoints, for errors that name them. */
    readonly endpoints: string[] = [],
  ) {
    this.#subnets = `${prefix}/subnets/`;
  }

  #lastCause: string | undefined;

  /**
   * `err` as an operator reads it: a connection failure becomes "etcd is unreachable at <endpoints>:
   * <plain cause>; check …" — the circuit breaker's "Execution prevented …" replaced by the cause of the
   * failure before it — with the client's error as `cause`. Anything else stays as it is.
   */
  #explain(err: unknown): unknown {
    const msg = err instanceof Error ? err.message : String(err);
    this.#lastCause = etcdConnectionCause(msg) ?? this.#lastCause;
    const plain = explainEtcdError(err, { endpoints: this.endpoints }, this.#lastCause);
    return plain === msg ? err : new Error(plain, { cause: err });
  }

  /** Runs `call`, its rejection explained. */
  async #plain<T>(call: () => Promise<T>): Promise<T> {
    try {
      return await call();
    } catch (err) {
      throw this.#explain(err);
    }
  }

  #b(s: string) {
    return this.buf.from(enc.encode(s));
  }

  getConfig(): Promise<string | undefined> {
    return this.#plain(async () => {
      return (await this.client.get(`${this.prefix}/config`).string()) ?? undefined;
    });
  }

  setConfig(text: string): Promise<void> {
    return this.#plain(async () => {
      await this.client.put(`${this.prefix}/config`).value(text);
    });
  }

  #entry(kv: { key: Uint8Array; value: Uint8Array; lease: string; create_revision?: string }): RegistryEntry {
    const e: RegistryEntry = {
      key: this.#dec.decode(kv.key).slice(this.#subnets.length),
      value: this.#dec.decode(kv.value),
    };
    if (kv.lease && kv.lease !== "0") e.leaseId = kv.lease;
    if (kv.create_revision && kv.create_revision !== "0") e.createRevision = Number(kv.create_revision);
    return e;
  }

  listSubnets(): Promise<{ entries: RegistryEntry[]; revision: number }> {
    return this.#plain(async () => {
      const res = await this.client.kv.range({
        key: this.#b(this.#subnets),
        range_end: this.#b(this.#subnets.slice(0, -1) + "0"), // '/' + 1 = '0': the whole prefix
      });
      return { entries: res.kvs.map((kv) => this.#entry(kv)), revision: Number(res.header.revision) };
    });
  }

  getSubnet(key: string): Promise<RegistryEntry | undefined> {
    return this.#plain(async () => {
      const res = await this.client.kv.range({ key: this.#b(this.#subnets + key) });
      const kv = res.kvs[0];
      return kv ? this.#entry(kv) : undefined;
    });
  }

  /** Remaining TTL of an etcd lease, in seconds (-1 when it no longer exists). */
  leaseTTL(leaseId: string): Promise<number> {
    return this.#plain(async () => {
      const res = await this.client.leaseClient.leaseTimeToLive({ ID: leaseId });
      return Number(res.TTL);
    });
  }

  async #grant(ttl: number): Promise<string> {
    const res = await this.client.leaseClient.leaseGrant({ TTL: ttl, ID: 0 });
    return String(res.ID);
  }

  async #revoke(id: string | undefined): Promise<void> {
    if (!id || id === "0") return;
    // Best effort: an unrevoked lease without keys just expires.
    await this.client.leaseClient.leaseRevoke({ ID: id }).catch(() => {});
  }

  async #putIf(
    key: string,
    value: string,
    ttl: number,
    compare: { target: "Version"; version: number } | { target: "Value"; value: string },
  ): Promise<RegistryEntry | undefined> {
    const id = await this.#grant(ttl);
    const granted = Date.now();
    const full = this.#b(this.#subnets + key);
    let createRevision: number | undefined;
    try {
      const res = await this.client.kv.txn({
        compare: [
          compare.target === "Version"
            ? { key: full, target: "Version", result: "Equal", version: compare.version }
            : { key: full, target: "Value", result: "Equal", value: this.#b(compare.value) },
        ],
        // The range after the put reads the key's create revision (its age in lease conflicts).
        success: [{ request_put: { key: full, value: this.#b(value), lease: id } }, {
          request_range: { key: full },
        }],
        failure: [],
      });
      if (!res.succeeded) {
        await this.#revoke(id);
        return undefined;
      }
      const created = res.responses[1]?.response_range?.kvs[0]?.create_revision;
      if (created && created !== "0") createRevision = Number(created);
    } catch (err) {
      await this.#revoke(id);
      throw err;
    }
    // Counted from the grant request: the lease cannot expire before this.
    return {
      key,
      value,
      leaseId: id,
      expiration: new Date(granted + ttl * 1000),
      ...(createRevision ? { createRevision } : {}),
    };
  }

  createSubnet(key: string, value: string, ttl: number): Promise<RegistryEntry | undefined> {
    return this.#plain(() => this.#putIf(key, value, ttl, { target: "Version", version: 0 }));
  }

  renewSubnet(
    key: string,
    value: string,
    ttl: number,
    expect: string | undefined,
    oldLeaseId?: string,
  ): Promise<RegistryEntry | undefined> {
    return this.#plain(async () => {
      const e = expect === undefined
        ? await this.#putIf(key, value, ttl, { target: "Version", version: 0 })
        : await this.#putIf(key, value, ttl, { target: "Value", value: expect });
      if (e && oldLeaseId && oldLeaseId !== e.leaseId) await this.#revoke(oldLeaseId);
      return e;
    });
  }

  reserveSubnet(key: string, value: string): Promise<void> {
    return this.#plain(async () => {
      await this.client.put(this.#subnets + key).value(value);
    });
  }

  deleteSubnet(key: string): Promise<boolean> {
    return this.#plain(async () => {
      const res = await this.client.delete().key(this.#subnets + key).exec();
      return Number(res.deleted) > 0;
    });
  }

  watchSubnets(
    revision: number,
    onEvents: (events: RegistryEvent[], revision: number) => void,
    onReset: (err: Error) => void,
  ): Promise<() => Promise<void>> {
    return this.#plain(() => this.#watch(revision, onEvents, (err) => onReset(this.#explain(err) as Error)));
  }

  async #watch(
    revision: number,
    onEvents: (events: RegistryEvent[], revision: number) => void,
    onReset: (err: Error) => void,
  ): Promise<() => Promise<void>> {
    const watcher = this.client.watch().prefix(this.#subnets).startRevision(String(revision + 1))
      .withPreviousKV().watcher();
    let ended = false;
    const end = (err: Error) => {
      if (ended) return;
      ended = true;
      onReset(err);
    };
    const cancel = async () => {
      ended = true;
      // cancel() waits for etcd's answer when connected; never let a dying stream hang the caller.
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        watcher.cancel().catch(() => {}),
        new Promise<void>((r) => timer = setTimeout(r, 2000)),
      ]);
      clearTimeout(timer);
    };
    watcher.on("data", (res) => {
      if (ended) return;
      const events: RegistryEvent[] = [];
      for (const ev of res.events) {
        if (ev.type === "Put") events.push({ type: "put", entry: this.#entry(ev.kv) });
        else events.push({ type: "delete", entry: this.#entry(ev.prev_kv ?? ev.kv) });
      }
      if (events.length) onEvents(events, Number(res.header.revision));
    });
    // Compaction past our revision cancels the watch ("error"); a lost stream is "disconnected". Both
    // go back to the caller, which re-lists (diffing against what it knows) and watches again.
    const connected = new Promise<void>((resolve, reject) => {
      watcher.once("connected", () => resolve());
      watcher.on("error", (err: Error) => {
        reject(err);
        end(err);
      });
      watcher.on("disconnected", (err: Error) => {
        const e = new Error(`watch stream lost: ${err?.message ?? err}`, { cause: err });
        reject(e);
        end(e);
      });
    });
    // etcd3 retries a stream that cannot be opened on its own, silently: give up after a while and let
    // the caller re-list with its back-off instead of waiting forever.
    let timer: ReturnType<typeof setTimeout> | undefined;
    const limit = Math.max(this.timeoutMs, 5000);
    try {
      await Promise.race([
        connected,
        new Promise<never>((_, reject) =>
          timer = setTimeout(() => reject(new Error(`watch not established within ${limit} ms`)), limit)
        ),
      ]);
    } catch (err) {
      await cancel();
      throw err;
    } finally {
      clearTimeout(timer);
    }
    return cancel;
  }

  close(): Promise<void> {
    // No keep-alive streams exist (renewal re-grants), so closing the client stops everything.
    this.client.close();
    return Promise.resolve();
  }
}
