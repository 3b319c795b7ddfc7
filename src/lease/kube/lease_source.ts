/**
 * Kubernetes as the lease store, wire-compatible with flannel's `--kube-subnet-mgr`:
 *
 * - The network config is the file `--net-config-path` (kube-flannel's ConfigMap), not etcd.
 * - The own lease is the node's podCIDR(s) (see node_lease.ts for the checks and their errors); weft
 *   publishes its attributes as flannel's annotations with a strategic-merge PATCH of
 *   `nodes/<name>/status`, only the keys whose value differs, then (unless disabled) the
 *   `NetworkUnavailable=False` condition, reason `FlannelIsUp`. There is no TTL: the keeper only
 *   re-asserts the annotations when someone changed them (the watch pokes it, and it looks every
 *   resync period).
 * - Peers: every node with `kube-subnet-manager: "true"` and a podCIDR, watched as client-go's
 *   reflector does (node_watch.ts).
 *
 * @module
 */
import { sleep } from "../../async.ts";
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
  nodeToLease,
  ownAnnotations,
  ownSubnets,
  storedPublicIPs,
} from "./node_lease.ts";

const logger = log("kube");

/** flannel's default `--net-config-path`. */
export const DEFAULT_NET_CONFIG_PATH = "/etc/kube-flannel/net-conf.json";

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
  /** A watch silent this long is treated as broken (default 90 s; bookmarks arrive about every minute). */
  watchIdleMs?: number;
  /** Request timeout (default 10 s). */
  timeoutMs?: number;
  /** Environment (tests). */
  env?: (k: string) => string | undefined;
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
    throw new Error(`reading pod ${ns}/${pod} for its node name: ${(err as Error).message}`);
  }
  if (!p.spec?.nodeName) throw new Error(`pod ${ns}/${pod} has no spec.nodeName`);
  return p.spec.nodeName;
}

/** Leases from the Kubernetes API (see the module comment). */
export class KubeLeaseSource implements LeaseSource {
  /** `kube`. */
  readonly kind = "kube";
  /** The annotation names. */
  readonly keys: AnnotationKeys;
  /** The net-conf.json path. */
  readonly netConfPath: string;
  #cfg?: NetworkConfig;
  /** The last list of nodes, which a watch started within seconds uses instead of listing again. */
  #snapshot: { items: KubeNode[]; resourceVersion: string; at: number } | undefined;
  /** Running keepers: a change of the own node seen by a watch pokes them. */
  readonly #keepers = new Set<OwnLeaseKeeper>();
  #configText?: string;

  private constructor(
    /** The API client. */
    readonly client: KubeClient,
    /** This node. */
    readonly nodeName: string,
    private readonly opts: KubeSourceOptions,
  ) {
    this.keys = annotationKeys(opts.annotationPrefix);
    this.netConfPath = opts.netConfPath ?? DEFAULT_NET_CONFIG_PATH;
  }

  /** Connects (finding the node name) — the API server must answer for the pod lookup only. */
  static async open(opts: KubeSourceOptions): Promise<KubeLeaseSource> {
    annotationKeys(opts.annotationPrefix); // a bad prefix fails before anything connects
    const client = new KubeClient(opts.conn, { ...(opts.timeoutMs ? { timeoutMs: opts.timeoutMs } : {}) });
    try {
      const name = await findNodeName(client, opts.env ?? ((k) => Deno.env.get(k)));
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

  /** The net-conf.json text as last read; the probe compares it with the file's. */
  configText(): string | undefined {
    try {
      return Deno.readTextFileSync(this.netConfPath);
    } catch {
      return this.#configText;
    }
  }

  /** GETs the own node. */
  ownNode(signal?: AbortSignal): Promise<KubeNode> {
    return this.client.get<KubeNode>(this.#nodePath(), signal ? { signal } : {});
  }

  /** Public IPs the node's `node-public-ip(v6)` annotations set (flannel prefers them to --public-ip). */
  async storedPublicIPs(): Promise<{ ipv4?: string; ipv6?: string }> {
    return storedPublicIPs(await this.ownNode(), this.keys);
  }

  /** Every node that is a lease (flannel's rules), the own one included. */
  async listLeases(): Promise<{ leases: (Lease & { node: string })[]; revision: number }> {
    const cfg = this.#cfg ?? this.#readConfig();
    const { items, resourceVersion } = await this.client.list<KubeNode>("/api/v1/nodes");
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
   * The own lease: the node's podCIDR(s), checked against `cfg`; publishes `attrs` as annotations (only
   * the keys that differ) and sets NetworkUnavailable=False (unless disabled, or already so).
   */
  async acquireLease(cfg: NetworkConfig, attrs: LeaseAttrs): Promise<Lease & { node: string }> {
    // (AcquireOptions do not apply: the subnet is the node's podCIDR, there is no TTL.)
    const node = await this.ownNode();
    const subnets = ownSubnets(node, cfg, this.netConfPath);
    await this.#publish(node, attrs);
    if (this.opts.setNodeNetworkUnavailable ?? true) {
      const cur = node.status?.conditions?.find((c) => c.type === "NetworkUnavailable");
      if (!cur || cur.status !== "False" || cur.reason !== "FlannelIsUp") {
        await this.#patchStatus(
          { status: { conditions: [networkAvailableCondition()] } },
          "NetworkUnavailable condition",
        );
        logger.info("node {node}: condition NetworkUnavailable=False (FlannelIsUp)", { node: this.nodeName });
      }
    }
    const lease: Lease & { node: string } = {
      ...subnets,
      attrs,
      key: subnetKey(subnets.subnet, subnets.ipv6Subnet),
      node: this.nodeName,
    };
    logger.info("node {node}: lease {subnet} from its podCIDR", {
      node: this.nodeName,
      subnet: leaseName(lease),
    });
    return lease;
  }

  async #patchStatus(body: unknown, what: string): Promise<KubeNode> {
    try {
      return await this.client.patch<KubeNode>(`${this.#nodePath()}/status`, body, "strategic");
    } catch (err) {
      if (err instanceof KubeApiError && err.code === 403) {
        throw new Error(
          `the API server refused to patch nodes/${this.nodeName}/status (${what}): ${err.message}. The service account needs "patch" on "nodes/status" (ClusterRole in deploy/kube-weft.yml)`,
        );
      }
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

  /**
   * A keeper for the own lease: no TTL, but the annotations are re-published when someone changed them
   * (on `poke()` and every `resyncSeconds`).
   */
  keepLease(
    cfg: NetworkConfig,
    attrs: LeaseAttrs,
    lease: Lease,
    opts: KeepOptions & { resyncSeconds?: number } = {},
  ): OwnLeaseKeeper & { renewals: number } {
    let wake = Promise.withResolvers<void>();
    const ownNode = (signal: AbortSignal) => this.ownNode(signal);
    const publish = (node: KubeNode) => this.#publish(node, attrs);
    const { nodeName, netConfPath } = this;
    const keepers = this.#keepers;
    const keeper = {
      lease,
      renewals: 0,
      poke() {
        wake.resolve();
      },
      async run(signal: AbortSignal) {
        keepers.add(keeper);
        signal.addEventListener("abort", () => keepers.delete(keeper), { once: true });
        // The watch pokes the keeper when the own node changes; this look is only a safety net.
        const period = (opts.resyncSeconds ?? 300) * 1000;
        while (!signal.aborted) {
          await Promise.race([sleep(period, signal), wake.promise]);
          wake = Promise.withResolvers<void>();
          if (signal.aborted) return;
          try {
            const node = await ownNode(signal);
            ownSubnets(node, cfg, netConfPath); // still ours (a podCIDR never changes)
            if (await publish(node)) {
              keeper.renewals++;
              logger.warn("node {node}: its flannel annotations had been changed: published them again", {
                node: nodeName,
              });
              opts.onLease?.(keeper.lease, false);
            }
          } catch (err) {
            if (signal.aborted) return;
            logger.warn("node {node}: checking its annotations failed: {error}", {
              node: nodeName,
              error: (err as Error).message,
            });
          }
        }
      },
    };
    return keeper;
  }

  /**
   * Watches every node that is a lease until `opts.signal` aborts (see the module comment): the first
   * list as one `added` batch, then changes in batches; a node whose attributes changed comes as
   * `added` with `previous`, a deleted node (or one that stopped being a lease) as `removed`. The own
   * node's changes go to `onOwn` and poke the running keepers. (`ownPublicIP` does not apply: a node has
   * one lease, so there are no old leases of this node to hide.)
   */
  watchLeases(onBatch: (events: LeaseEvent[]) => void, opts: WatchOptions): LeaseWatch {
    let watch: NodeWatch | undefined;
    const done = (async () => {
      const cfg = this.#cfg ?? this.#readConfig();
      const ctx = {
        client: this.client,
        cfg,
        keys: this.keys,
        nodeName: this.nodeName,
        ...(this.opts.watchIdleMs ? { idleMs: this.opts.watchIdleMs } : {}),
        primed: () => {
          const snap = this.#snapshot;
          this.#snapshot = undefined;
          return snap && Date.now() - snap.at < 10_000 ? snap : undefined;
        },
      };
      // Any change of the own node's lease (someone edited our annotations) has the keepers look at once.
      const onOwn = (e: LeaseEvent) => {
        for (const k of this.#keepers) k.poke();
        opts.onOwn?.(e);
      };
      watch = new NodeWatch(ctx, onBatch, { ...opts, onOwn });
      await watch.run();
    })();
    return Object.assign(done, { relist: () => watch?.relist() });
  }

  /**
   * A cheap round trip (GET of the own node, short timeout) that resolves with the net-conf.json text
   * (to notice it changed); rejects when the API server cannot be reached.
   */
  async probe(timeoutMs = 3000): Promise<string> {
    await this.client.get(this.#nodePath(), { timeoutMs });
    return this.configText() ?? "";
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
