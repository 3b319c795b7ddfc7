/**
 * Start-up: network config → external interface → backend → lease. Every store call is retried with
 * back-off until it answers (a node booting before its etcd or API server is normal), with the store's
 * own ceilings (Kubernetes: 0.8 s → 30 s) and never sooner than a server's Retry-After.
 *
 * @module
 */
import type { Netlink } from "../../ffi/mod.ts";
import { retry as retryWithBackoff } from "../async.ts";
import type { Backend } from "../backend/backend.ts";
import { createBackend } from "../backend/registry.ts";
import type { NetworkConfig } from "../config/net_conf.ts";
import { readSubnetEnv } from "../config/subnet_env.ts";
import { log } from "../log.ts";
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
  const again = (what: string) => (err: Error, ms: number) => {
    onWaiting?.(`${what} failed: ${err.message}`);
    logger.warn("{what} failed: {error}; retrying in {ms} ms", { what, error: err.message, ms });
  };
  const retry = <T>(fn: () => Promise<T>, what: string) =>
    retryWithBackoff(fn, signal, again(what), source.retryBackoff);
  const cfg = await retry(() => source.getNetworkConfig(), "reading the network config");
  const cfgFingerprint = source.configFingerprint?.() ??
    await retry(() => source.probe?.() ?? Promise.resolve(""), "reading the network config");
  if (cfg.backendDefaulted) {
    logger.info("network config has no Backend: using vxlan (flannel would pick udp)");
  }
  const ext = selectInterface(nl, opts);
  logger.info("using interface {name} ({ip}), public IP {pub}, MTU {mtu}", {
    name: ext.name,
    ip: ext.ifaceIP,
    pub: ext.publicIP,
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
  const { leases } = await retry(() => source.listLeases(), "listing leases");
  const previous = leases.find((l) => l.attrs.PublicIP === ext.publicIP);
  const backend = createBackend(cfg, {
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
    PublicIP: ext.publicIP,
    PublicIPv6: dualStack ? ext.publicIPv6 ?? null : null,
    BackendType: backend.leaseType ?? backend.type,
    BackendData: backend.backendData(),
    ...(v6Data !== undefined ? { BackendV6Data: v6Data } : {}),
  };
  const acquire = { ttlSeconds: opts.leaseTtlSeconds, ...previousSubnets(opts.subnetFile) };
  const lease = await retry(() => source.acquireLease(cfg, attrs, acquire), "acquiring a lease");
  onWaiting?.(undefined);
  logger.info("lease {subnet} acquired", { subnet: leaseName(lease) });
  return { cfg, cfgFingerprint, ext, backend, attrs, lease };
}
