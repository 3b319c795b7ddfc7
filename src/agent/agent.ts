/**
 * `weft agent`: flanneld's job. Takes the node's lease, keeps it, programs the datapath through the
 * reconciler, writes subnet.env, installs masquerade/forward rules, serves health and metrics.
 *
 * Restarts drop nothing: startup reuses a compatible device and existing entries (never flushes), and
 * SIGTERM leaves the datapath in place. While etcd is unreachable the datapath keeps forwarding: peers
 * are only removed when etcd says their lease is gone.
 *
 * @module
 */
import { Netlink } from "../../ffi/mod.ts";
import type { NetworkConfig } from "../config/net_conf.ts";
import { readSubnetEnv, writeSubnetEnv } from "../config/subnet_env.ts";
import { NetlinkKernel } from "../datapath/kernel.ts";
import { applyMasq } from "../datapath/masq.ts";
import { Reconciler } from "../datapath/reconciler.ts";
import { log } from "../log.ts";
import { formatNet, type IPNet } from "../net/ip.ts";
import type { Backend } from "../backend/backend.ts";
import { HostGwBackend } from "../backend/hostgw.ts";
import { VxlanBackend } from "../backend/vxlan.ts";
import {
  type EtcdOptions,
  type Lease,
  LeaseKeeper,
  leaseName,
  openEtcdRegistry,
  sleep,
  SubnetManager,
} from "../subnet/mod.ts";
import { type ExternalInterface, type IfaceOptions, selectInterface } from "./iface.ts";
import { agentMetrics } from "./metrics.ts";
import { serveHealth } from "./health.ts";

const logger = log("agent");

/** Everything `weft agent` is told. */
export interface AgentOptions extends IfaceOptions {
  /** etcd connection. */
  etcd: EtcdOptions;
  /** Install masquerade rules. */
  ipMasq: boolean;
  /** subnet.env path. */
  subnetFile: string;
  /** Renew this long before expiry, seconds. */
  renewMarginSeconds: number;
  /** Lease TTL, seconds. */
  leaseTtlSeconds: number;
  /** Health endpoint; port 0 disables it. */
  healthz: { hostname: string; port: number };
  /** Full reconcile period, seconds. */
  resyncSeconds: number;
  /** Stops the agent. */
  signal: AbortSignal;
}

async function retry<T>(what: string, signal: AbortSignal, fn: () => Promise<T>): Promise<T> {
  let backoff = 100;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (signal.aborted) throw err;
      logger.warn("{what} failed: {error}; retrying in {ms} ms", {
        what,
        error: (err as Error).message,
        ms: backoff,
      });
      await sleep(backoff, signal);
      backoff = Math.min(backoff * 2, 5000);
    }
  }
}

function makeBackend(nl: Netlink, cfg: NetworkConfig, ext: ExternalInterface, previousMac?: string): Backend {
  if (cfg.backendDefaulted) {
    logger.info("network config has no Backend: using vxlan (flannel would pick udp)");
  }
  switch (cfg.backend.type) {
    case "vxlan":
      return new VxlanBackend(nl, cfg.backend.vxlan!, ext, previousMac);
    case "host-gw":
      return new HostGwBackend(ext);
    default:
      throw new Error(`backend ${cfg.backend.type} is not supported by weft (supported: vxlan, host-gw)`);
  }
}

/** Runs the agent until `opts.signal` aborts. */
export async function runAgent(opts: AgentOptions): Promise<void> {
  const { signal } = opts;
  const registry = await openEtcdRegistry(opts.etcd);
  const manager = new SubnetManager(registry);
  using nl = Netlink.open();
  let etcdUp = false;
  let lease: Lease | undefined;
  let keeper: LeaseKeeper | undefined;
  let subnetEnvWritten = false;
  let firstApply = false;
  let known = 0;
  const reconcilerRef: { r?: Reconciler } = {};

  const readiness = () => {
    if (!lease) return { ready: false, why: "no lease yet" };
    if (!firstApply) return { ready: false, why: "datapath not applied yet" };
    if (!subnetEnvWritten) return { ready: false, why: "subnet.env not written" };
    return { ready: true, why: "" };
  };
  const emptyStats = {
    passes: 0,
    driftRepaired: 0,
    pruned: 0,
    deviceRecreated: 0,
    errors: 0,
    lastPassSeconds: 0,
    peersProgrammed: 0,
  };
  let backendType = "";
  const metrics = agentMetrics({
    get stats() {
      return reconcilerRef.r?.stats ?? emptyStats;
    },
    leasesKnown: () => known,
    lease: () =>
      lease?.subnet
        ? {
          subnet: formatNet(lease.subnet),
          publicIP: lease.attrs.PublicIP,
          backend: backendType,
          ...(lease.expiration ? { expiresAt: lease.expiration } : {}),
        }
        : undefined,
    etcdUp: () => etcdUp,
    ready: () => readiness().ready,
    renewals: () => keeper?.renewals ?? 0,
  });
  const server = opts.healthz.port ? serveHealth(opts.healthz, readiness, metrics) : undefined;

  try {
    const cfg = await retry("reading the network config from etcd", signal, () => manager.getNetworkConfig());
    etcdUp = true;
    const ext = selectInterface(nl, opts);
    logger.info("using interface {name} ({ip}), public IP {pub}", {
      name: ext.name,
      ip: ext.ifaceIP,
      pub: ext.publicIP,
    });

    // A previous lease of this node: its VTEP MAC keeps the overlay stable across reboots.
    const { leases } = await retry("listing leases", signal, () => manager.listLeases());
    const previous = leases.find((l) => l.attrs.PublicIP === ext.publicIP);
    const previousMac = (previous?.attrs.BackendData as { VtepMAC?: string } | null)?.VtepMAC;
    const backend = makeBackend(nl, cfg, ext, previousMac);
    backendType = backend.type;
    let previousSubnet: IPNet | undefined;
    try {
      previousSubnet = readSubnetEnv(opts.subnetFile).subnet;
    } catch { /* no previous subnet.env */ }
    const attrs = {
      PublicIP: ext.publicIP,
      PublicIPv6: null,
      BackendType: backend.type,
      BackendData: backend.backendData(),
    };
    lease = await retry("acquiring a lease", signal, () =>
      manager.acquireLease(cfg, attrs, {
        ttlSeconds: opts.leaseTtlSeconds,
        ...(previousSubnet ? { previousSubnet } : {}),
      }));
    logger.info("lease {subnet} acquired", { subnet: leaseName(lease) });

    const clusterNets = [cfg.network, cfg.ipv6Network].filter((n): n is IPNet => !!n);
    const reconciler = new Reconciler(backend, new NetlinkKernel(nl), clusterNets);
    reconcilerRef.r = reconciler;

    const applyLease = (l: Lease) => {
      backend.setLease(l);
      backend.ensureDevice();
      writeEnv(l);
      installRules(l);
    };
    const writeEnv = (l: Lease) => {
      writeSubnetEnv(opts.subnetFile, {
        ...(cfg.network ? { network: cfg.network } : {}),
        ...(l.subnet ? { subnet: l.subnet } : {}),
        mtu: backend.mtu,
        ipMasq: opts.ipMasq,
      });
      subnetEnvWritten = true;
    };
    const installRules = (l: Lease) => {
      if (!cfg.network || !l.subnet) return;
      try {
        applyMasq([{ network: cfg.network, podSubnet: l.subnet }], opts.ipMasq);
      } catch (err) {
        logger.error("nftables rules: {error}", { error: (err as Error).message });
      }
    };
    applyLease(lease);

    keeper = new LeaseKeeper(manager, lease, {
      ttlSeconds: opts.leaseTtlSeconds,
      renewMarginSeconds: opts.renewMarginSeconds,
      reacquire: (prev) =>
        manager.acquireLease(cfg, attrs, {
          ttlSeconds: opts.leaseTtlSeconds,
          ...(prev.subnet ? { previousSubnet: prev.subnet } : {}),
        }),
      onLease: (l, reacquired) => {
        const changed = lease?.key !== l.key;
        lease = l;
        etcdUp = true;
        if (reacquired && changed) {
          logger.warn("lease changed to {subnet}: updating device, subnet.env and rules", {
            subnet: leaseName(l),
          });
          applyLease(l);
        }
      },
    });
    const keeping = keeper.run(signal);

    const watching = manager.watchLeases((batch) => {
      for (const ev of batch) {
        if (ev.lease.attrs.PublicIP === ext.publicIP) continue; // an old lease of ours
        reconciler.setPeer(ev.lease.key, ev.type === "added" ? ev.lease : undefined);
      }
      known = reconciler.desiredCount;
    }, {
      signal,
      ownKey: () => lease?.key,
      onOwn: (ev) => {
        if (ev.type === "removed") {
          logger.warn("own lease {key} was deleted in etcd: re-acquiring", { key: ev.lease.key });
          keeper?.poke();
        }
      },
      onSync: () => {
        reconciler.settled().then(() => {
          if (!firstApply) {
            reconciler.fullPass();
            firstApply = true;
            logger.info("datapath applied: {n} peers programmed", { n: reconciler.stats.peersProgrammed });
          }
        });
      },
      onConnectivity: (up) => {
        etcdUp = up;
      },
    });

    const resync = async () => {
      while (!signal.aborted) {
        await sleep(opts.resyncSeconds * 1000, signal);
        if (signal.aborted) break;
        await reconciler.settled();
        reconciler.fullPass();
        try {
          Deno.statSync(opts.subnetFile);
        } catch {
          logger.warn("{file} was deleted: rewriting it", { file: opts.subnetFile });
          if (lease) writeEnv(lease);
        }
        if (lease) installRules(lease);
      }
    };
    await Promise.all([keeping, watching, resync()]);
  } finally {
    // The datapath stays as it is: the next start converges from it without dropping a packet.
    await server?.shutdown();
    await registry.close();
    logger.info("agent stopped; datapath left in place");
  }
}
