/**
 * Start-up: network config → external interface → backend → lease. Every store call is retried with
 * back-off until it answers (a node booting before its etcd or API server is normal), with the store's
 * own ceilings (Kubernetes: 0.8 s → 30 s) and never sooner than a server's Retry-After.
 *
 * @module
 */
import type { Netlink } from "../../ffi/mod.ts";
import { retry } from "../async.ts";
import type { Backend } from "../backend/backend.ts";
import { createBackend } from "../backend/registry.ts";
import { DEFAULTED_BACKEND_WARNING, type NetworkConfig } from "../config/net_conf.ts";
import { readSubnetEnv } from "../config/subnet_env.ts";
import { log, RepeatedFailure } from "../log.ts";
import { type ExternalInterface, type IfaceOptions, selectInterface } from "../net/iface.ts";
import { formatNet } from "../net/ip.ts";
import { type Lease, type LeaseAttrs, leaseName } from "../lease/lease.ts";
import type { AcquireOptions, LeaseSource } from "../lease/source.ts";

const logger = log("agent");

/** What start-up needs besides the store. */
export interface StartOptions extends IfaceOptions {
  /** subnet.env path (its subnet is tried first when free). */
  subnetFile: string;
  /** Lease TTL, seconds. */
  leaseTtlSeconds: number;
}

/** The node as start-up leaves it. */
export interface StartedNode {
  /** The network config. */
  cfg: NetworkConfig;
  /** Its fingerprint, to notice a change later. */
  cfgFingerprint: string;
  /** The external interface. */
  ext: ExternalInterface;
  /** The backend, built for this node. */
  backend: Backend;
  /** What the node publishes in its lease. */
  attrs: LeaseAttrs;
  /** The lease acquired. */
  lease: Lease;
}

/** flanneld does not turn forwarding on either; without it pods on this node cannot be reached. */
function warnIfNoForwarding(ipv6: boolean): void {
  try {
    if (Deno.readTextFileSync("/proc/sys/net/ipv4/ip_forward").trim() === "0") {
      logger.warn("net.ipv4.ip_forward is 0: this node will not forward pod traffic (see `weft doctor`)");
    }
    if (ipv6 && Deno.readTextFileSync("/proc/sys/net/ipv6/conf/all/forwarding").trim() === "0") {
      logger.warn("net.ipv6.conf.all.forwarding is 0: this node will not forward IPv6 pod traffic");
    }
  } catch { /* no procfs: nothing to say */ }
}

/** The previous subnet.env's subnets: tried first when still free. */
function previousSubnets(path: string): AcquireOptions {
  try {
    const env = readSubnetEnv(path);
    return {
      ...(env.subnet ? { previousSubnet: env.subnet } : {}),
      ...(env.ipv6Subnet ? { previousIPv6Subnet: env.ipv6Subnet } : {}),
    };
  } catch {
    return {}; // no previous subnet.env
  }
}

/**
/**
 * `fn` until it answers (back-off `backoff`, default 100 ms → 5 s; never sooner than a server's
 * Retry-After), its failures logged as a {@linkcode RepeatedFailure}: the first one, then at growing
 * intervals with a count, then one line when it works. `onWaiting` hears each failure (for /readyz).
 */
async function untilAnswered<T>(
  what: string,
  fn: () => Promise<T>,
  signal: AbortSignal,
  backoff: { firstMs: number; maxMs: number } = { firstMs: 100, maxMs: 5000 },
  onWaiting?: (why: string) => void,
): Promise<T> {
  const failure = new RepeatedFailure(logger, {
    what,
    fix: `retrying with back-off (up to ${backoff.maxMs / 1000} s)`,
  });
  const out = await retry(fn, signal, (err) => {
    onWaiting?.(`${what} failed: ${err.message}`);
    failure.failed(err.message);
  }, backoff);
  failure.succeeded();
  return out;
}

/**
 * Reads the config, picks the interface, builds the backend and takes the lease; `onWaiting` hears why
 * it is still waiting (each failed store call), for /readyz, and undefined once the lease is taken.
 */
export async function startNode(
  source: LeaseSource,
  nl: Netlink,
  opts: StartOptions,
  signal: AbortSignal,
  onWaiting?: (why: string | undefined) => void,
): Promise<StartedNode> {
  const until = <T>(what: string, fn: () => Promise<T>) =>
    untilAnswered(what, fn, signal, source.retryBackoff, onWaiting);
  const cfg = await until("reading the network config", () => source.getNetworkConfig());
  // A store whose watch is its health (Kubernetes) reads the config locally; etcd's probe is a round trip.
  const cfgFingerprint = source.configFingerprint?.() ??
    await until("reading the network config", () => source.probe?.() ?? Promise.resolve(""));
  if (cfg.backendDefaulted) logger.warn("{warning}", { warning: DEFAULTED_BACKEND_WARNING });
  // The store lists while the interface is looked up (a list of 5000 Nodes is on the wire meanwhile) —
  // unless it keeps the node's own record (Kubernetes: its Node), where the previous lease is read from
  // that and the list is left to the watch: the backend and the lease are made while it arrives.
  const own = source.ownPreviousLease?.bind(source);
  const listing = own ? undefined : until("listing leases", () => source.listLeases());
  listing?.catch(() => {}); // awaited below; only aborted (the agent stopping) can reject it
  // An IPv6-only network chooses the interface by its IPv6 addresses: the node needs no IPv4 one.
  const ext = selectInterface(nl, opts, !cfg.network && cfg.enableIPv6 ? 6 : 4);
  logger.info("using interface {name} ({ip}), public IP {pub}, MTU {mtu}", {
    name: ext.name,
    ip: ext.ifaceIP || ext.ifaceIPv6,
    pub: cfg.network ? ext.publicIP : ext.publicIPv6,
    mtu: ext.mtu,
  });
  // Dual-stack (or IPv6-only) only with an IPv6 network to take subnets from.
  const dualStack = !!(cfg.enableIPv6 && cfg.ipv6Network);
  warnIfNoForwarding(dualStack);
  if (cfg.ipv6Network && dualStack) {
    logger.info("dual-stack: IPv6 network {net}, public IPv6 {pub}", {
      net: formatNet(cfg.ipv6Network),
      pub: ext.publicIPv6 ?? "none",
    });
  }
  // A previous lease of this node: its VTEP MAC keeps the overlay stable across reboots.
  const mine = (l: Lease) =>
    cfg.network ? l.attrs.PublicIP === ext.publicIP : l.attrs.PublicIPv6 === ext.publicIPv6;
  // From the node's own record (Kubernetes) or among every lease (etcd): the one with this node's address.
  const candidates = own
    ? [await until("reading the node's previous lease", () => own(cfg))]
    : (await listing!).leases;
  const previous = candidates.find((l): l is Lease => l !== undefined && mine(l));
  const backend = await createBackend(cfg, {
    nl,
    ext,
    families: { ipv4: !!cfg.network, ipv6: dualStack },
    networks: {
      ...(cfg.network ? { ipv4: cfg.network } : {}),
      ...(cfg.ipv6Network ? { ipv6: cfg.ipv6Network } : {}),
    },
    ...(previous ? { previous: previous.attrs } : {}),
  });
  const v6Data = backend.backendV6Data?.();
  const attrs: LeaseAttrs = {
    // IPv6-only: flannel's PublicIP is its zero IPv4 address, "0.0.0.0" (nobody reads it).
    PublicIP: cfg.network ? ext.publicIP : "0.0.0.0",
    PublicIPv6: dualStack ? ext.publicIPv6 ?? null : null,
    BackendType: backend.leaseType ?? backend.type,
    BackendData: backend.backendData(),
    ...(v6Data !== undefined ? { BackendV6Data: v6Data } : {}),
  };
  const acquire = { ttlSeconds: opts.leaseTtlSeconds, ...previousSubnets(opts.subnetFile) };
  const lease = await until("acquiring a lease", () => source.acquireLease(cfg, attrs, acquire));
  onWaiting?.(undefined);
  logger.info("lease {subnet} acquired", { subnet: leaseName(lease) });
  return { cfg, cfgFingerprint, ext, backend, attrs, lease };
}
