/**
 * `weft agent`: flanneld's job. Takes the node's lease, keeps it, programs the datapath through the
 * reconciler, writes subnet.env, installs masquerade/forward rules, serves health and metrics.
 *
 * Restarts drop nothing: startup reuses a compatible device and existing entries (never flushes), and
 * SIGTERM leaves the datapath in place. While etcd is unreachable the datapath keeps forwarding: peers
 * are only removed when etcd says their lease is gone, and nothing is pruned before the first complete
 * list of leases has been read.
 *
 * @module
 */
import { Netlink } from "../../ffi/mod.ts";
import type { NetworkConfig } from "../config/net_conf.ts";
import { formatSubnetEnv, readSubnetEnv, type SubnetEnv, writeSubnetEnv } from "../config/subnet_env.ts";
import { NetlinkKernel } from "../datapath/kernel.ts";
import { type MasqNets, RulesKeeper } from "../datapath/masq.ts";
import { Reconciler } from "../datapath/reconciler.ts";
import { log } from "../log.ts";
import { formatNet, type IPNet } from "../net/ip.ts";
import type { Backend } from "../backend/backend.ts";
import { HostGwBackend } from "../backend/hostgw.ts";
import { VxlanBackend } from "../backend/vxlan.ts";
import {
  type EtcdOptions,
  type Lease,
  type LeaseAttrs,
  leaseAttrsJSON,
  LeaseKeeper,
  leaseName,
  openEtcdRegistry,
  sleep,
  SubnetManager,
  vtepMac,
} from "../subnet/mod.ts";
import { type ExternalInterface, type IfaceOptions, selectInterface } from "./iface.ts";
import { type AgentCounters, agentMetrics } from "./metrics.ts";
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

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer in ${ms} ms`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

function makeBackend(
  nl: Netlink,
  cfg: NetworkConfig,
  ext: ExternalInterface,
  families: { ipv4: boolean; ipv6: boolean },
  previous?: LeaseAttrs,
): Backend {
  if (cfg.backendDefaulted) {
    logger.info("network config has no Backend: using vxlan (flannel would pick udp)");
  }
  switch (cfg.backend.type) {
    case "vxlan": {
      const previousMac6 = vtepMac(previous?.BackendV6Data);
      return new VxlanBackend(nl, cfg.backend.vxlan!, ext, vtepMac(previous?.BackendData), {
        ...families,
        ...(previousMac6 ? { previousMac6 } : {}),
      });
    }
    case "host-gw":
      return new HostGwBackend(ext, families);
    default:
      throw new Error(`backend ${cfg.backend.type} is not supported by weft (supported: vxlan, host-gw)`);
  }
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

/** Writes subnet.env when it is missing or differs; returns what it did. */
function ensureSubnetEnv(path: string, env: SubnetEnv): "unchanged" | "written" {
  const want = formatSubnetEnv(env);
  try {
    if (Deno.readTextFileSync(path) === want) return "unchanged";
  } catch { /* missing: write it */ }
  writeSubnetEnv(path, env);
  return "written";
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
  let reconciler: Reconciler | undefined;
  let backendType = "";
  let subnetEnvWritten = false;
  let rulesOk = false;
  let firstApply = false;
  const counters: AgentCounters = { rulesRepaired: 0, subnetEnvRewritten: 0, leaseReacquired: 0 };

  const readiness = () => {
    if (!lease) return { ready: false, why: "no lease yet" };
    if (!firstApply) return { ready: false, why: "datapath not applied yet" };
    if (!subnetEnvWritten) return { ready: false, why: "subnet.env not written" };
    if (!rulesOk) return { ready: false, why: "nftables rules not installed" };
    return { ready: true, why: "" };
  };
  const metrics = agentMetrics({
    stats: () => reconciler?.stats,
    leasesKnown: () => reconciler?.desiredCount ?? 0,
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
    counters: () => counters,
  });
  const server = opts.healthz.port ? serveHealth(opts.healthz, readiness, metrics) : undefined;
  let onEtcdBack = () => {};
  const setEtcdUp = (up: boolean, why?: string) => {
    if (up === etcdUp) return;
    etcdUp = up;
    if (up) {
      logger.info("etcd is reachable again");
      onEtcdBack();
    } else logger.warn("etcd is unreachable ({why}); the datapath stays as it is", { why: why ?? "?" });
  };

  try {
    const cfg = await retry("reading the network config from etcd", signal, () => manager.getNetworkConfig());
    setEtcdUp(true);
    const cfgText = await retry("reading the network config from etcd", signal, () => registry.getConfig());
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
    const { leases } = await retry("listing leases", signal, () => manager.listLeases());
    const previous = leases.find((l) => l.attrs.PublicIP === ext.publicIP);
    const backend = makeBackend(nl, cfg, ext, { ipv4: !!cfg.network, ipv6: dualStack }, previous?.attrs);
    backendType = backend.type;
    let previousSubnet: IPNet | undefined;
    let previousIPv6Subnet: IPNet | undefined;
    try {
      const env = readSubnetEnv(opts.subnetFile);
      previousSubnet = env.subnet;
      previousIPv6Subnet = env.ipv6Subnet;
    } catch { /* no previous subnet.env */ }
    const v6Data = backend.backendV6Data?.();
    const attrs: LeaseAttrs = {
      PublicIP: ext.publicIP,
      PublicIPv6: dualStack ? ext.publicIPv6 ?? null : null,
      BackendType: backend.type,
      BackendData: backend.backendData(),
      ...(v6Data !== undefined ? { BackendV6Data: v6Data } : {}),
    };
    lease = await retry("acquiring a lease", signal, () =>
      manager.acquireLease(cfg, attrs, {
        ttlSeconds: opts.leaseTtlSeconds,
        ...(previousSubnet ? { previousSubnet } : {}),
        ...(previousIPv6Subnet ? { previousIPv6Subnet } : {}),
      }));
    logger.info("lease {subnet} acquired", { subnet: leaseName(lease) });
    const stored = leases.find((l) => l.key === lease!.key);
    if (
      !lease.etcdLeaseId && lease.subnet && leaseAttrsJSON(stored?.attrs ?? attrs) !== leaseAttrsJSON(attrs)
    ) {
      // A reservation (no TTL) made for this node: like flanneld, publish our attributes in it (peers
      // need our VtepMAC), keeping it a reservation.
      const l = lease;
      await retry(
        "publishing our attributes in the reservation",
        signal,
        () => manager.reserve(l.subnet!, attrs),
      );
    }

    const clusterNets = [cfg.network, cfg.ipv6Network].filter((n): n is IPNet => !!n);
    const r = new Reconciler(backend, new NetlinkKernel(nl), clusterNets);
    reconciler = r;
    const rules = new RulesKeeper(opts.ipMasq);

    const envOf = (l: Lease): SubnetEnv => ({
      ...(cfg.network ? { network: cfg.network } : {}),
      ...(l.subnet ? { subnet: l.subnet } : {}),
      ...(cfg.ipv6Network && l.ipv6Subnet ? { ipv6Network: cfg.ipv6Network, ipv6Subnet: l.ipv6Subnet } : {}),
      mtu: backend.mtu,
      ipMasq: opts.ipMasq,
    });
    /** Writes subnet.env when needed; `expected` says a change is no drift (a new lease). */
    const keepSubnetEnv = (l: Lease, expected = false) => {
      try {
        if (ensureSubnetEnv(opts.subnetFile, envOf(l)) === "written" && subnetEnvWritten && !expected) {
          counters.subnetEnvRewritten++;
          logger.warn("{file} was missing or altered: rewrote it", { file: opts.subnetFile });
        }
        subnetEnvWritten = true;
      } catch (err) {
        logger.error("writing {file}: {error}", { file: opts.subnetFile, error: (err as Error).message });
      }
    };
    const keepRules = (l: Lease) => {
      const nets: MasqNets[] = [
        ...(cfg.network && l.subnet ? [{ network: cfg.network, podSubnet: l.subnet }] : []),
        ...(cfg.ipv6Network && l.ipv6Subnet ? [{ network: cfg.ipv6Network, podSubnet: l.ipv6Subnet }] : []),
      ];
      if (!nets.length) {
        rulesOk = true;
        return;
      }
      try {
        const change = rules.ensure(nets);
        if (change === "repaired") {
          counters.rulesRepaired++;
          logger.warn("nftables table weft was deleted or altered: re-installed it");
        }
        rulesOk = true;
      } catch (err) {
        rulesOk = false;
        logger.error("nftables rules: {error}", { error: (err as Error).message });
      }
    };
    const applyLease = (l: Lease) => {
      backend.setLease(l);
      try {
        backend.ensureDevice();
      } catch (err) {
        // The reconciler's next pass retries; subnet.env and rules do not depend on the device.
        logger.error("device: {error}", { error: (err as Error).message });
      }
      keepSubnetEnv(l, true);
      keepRules(l);
    };
    applyLease(lease);

    keeper = new LeaseKeeper(manager, lease, {
      ttlSeconds: opts.leaseTtlSeconds,
      renewMarginSeconds: opts.renewMarginSeconds,
      reacquire: (prev) =>
        manager.acquireLease(cfg, attrs, {
          ttlSeconds: opts.leaseTtlSeconds,
          ...(prev.subnet ? { previousSubnet: prev.subnet } : {}),
          ...(prev.ipv6Subnet ? { previousIPv6Subnet: prev.ipv6Subnet } : {}),
        }),
      onLease: (l, reacquired) => {
        const changed = lease?.key !== l.key;
        lease = l;
        setEtcdUp(true);
        if (reacquired) counters.leaseReacquired++;
        if (reacquired && changed) {
          logger.warn("lease changed to {subnet}: updating device, subnet.env and rules", {
            subnet: leaseName(l),
          });
          applyLease(l);
        }
      },
    });
    const keeping = keeper.run(signal);
    onEtcdBack = () => {
      logger.info("restarting the lease watch after the etcd outage");
      restartWatch();
      keeper?.poke(); // renew now if a renewal came due during the outage
    };

    let synced = false;
    let restartWatch = () => {};
    // The lease watch. It is restarted when etcd comes back after an outage: the etcd client's own watch
    // reconnect backs off up to 30 s, while a fresh watch connects at once. A fresh watch starts from a
    // new snapshot, so peers it does not list (deleted meanwhile) are removed when it syncs.
    const watching = (async () => {
      while (!signal.aborted) {
        const round = new AbortController();
        const next = Promise.withResolvers<void>();
        const stop = () => {
          round.abort();
          next.resolve();
        };
        signal.addEventListener("abort", stop, { once: true });
        restartWatch = stop;
        // A round being replaced may still deliver a late event: only the live round speaks.
        const live = () => !round.signal.aborted;
        let snapshot: Set<string> | undefined = new Set();
        manager.watchLeases((batch) => {
          if (!live()) return;
          for (const ev of batch) {
            if (ev.lease.attrs.PublicIP === ext.publicIP) continue; // an old lease of ours
            snapshot?.add(ev.lease.key);
            r.setPeer(ev.lease.key, ev.type === "added" ? ev.lease : undefined);
          }
        }, {
          signal: round.signal,
          ownKey: () => lease?.key,
          onOwn: (ev) => {
            if (live() && ev.type === "removed") {
              logger.warn("own lease {key} was deleted in etcd: re-acquiring", { key: ev.lease.key });
              keeper?.poke();
            }
          },
          onSync: () => {
            if (!live()) return;
            if (snapshot) {
              for (const key of r.desiredKeys()) if (!snapshot.has(key)) r.setPeer(key, undefined);
              snapshot = undefined;
            }
            synced = true;
            r.settled().then(() => {
              if (firstApply || signal.aborted) return;
              if (r.fullPass()) {
                firstApply = true;
                logger.info("datapath applied: {n} peers programmed", { n: r.stats.peersProgrammed });
              }
            });
          },
          onConnectivity: (up) => {
            if (live()) setEtcdUp(up, "lease watch failed");
          },
        }).catch((err) => logger.error("lease watch: {error}", { error: (err as Error).message }));
        await next.promise;
        signal.removeEventListener("abort", stop);
      }
    })();

    // The periodic full pass: kernel drift, subnet.env, rules. Nothing is pruned before the first
    // complete list of leases (an empty desired map would look like "every peer is gone").
    const resync = async () => {
      while (!signal.aborted) {
        await sleep(opts.resyncSeconds * 1000, signal);
        if (signal.aborted) break;
        if (!synced) continue;
        await r.settled();
        if (r.fullPass() && !firstApply) {
          firstApply = true;
          logger.info("datapath applied: {n} peers programmed", { n: r.stats.peersProgrammed });
        }
        if (lease) {
          keepSubnetEnv(lease);
          keepRules(lease);
        }
      }
    };

    // etcd connectivity, for the metric and the logs (the etcd client reconnects by itself and would
    // otherwise stay silent through an outage); also notices a changed network config.
    const probe = async () => {
      let warnedConfig = false;
      while (!signal.aborted) {
        await sleep(Math.min(opts.resyncSeconds, 5) * 1000, signal);
        if (signal.aborted) break;
        try {
          const text = await withTimeout(registry.getConfig(), 3000, "etcd");
          setEtcdUp(true);
          if (text !== cfgText && !warnedConfig) {
            warnedConfig = true;
            logger.warn("the network config in etcd changed: restart the agent to use it");
          }
        } catch (err) {
          setEtcdUp(false, (err as Error).message);
        }
      }
    };
    await Promise.all([keeping, watching, resync(), probe()]);
  } finally {
    // The datapath stays as it is: the next start converges from it without dropping a packet.
    reconciler?.stop();
    await server?.shutdown();
    await registry.close();
    logger.info("agent stopped; datapath left in place");
  }
}
