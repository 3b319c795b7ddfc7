/**
 * Kubernetes as the lease store, wire-compatible with flannel's `--kube-subnet-mgr`:
 *
 * - The network config is the file `--net-config-path` (kube-flannel's ConfigMap), not etcd; whether it
 *   changed is read from that file alone.
 * - The own lease is the node's podCIDR(s) (see node_lease.ts for the checks and their errors); weft
 *   publishes its attributes as flannel's annotations with a strategic-merge PATCH of
 *   `nodes/<name>/status`, only the keys whose value differs, and — once the agent says subnet.env and
 *   the datapath are in place ({@linkcode OwnLeaseKeeper.datapathReady}), never before, as flannel —
 *   the `NetworkUnavailable=False` condition, reason `FlannelIsUp`, unless disabled or already so.
 * - Peers: every node with `kube-subnet-manager: "true"` and a podCIDR, watched by the shared reflector
 *   (node_watch.ts). The watch is also the store's health (`onConnectivity`, `onRefused`): there is no
 *   probe, and in steady state the only traffic is that one watch.
 * - The keeper makes no request of its own either: it acts on the own Node as the watch delivers it —
 *   annotations someone changed are written back; the Node deleted takes the lease away (`onLost`: the
 *   agent withdraws subnet.env so no pod gets an address that may be another node's); the Node back with
 *   another podCIDR (deleted and re-joined, cluster re-created) is a new lease, taken at once and said
 *   loudly (`onLease(…, true)`: subnet.env, device and rules follow; cni0 moves once its old pods are
 *   gone, src/cni/bridge.ts). flanneld notices none of this and keeps serving the old subnet.
 *
 * @module
 */
import { Backoff, sleep } from "../../async.ts";
import { type NetworkConfig, parseNetworkConfig } from "../../config/net_conf.ts";
import { log } from "../../log.ts";
import { type Lease, type LeaseAttrs, type LeaseEvent, leaseName, subnetKey } from "../lease.ts";
import type { KeepOptions, LeaseSource, LeaseWatch, OwnLeaseKeeper, WatchOptions } from "../source.ts";
import { KubeApiError, KubeClient } from "../../kube/client.ts";
import type { KubeConnection } from "../../kube/config.ts";
import { NodeWatch } from "./node_watch.ts";
import {
  annotationChanges,
  type AnnotationKeys,
  annotationKeys,
  type KubeNode,
  networkAvailableCondition,
  NODE_PRUNE,
  nodeToLease,
  ownAnnotations,
  ownSubnets,
  slimNode,
  storedPublicIPs,
} from "./node_lease.ts";
import { refusalAdvice } from "./rbac.ts";

const logger = log("kube");

/** flannel's default `--net-config-path`. */
export const DEFAULT_NET_CONFIG_PATH = "/etc/kube-flannel/net-conf.json";

/** The API server's contract (client-go's reflector): back-off ceilings for every list, watch and patch. */
export const KUBE_BACKOFF_MS: [number, number] = [800, 30_000];

/** Options of {@linkcode KubeLeaseSource.open}. */
export interface KubeSourceOptions {
  /** The API connection. */
  conn: KubeConnection;
  /** This node's name (NODE_NAME); else found from the pod (POD_NAME/POD_NAMESPACE). */
  nodeName?: string;
  /** `--kube-annotation-prefix`. */
  annotationPrefix?: string;
  /** `--net-config-path`. */
  netConfPath?: string;
  /** `--set-node-network-unavailable` (default true). */
  setNodeNetworkUnavailable?: boolean;
  /** The API server's bookmark interval, ms (default 60 s); a watch silent twice as long is dead. */
  bookmarkIntervalMs?: number;
  /** Request timeout (default 10 s). */
  timeoutMs?: number;
  /** Back-off ceilings, ms (default 800 → 30 000). */
  backoffMs?: [number, number];
  /** Environment (tests). */
  env?: (k: string) => string | undefined;
}

/**
 * Timing overrides from the environment, for tests and for API servers far from kube-apiserver's
 * defaults: `WEFT_KUBE_BOOKMARK_SECONDS` (the server's bookmark interval; a watch silent twice as long is
 * dead), `WEFT_KUBE_TIMEOUT_SECONDS` (request time limit), `WEFT_KUBE_BACKOFF_MS` (`first:max`).
 */
export function kubeTimingFromEnv(
  env: (k: string) => string | undefined = (k) => Deno.env.get(k),
): Pick<KubeSourceOptions, "bookmarkIntervalMs" | "timeoutMs" | "backoffMs"> {
  const num = (k: string) => {
    const v = env(k);
    if (v === undefined || v === "") return undefined;
    const n = Number(v);
    if (!(n > 0)) throw new Error(`${k}=${v}: must be a positive number`);
    return n;
  };
  const out: Pick<KubeSourceOptions, "bookmarkIntervalMs" | "timeoutMs" | "backoffMs"> = {};
  const b = num("WEFT_KUBE_BOOKMARK_SECONDS"), t = num("WEFT_KUBE_TIMEOUT_SECONDS");
  if (b) out.bookmarkIntervalMs = b * 1000;
  if (t) out.timeoutMs = t * 1000;
  const bo = env("WEFT_KUBE_BACKOFF_MS");
  if (bo) {
    const [first, max] = bo.split(":").map(Number);
    if (!(first! > 0 && max! >= first!)) {
      throw new Error(`WEFT_KUBE_BACKOFF_MS=${bo}: must be first:max in ms`);
    }
    out.backoffMs = [first!, max!];
  }
  return out;
}

/** The node name from NODE_NAME, else from the pod's spec.nodeName (flannel's order). */
async function findNodeName(client: KubeClient, env: (k: string) => string | undefined): Promise<string> {
  const direct = env("NODE_NAME");
  if (direct) return direct;
  const pod = env("POD_NAME"), ns = env("POD_NAMESPACE");
  if (!pod || !ns) {
    throw new Error(
      "kube mode needs the node name: set NODE_NAME (the downward API's spec.nodeName), or POD_NAME and POD_NAMESPACE",
    );
  }
  let p: { spec?: { nodeName?: string } };
  try {
    p = await client.get(`/api/v1/namespaces/${encodeURIComponent(ns)}/pods/${encodeURIComponent(pod)}`);
  } catch (err) {
    const advice = refusalAdvice(err, `get pod ${ns}/${pod}`, client.conn.source);
    throw new Error(advice ?? `reading pod ${ns}/${pod} for its node name: ${(err as Error).message}`);
  }
  if (!p.spec?.nodeName) throw new Error(`pod ${ns}/${pod} has no spec.nodeName`);
  return p.spec.nodeName;
}

/** How recent a GET of the own node start-up may reuse instead of asking again. */
const OWN_NODE_FRESH_MS = 10_000;

/** Leases from the Kubernetes API (see the module comment). */
export class KubeLeaseSource implements LeaseSource {
  /** `kube`. */
  readonly kind = "kube";
  /** The annotation names. */
  readonly keys: AnnotationKeys;
  /** The net-conf.json path. */
  readonly netConfPath: string;
  /** Start-up retries: the API server's contract (0.8 s → 30 s, full jitter). */
  readonly retryBackoff: { firstMs: number; maxMs: number };
  #cfg?: NetworkConfig;
  /** The last list of nodes (trimmed), which a watch started within seconds uses instead of listing again. */
  #snapshot: { items: KubeNode[]; resourceVersion: string; at: number } | undefined;
  /** The own node (trimmed) as last read or watched; `at` 0 once the watch owns it; undefined: deleted. */
  #own: { node: KubeNode | undefined; at: number } | undefined;
  /** Running keepers: a change of the own node seen by the watch pokes them. */
  readonly #keepers = new Set<OwnLeaseKeeper>();
  #watches = 0;
  #watch: NodeWatch | undefined;
  #configText: string | undefined;
  /** The start-up list, when {@linkcode KubeLeaseSource.prefetch} started it early. */
  #prefetched: Promise<{ items: KubeNode[]; resourceVersion: string }> | undefined;

  private constructor(
    /** The API client. */
    readonly client: KubeClient,
    /** This node. */
    readonly nodeName: string,
    private readonly opts: KubeSourceOptions,
  ) {
    this.keys = annotationKeys(opts.annotationPrefix);
    this.netConfPath = opts.netConfPath ?? DEFAULT_NET_CONFIG_PATH;
    const [firstMs, maxMs] = opts.backoffMs ?? KUBE_BACKOFF_MS;
    this.retryBackoff = { firstMs, maxMs };
  }

  /** The running node watch's counters (lists, watches, events, bookmarks, failures), if one runs. */
  get watchStats(): NodeWatch["stats"] | undefined {
    return this.#watch?.stats;
  }

  /** Connects (finding the node name) — the API server must answer for the pod lookup only. */
  static async open(opts: KubeSourceOptions): Promise<KubeLeaseSource> {
    annotationKeys(opts.annotationPrefix); // a bad prefix fails before anything connects
    const client = new KubeClient(opts.conn, { ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}) });
    try {
      const name = opts.nodeName ?? await findNodeName(client, opts.env ?? ((k) => Deno.env.get(k)));
      return new KubeLeaseSource(client, name, opts);
    } catch (err) {
      client.close();
      throw err;
    }
  }

  #nodePath(name = this.nodeName): string {
    return `/api/v1/nodes/${encodeURIComponent(name)}`;
  }

  /** Reads and validates `--net-config-path` (no API call). */
  #readConfig(): NetworkConfig {
    let text: string;
    try {
      text = Deno.readTextFileSync(this.netConfPath);
    } catch (err) {
      throw new Error(
        `reading the network config ${this.netConfPath} (--net-config-path): ${(err as Error).message}`,
      );
    }
    this.#configText = text;
    try {
      return parseNetworkConfig(text);
    } catch (err) {
      throw new Error(`${this.netConfPath}: ${(err as Error).message}`);
    }
  }

  /**
   * The network config: `--net-config-path`, with SubnetLen (IPv6SubnetLen) taken from the own node's
   * podCIDR(s). In kube mode the subnets are the podCIDRs kube-controller-manager cut with its
   * --node-cidr-mask-size, whatever net-conf.json says (flannel ignores SubnetLen there too), and the
   * agent's lease rules must accept peers of that size. Fails, with the fix, while the node has no
   * podCIDR.
   */
  async getNetworkConfig(): Promise<NetworkConfig> {
    const cfg = this.#readConfig();
    const node = await this.ownNode();
    const own = ownSubnets(node, cfg, this.netConfPath);
    const out = { ...cfg };
    if (own.subnet) out.subnetLen = own.subnet.prefix;
    if (own.ipv6Subnet) out.ipv6SubnetLen = own.ipv6Subnet.prefix;
    if (out.subnetLen !== cfg.subnetLen || out.ipv6SubnetLen !== cfg.ipv6SubnetLen) {
      logger.info("node subnets are /{len} podCIDRs (net-conf.json's SubnetLen {cfgLen} does not apply)", {
        len: own.subnet?.prefix ?? own.ipv6Subnet?.prefix,
        cfgLen: cfg.subnetLen,
      });
    }
    this.#cfg = out;
    return out;
  }

  /**
   * The net-conf.json text now (no API call): the agent compares it with the text it started with. A file
   * that cannot be read for a moment (the ConfigMap volume swapping its link) counts as unchanged.
   */
  configFingerprint(): string {
    try {
      return this.#configText = Deno.readTextFileSync(this.netConfPath);
    } catch {
      return this.#configText ?? "";
    }
  }

  /** The own node (trimmed): a GET, unless one was made seconds ago or the watch keeps it current. */
  async ownNode(signal?: AbortSignal): Promise<KubeNode> {
    const own = this.#own;
    if (own?.node && (own.at === 0 || Date.now() - own.at < OWN_NODE_FRESH_MS)) return own.node;
    let node: KubeNode;
    try {
      node = await this.client.get<KubeNode>(this.#nodePath(), signal ? { signal } : {});
    } catch (err) {
      const advice = refusalAdvice(err, `get node ${this.nodeName}`, this.client.conn.source);
      if (advice) throw new KubeApiError((err as KubeApiError).code, (err as KubeApiError).reason, advice);
      throw err;
    }
    const slim = slimNode(node, this.keys, this.nodeName);
    if (!this.#watches) this.#own = { node: slim, at: Date.now() };
    return slim;
  }

  /** Public IPs the node's `node-public-ip(v6)` annotations set (flannel prefers them to --public-ip). */
  async storedPublicIPs(): Promise<{ ipv4?: string; ipv6?: string }> {
    return storedPublicIPs(await this.ownNode(), this.keys);
  }

  /** Every node that is a lease (flannel's rules), the own one included: one list from the watch cache. */
  async listLeases(): Promise<{ leases: (Lease & { node: string })[]; revision: number }> {
    const cfg = this.#cfg ?? this.#readConfig();
    const prefetched = this.#prefetched;
    this.#prefetched = undefined;
    const { items, resourceVersion } = (prefetched && await prefetched.catch(() => undefined)) ??
      await this.#listNodes();
    this.#snapshot = { items, resourceVersion, at: Date.now() };
    const leases: (Lease & { node: string })[] = [];
    for (const n of items) {
      try {
        const l = nodeToLease(n, this.keys, cfg);
        if (l) leases.push(l);
      } catch { /* not a usable peer */ }
    }
    return { leases, revision: Number(resourceVersion) };
  }

  /**
   * The node's previous lease from its own Node (the GET start-up made for its public IP annotations), so
   * that the backend and the lease need not wait for the list of every Node: on a big cluster they are
   * made while the list is still arriving, which the watch then takes ({@linkcode prefetch}).
   */
  async ownPreviousLease(cfg: NetworkConfig): Promise<Lease | undefined> {
    const own = await this.ownNode();
    try {
      return nodeToLease(own, this.keys, cfg) ?? undefined;
    } catch {
      return undefined; // not a usable lease: start-up makes a new one, as with the list
    }
  }

  /**
   * The list the first watch starts from instead of listing: the last `listLeases()`'s (seconds old at
   * most), or the start-up list when nothing took it yet (waited for while it arrives).
   */
  async #primed(): Promise<{ items: KubeNode[]; resourceVersion: string } | undefined> {
    let snap = this.#snapshot;
    this.#snapshot = undefined;
    const prefetched = this.#prefetched;
    if (!snap && prefetched) {
      this.#prefetched = undefined;
      const list = await prefetched.catch(() => undefined); // failed: the watch lists on its own
      if (list) snap = { ...list, at: Date.now() };
    }
    return snap && Date.now() - snap.at < 10_000 ? snap : undefined;
  }

  /**
   * Starts the start-up list now, so it is on the wire while the agent does its local work (the own
   * Node's GET, the interface, the libraries): `listLeases()`, or else the first watch, takes it when it
   * comes, once.
   */
  prefetch(): void {
    this.#prefetched ??= this.#listNodes();
    this.#prefetched.catch(() => {}); // listLeases() lists again if this failed
  }

  /** One list of every Node from the watch cache, trimmed as it arrives. */
  async #listNodes(): Promise<{ items: KubeNode[]; resourceVersion: string }> {
    const items: KubeNode[] = [];
    try {
      const { resourceVersion } = await this.client.list("/api/v1/nodes", {
        resourceVersion: "0",
        timeoutMs: Math.max(this.client.timeoutMs, 30_000),
        onItem: (raw) => items.push(slimNode(raw as unknown as KubeNode, this.keys, this.nodeName)),
        prune: NODE_PRUNE,
      });
      return { items, resourceVersion };
    } catch (err) {
      const advice = refusalAdvice(err, "list nodes", this.client.conn.source);
      if (advice) throw new KubeApiError((err as KubeApiError).code, (err as KubeApiError).reason, advice);
      throw err;
    }
  }

  /**
   * The own lease: the node's podCIDR(s), checked against `cfg`; publishes `attrs` as annotations (only
   * the keys that differ). The NetworkUnavailable condition waits for the keeper's `datapathReady()`.
   */
  async acquireLease(cfg: NetworkConfig, attrs: LeaseAttrs): Promise<Lease & { node: string }> {
    // (AcquireOptions do not apply: the subnet is the node's podCIDR, there is no TTL.)
    const node = await this.ownNode();
    const lease = this.#leaseOf(node, cfg, attrs);
    await this.#publish(node, attrs);
    logger.info("node {node}: lease {subnet} from its podCIDR", {
      node: this.nodeName,
      subnet: leaseName(lease),
    });
    return lease;
  }

  #leaseOf(node: KubeNode, cfg: NetworkConfig, attrs: LeaseAttrs): Lease & { node: string } {
    const subnets = ownSubnets(node, cfg, this.netConfPath);
    return { ...subnets, attrs, key: subnetKey(subnets.subnet, subnets.ipv6Subnet), node: this.nodeName };
  }

  async #patchStatus(body: unknown, what: string): Promise<void> {
    try {
      const node = await this.client.patch<KubeNode>(`${this.#nodePath()}/status`, body, "strategic");
      this.#patched(slimNode(node, this.keys, this.nodeName));
    } catch (err) {
      const advice = refusalAdvice(
        err,
        `patch nodes/${this.nodeName}/status (${what})`,
        this.client.conn.source,
      );
      if (advice) throw new KubeApiError((err as KubeApiError).code, (err as KubeApiError).reason, advice);
      throw err;
    }
  }

  /** Patches the annotations of `attrs` that differ on `node`; returns whether anything was written. */
  async #publish(node: KubeNode, attrs: LeaseAttrs): Promise<boolean> {
    const changes = annotationChanges(node, ownAnnotations(node, attrs, this.keys));
    if (!Object.keys(changes).length) return false;
    await this.#patchStatus({ metadata: { annotations: changes } }, "annotations");
    logger.info("node {node}: published annotations {keys}", {
      node: this.nodeName,
      keys: Object.keys(changes).map((k) => k.slice(k.indexOf("/") + 1)).join(","),
    });
    return true;
  }

  /** Sets NetworkUnavailable=False unless it is so; returns whether it patched. */
  async #markAvailable(node: KubeNode): Promise<boolean> {
    const cur = node.status?.conditions?.find((c) => c.type === "NetworkUnavailable");
    if (cur?.status === "False" && cur.reason === "FlannelIsUp") return false;
    await this.#patchStatus(
      { status: { conditions: [networkAvailableCondition()] } },
      "NetworkUnavailable condition",
    );
    logger.info("node {node}: condition NetworkUnavailable=False (FlannelIsUp)", { node: this.nodeName });
    return true;
  }

  /**
   * A keeper for the own lease (see the module comment): no TTL, no request of its own; it acts when the
   * watch shows the own node changed (or `poke()`), retrying failed patches with back-off.
   */
  keepLease(
    cfg: NetworkConfig,
    attrs: LeaseAttrs,
    lease: Lease,
    opts: KeepOptions = {},
  ): OwnLeaseKeeper & { renewals: number } {
    return new KubeKeeper(this, cfg, attrs, lease, opts, {
      leaseOf: (n) => this.#leaseOf(n, cfg, attrs),
      publish: (n) => this.#publish(n, attrs),
      markAvailable: (n) => this.#markAvailable(n),
      own: () => this.#own,
      register: (k, signal) => {
        this.#keepers.add(k);
        signal.addEventListener("abort", () => this.#keepers.delete(k), { once: true });
      },
      setNodeNetworkUnavailable: this.opts.setNodeNetworkUnavailable ?? true,
      backoffMs: this.opts.backoffMs ?? KUBE_BACKOFF_MS,
    });
  }

  /**
   * The own node as a PATCH answered it: cached (so a keeper poked before the watch shows the change does
   * not patch again), unless the cache already holds a newer version.
   */
  #patched(node: KubeNode): void {
    if (this.#isStale(node)) return;
    this.#own = { node, at: this.#watches ? 0 : Date.now() };
  }

  /**
   * Whether `node` is older than the cached own node (a start-up list read before our own PATCH, replayed
   * by the watch). resourceVersions are opaque to clients, but etcd's are revisions: compared only when
   * both are numbers.
   */
  #isStale(node: KubeNode): boolean {
    const cur = this.#own?.node?.metadata;
    const rv = Number(node.metadata.resourceVersion), have = Number(cur?.resourceVersion);
    return cur?.uid === node.metadata.uid && Number.isFinite(rv) && Number.isFinite(have) && have > rv;
  }

  /** The own node as the watch delivers it: cached, and the keepers look. */
  #ownChanged(node: KubeNode | undefined): void {
    if (node && this.#isStale(node)) return;
    this.#own = { node, at: 0 };
    for (const k of this.#keepers) k.poke();
  }

  /**
   * Watches every node that is a lease until `opts.signal` aborts (see the module comment): the first
   * list as one `added` batch, then changes in batches; a node whose attributes changed comes as
   * `added` with `previous`, a deleted node (or one that stopped being a lease) as `removed`. The own
   * node goes to the keepers. (`ownPublicIP` does not apply: a node has one lease.)
   */
  watchLeases(onBatch: (events: LeaseEvent[]) => void, opts: WatchOptions): LeaseWatch {
    let watch: NodeWatch | undefined;
    this.#watches++;
    const done = (async () => {
      const cfg = this.#cfg ?? this.#readConfig();
      const source = this.client.conn.source;
      watch = new NodeWatch(
        {
          client: this.client,
          cfg,
          keys: this.keys,
          nodeName: this.nodeName,
          ...(this.opts.bookmarkIntervalMs ? { bookmarkIntervalMs: this.opts.bookmarkIntervalMs } : {}),
          ...(this.opts.backoffMs ? { backoffMs: this.opts.backoffMs } : {}),
          primed: () => this.#primed(),
          onOwnNode: (n) => this.#ownChanged(n),
          onHealth: (h) =>
            opts.onRefused?.(h.refused ? refusalAdvice(h.refused, "watch nodes", source) : undefined),
        },
        onBatch,
        { ...opts, onOwn: () => {} },
      );
      this.#watch = watch;
      try {
        await watch.run();
      } finally {
        this.#watches--;
      }
    })();
    return Object.assign(done, { relist: () => watch?.relist() });
  }

  /**
   * Gives the own lease up for good: removes weft's (flannel's) annotations from the node, so peers drop
   * it. The podCIDR stays the node's. False when the node is gone.
   */
  async releaseLease(): Promise<boolean> {
    let node: KubeNode;
    try {
      node = await this.ownNode();
    } catch (err) {
      if (err instanceof KubeApiError && err.code === 404) return false;
      throw err;
    }
    const a = node.metadata.annotations ?? {};
    const k = this.keys;
    const mine = [
      k.subnetKubeManaged,
      k.backendData,
      k.backendV6Data,
      k.backendType,
      k.publicIP,
      k.publicIPv6,
    ];
    const gone = Object.fromEntries(mine.filter((x) => x in a).map((x) => [x, null]));
    if (Object.keys(gone).length) await this.#patchStatus({ metadata: { annotations: gone } }, "annotations");
    return true;
  }

  /** Releases the client. */
  close(): Promise<void> {
    this.client.close();
    return Promise.resolve();
  }
}

/** What a {@linkcode KubeKeeper} needs of its source. */
interface KeeperPort {
  leaseOf(node: KubeNode): Lease & { node: string };
  publish(node: KubeNode): Promise<boolean>;
  markAvailable(node: KubeNode): Promise<boolean>;
  own(): { node: KubeNode | undefined; at: number } | undefined;
  register(k: OwnLeaseKeeper, signal: AbortSignal): void;
  setNodeNetworkUnavailable: boolean;
  backoffMs: [number, number];
}

/** The own lease's keeper in kube mode (see {@linkcode KubeLeaseSource.keepLease}). */
class KubeKeeper implements OwnLeaseKeeper {
  renewals = 0;
  #wake = Promise.withResolvers<void>();
  #ready = false;
  /** Why the lease is lost now (undefined: held). */
  #lost: string | undefined;

  constructor(
    private readonly source: KubeLeaseSource,
    private readonly cfg: NetworkConfig,
    private readonly attrs: LeaseAttrs,
    public lease: Lease,
    private readonly opts: KeepOptions,
    private readonly port: KeeperPort,
  ) {}

  poke(): void {
    this.#wake.resolve();
  }

  datapathReady(): void {
    if (this.#ready) return;
    this.#ready = true;
    this.poke();
  }

  async run(signal: AbortSignal): Promise<void> {
    this.port.register(this, signal);
    const backoff = new Backoff(...this.port.backoffMs);
    const stopped = new Promise<void>((r) => signal.addEventListener("abort", () => r(), { once: true }));
    while (!signal.aborted) {
      await Promise.race([this.#wake.promise, stopped]);
      this.#wake = Promise.withResolvers<void>();
      if (signal.aborted) return;
      try {
        await this.#check();
        backoff.reset();
      } catch (err) {
        if (signal.aborted) return;
        const ms = backoff.next(err instanceof KubeApiError ? err.retryAfterMs : undefined);
        logger.warn("node {node}: {error}; trying again in {ms} ms", {
          node: this.source.nodeName,
          error: (err as Error).message,
          ms,
        });
        await sleep(ms, signal);
        this.poke();
      }
    }
  }

  #lose(why: string): void {
    if (this.#lost === why) return;
    this.#lost = why;
    logger.error("{why}", { why });
    this.opts.onLost?.(why);
  }

  /** One look at the own node as last seen: lease still the same? annotations? condition? */
  async #check(): Promise<void> {
    const seen = this.port.own();
    if (!seen) return; // nothing seen yet: the watch has not listed
    const name = this.source.nodeName;
    const node = seen.node;
    if (!node) {
      return this.#lose(
        `node "${name}" was deleted from the API: its lease ${leaseName(this.lease)} is gone; ` +
          `subnet.env is withdrawn (no pod gets an address) until the node is back`,
      );
    }
    let next: Lease & { node: string };
    try {
      next = this.port.leaseOf(node);
    } catch (err) {
      return this.#lose(`node "${name}": ${(err as Error).message}`);
    }
    const changed = next.key !== this.lease.key;
    const wasLost = this.#lost !== undefined;
    if (changed) {
      logger.warn(
        "node {node}: its podCIDR changed from {from} to {to} (the Node was deleted and created again): " +
          "taking {to} as the lease — subnet.env, device and rules follow; pods still on {from} keep their " +
          "addresses until they are deleted, and cni0 moves to {to} once none is left",
        { node: name, from: leaseName(this.lease), to: leaseName(next) },
      );
    }
    if (await this.port.publish(node)) {
      this.renewals++;
      if (!changed && !wasLost) {
        logger.warn("node {node}: its flannel annotations had been changed: published them again", {
          node: name,
        });
      }
    }
    if (changed || wasLost) {
      this.lease = next;
      this.#lost = undefined;
      this.opts.onLease?.(next, true);
    }
    if (this.#ready && this.port.setNodeNetworkUnavailable) await this.port.markAvailable(node);
  }
}
