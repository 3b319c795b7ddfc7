/**
 * `weft agent`: flanneld's job. Takes the node's lease, keeps it, programs the datapath through the
 * reconciler, writes subnet.env, installs masquerade/forward rules, serves health and metrics.
 *
 * Restarts drop nothing: start-up reuses a compatible device and existing entries (never flushes), and
 * SIGTERM leaves the datapath in place. While the lease store is unreachable the datapath keeps
 * forwarding: peers are only removed when the store says their lease is gone, and nothing is pruned
 * before the first complete list of leases has been read.
 *
 * The parts: start-up (startup.ts), the node's own state (node_state.ts), the peers (peer_sync.ts →
 * the reconciler), full passes (resync.ts), store reachability (store_health.ts), status and metrics
 * (status.ts, metrics.ts, health.ts). This file only wires them.
 *
 * @module
 */
import { Netlink } from "../../ffi/mod.ts";
import { leaseFilterFor } from "../backend/backend.ts";
import { NetlinkKernel } from "../datapath/kernel.ts";
import { Reconciler } from "../datapath/reconciler.ts";
import { log } from "../log.ts";
import type { IfaceOptions } from "../net/iface.ts";
import type { IPNet } from "../net/ip.ts";
import { leaseName } from "../lease/lease.ts";
import type { KeepOptions, LeaseSource } from "../lease/source.ts";
import { networkRules } from "../lease/validate.ts";
import { nodeFactsOf, onOwnLeaseChange } from "./own_lease.ts";
import { serveHealth } from "./health.ts";
import type { HttpServer } from "./http_server.ts";
import { networkPolicyFor, type NetworkPolicyOptions, type NetworkPolicyPart } from "./network_policy.ts";
import { agentMetrics } from "./metrics.ts";
import { NodeState } from "./node_state.ts";
import { PeerSync } from "./peer_sync.ts";
import { Resync } from "./resync.ts";
import { startNode } from "./startup.ts";
import { AgentStatus } from "./status.ts";
import { StoreHealth } from "./store_health.ts";

const logger = log("agent");

/** Everything `weft agent` is told (the lease store comes separately). */
export interface AgentOptions extends IfaceOptions {
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
  /** Enforce NetworkPolicies (`--network-policy`, kube mode); absent: weft's policy table is removed. */
  networkPolicy?: NetworkPolicyOptions;
  /** Stops the agent. */
  signal: AbortSignal;
}

/**
 * The health server when `--healthz-port` is set (its counters go to the metrics through `status`), and,
 * with `--network-policy`, the policy part, whose metrics follow the agent's; without it, weft's policy
 * table is removed.
 */
function startServing(
  opts: AgentOptions,
  status: AgentStatus,
): { server: HttpServer | undefined; policy: NetworkPolicyPart | undefined } {
  const policy = networkPolicyFor(opts.networkPolicy, status);
  if (!opts.healthz.port) return { server: undefined, policy };
  const base = agentMetrics(status.view());
  const server = serveHealth(opts.healthz, () => status.readiness(), policy ? policy.metrics(base) : base);
  status.http = () => server.stats;
  return { server, policy };
}

/**
 * What the keeper tells the agent: a renewed lease, a re-taken one (another subnet: device, subnet.env
 * and rules follow), a lost one (subnet.env withdrawn until the lease is back).
 */
function leaseHooks(
  status: AgentStatus,
  node: NodeState,
  peers: () => PeerSync,
  health: () => StoreHealth,
): Pick<KeepOptions, "onLease" | "onLost"> {
  return {
    onLease: (l, reacquired) => {
      const changed = status.lease?.key !== l.key;
      const wasLost = status.leaseLost !== undefined;
      status.lease = l;
      status.leaseLost = undefined;
      peers().setOwn(l);
      health().set(true);
      if (!reacquired) return;
      status.counters.leaseReacquired++;
      if (!changed && !wasLost) return;
      logger.warn("lease changed to {subnet}: updating device, subnet.env and rules", {
        subnet: leaseName(l),
      });
      node.ensure(l, true);
    },
    onLost: (why) => {
      status.leaseLost = why;
      node.withdraw();
    },
  };
}

/** Runs the agent on `source` until `opts.signal` aborts; closes `source` when it stops. */
export async function runAgent(source: LeaseSource, opts: AgentOptions): Promise<void> {
  const { signal } = opts;
  using nl = Netlink.open();
  const status = new AgentStatus();
  const { server, policy } = startServing(opts, status);
  let stopReconciler = () => {};
  let closeBackend = (): Promise<void> => Promise.resolve();
  try {
    const waiting = (why: string | undefined) => status.waiting = why;
    const { cfg, cfgFingerprint, ext, backend, attrs, lease } = await startNode(
      source,
      nl,
      opts,
      signal,
      waiting,
    );
    status.lease = lease;
    status.backendType = backend.type;
    closeBackend = () => backend.close?.() ?? Promise.resolve();
    status.forwarder = () => backend.forwarderStats?.();
    status.storeUp = true;
    const node = new NodeState(backend, cfg, opts, status);
    node.ensure(lease, true);
    const clusterNets = [cfg.network, cfg.ipv6Network].filter((n): n is IPNet => !!n);
    const kernel = new NetlinkKernel(nl);
    const reconciler = new Reconciler(backend, kernel, clusterNets);
    stopReconciler = () => reconciler.stop();
    status.routesRefused = () => kernel.routes.refused;
    status.stats = () => reconciler.stats;
    status.leasesKnown = () => reconciler.desiredCount;

    const keeper = source.keepLease(cfg, attrs, lease, {
      ttlSeconds: opts.leaseTtlSeconds,
      renewMarginSeconds: opts.renewMarginSeconds,
      ...leaseHooks(status, node, () => peers, () => health),
    });
    status.renewals = () => keeper.renewals;
    status.reasserted = () => keeper.reasserted ?? 0;
    const facts = nodeFactsOf(nl, attrs, () => status.lease);
    const peers: PeerSync = new PeerSync(source, reconciler, leaseFilterFor(backend), {
      ownKey: () => status.lease?.key,
      ownPublicIP: ext.publicIP,
      onOwn: onOwnLeaseChange(keeper, source.kind),
      onSynced: () => void resync.pass(),
      onConnectivity: (up) => health.set(up, "lease watch failed"),
      onRefused: (why) => health.refused(why),
    }, { network: networkRules(cfg), node: facts() });
    peers.setOwn(lease);
    status.rejected = () => ({ total: peers.rejectedTotal, current: peers.rejected() });
    const refreshNode = () => peers.setNode(facts()); // the node's addresses, at each full pass
    const resync = new Resync(reconciler, node, () => keeper.lease, () => peers.synced, status, refreshNode);
    resync.onApplied = () => keeper.datapathReady?.(); // kube: NetworkUnavailable=False only now
    const health: StoreHealth = new StoreHealth(source, status, () => {
      logger.info("catching up with the {kind} store after the outage", { kind: source.kind });
      peers.relist();
      keeper.poke(); // renew now if a renewal came due during the outage
    });

    await Promise.all([
      keeper.run(signal),
      peers.run(signal),
      resync.run(opts.resyncSeconds, signal),
      health.run(Math.min(opts.resyncSeconds, 5) * 1000, cfgFingerprint, signal),
      policy?.run(opts.resyncSeconds, signal),
    ]);
  } finally {
    // The datapath stays as it is: the next start converges from it without dropping a packet.
    stopReconciler();
    // A backend's own loop (udp) stops; its devices stay, like every other part of the datapath.
    await closeBackend().catch((err) =>
      logger.error("stopping the backend: {error}", { error: (err as Error).message })
    );
    await server?.shutdown();
    await source.close();
    logger.info("agent stopped; datapath left in place");
  }
}
