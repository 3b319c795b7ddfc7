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
 * (status.ts, metrics.ts, health.ts), network policy (network_policy.ts). This file only wires them:
 * each part gets its own options ({@linkcode agentParts}) and is built from the parts before it; the
 * few links back (the keeper's lease to peer sync, a finished list to the full pass, the store's return
 * to the watch and the keeper) are connected once every part exists.
 *
 * @module
 */
import { Netlink } from "../../ffi/mod.ts";
import { type Backend, leaseFilterFor } from "../backend/backend.ts";
import { blackholes } from "../datapath/blackhole.ts";
import { NetlinkKernel } from "../datapath/kernel.ts";
import { Reconciler } from "../datapath/reconciler.ts";
import { log } from "../log.ts";
import type { IfaceOptions } from "../net/iface.ts";
import type { IPNet } from "../net/ip.ts";
import { type Lease, leaseName } from "../lease/lease.ts";
import type { LeaseSource, OwnLeaseKeeper } from "../lease/source.ts";
import { networkRules } from "../lease/validate.ts";
import { nodeFactsOf, onOwnLeaseChange } from "./own_lease.ts";
import { serveHealth } from "./health.ts";
import type { HttpServer } from "./http_server.ts";
import type { NetworkPolicyOptions, NetworkPolicyPart } from "./network_policy.ts";
import { removeLeftoverPolicyTable } from "../policy/table_ref.ts";
import { agentMetrics } from "./metrics.ts";
import { NodeState, type NodeStateOptions } from "./node_state.ts";
import { PeerSync } from "./peer_sync.ts";
import { Resync } from "./resync.ts";
import { type StartedNode, startNode, type StartOptions } from "./startup.ts";
import { AgentStatus } from "./status.ts";
import type { StoreHealth } from "./store_health.ts";
import { StoreReachability } from "./store_reachability.ts";
import { SystemdNotifier } from "./systemd_notify.ts";

const logger = log("agent");

/** The lease's pod subnets (the policy part holds their unknown addresses closed). */
function podNetsOf(lease: { subnet?: IPNet; ipv6Subnet?: IPNet }): IPNet[] {
  return [lease.subnet, lease.ipv6Subnet].filter((n): n is IPNet => !!n);
}

/** Everything `weft agent` is told (the lease store comes separately). */
export interface AgentOptions extends IfaceOptions {
  /** Install masquerade rules. */
  ipMasq: boolean;
  /** Masquerade with fully-random port mapping (flanneld's default; `--ip-masq-fully-random-disable`). */
  ipMasqFullyRandom: boolean;
  /** `--iptables-resync`: period of the iptables rules' resync, seconds (flanneld: 5). */
  iptablesResyncSeconds: number;
  /** `--iptables-forward-rules`: accept the cluster network's traffic in FORWARD (flanneld: true). */
  iptablesForwardRules: boolean;
  /** `--ip-blackhole-route`: a blackhole route for the node's own subnet, kept by the reconciler. */
  ipBlackholeRoute: boolean;
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

/** Each part's own options, cut from {@linkcode AgentOptions}. */
export interface AgentParts {
  /** Start-up: the interface flags, subnet.env (its subnet is tried first), the lease TTL. */
  start: StartOptions;
  /** The node's own state: subnet.env, masquerade and forward rules, the blackhole route. */
  node: NodeStateOptions & { ipBlackholeRoute: boolean };
  /** The lease keeper. */
  keep: { ttlSeconds: number; renewMarginSeconds: number };
  /** The health and metrics server (port 0: none). */
  health: { hostname: string; port: number };
  /** Full passes (and the policy table's check), every this many seconds. */
  resyncSeconds: number;
  /** Store probes, every this many ms. */
  probeMs: number;
  /** `--network-policy`, or undefined. */
  policy: NetworkPolicyOptions | undefined;
}

/**
 * Cuts `o` into each part's own options. Done here, not in the CLI: opening the store may still set
 * the public IP (a node's `public-ip-overwrite` annotation) and the policy client. An option added to
 * {@linkcode AgentOptions} fails to compile here until it is given to its part; the interface options
 * (IfaceOptions) all go to start-up.
 */
export function agentParts(o: AgentOptions): AgentParts {
  const {
    ipMasq,
    ipMasqFullyRandom,
    iptablesResyncSeconds,
    iptablesForwardRules,
    ipBlackholeRoute,
    subnetFile,
    renewMarginSeconds,
    leaseTtlSeconds,
    healthz,
    resyncSeconds,
    networkPolicy,
    signal: _signal,
    ...rest
  } = o;
  const iface: IfaceOptions & Record<Exclude<keyof typeof rest, keyof IfaceOptions>, never> = rest;
  return {
    start: { ...iface, subnetFile, leaseTtlSeconds },
    node: {
      subnetFile,
      ipMasq,
      ipMasqFullyRandom,
      iptablesForwardRules,
      iptablesResyncSeconds,
      ipBlackholeRoute,
    },
    keep: { ttlSeconds: leaseTtlSeconds, renewMarginSeconds },
    health: healthz,
    resyncSeconds,
    probeMs: Math.min(resyncSeconds, 5) * 1000,
    policy: networkPolicy,
  };
}

/**
 * The health server when `--healthz-port` is set (its counters go to the metrics through `status`), and,
 * with `--network-policy`, the policy part, whose metrics follow the agent's; without it, weft's policy
 * table is removed.
 */
async function startServing(
  parts: AgentParts,
  status: AgentStatus,
): Promise<{ server: HttpServer | undefined; policy: NetworkPolicyPart | undefined }> {
  // The policy code is imported only with --network-policy: without it an agent holds none of it.
  const policy = parts.policy
    ? (await import("./network_policy.ts")).networkPolicyFor(parts.policy, status)
    : (removeLeftoverPolicyTable(), undefined);
  if (!parts.health.port) return { server: undefined, policy };
  const base = agentMetrics(status.view());
  const server = serveHealth(parts.health, () => status.readiness(), policy ? policy.metrics(base) : base);
  status.http = () => server.stats;
  return { server, policy };
}

/** The devices peers' traffic comes through: the backend's own, or (host-gw) the external interface. */
function overlayNames(nl: Netlink, backend: Backend, extName: string): string[] {
  const names = backend.ownedDevices().map((i) => nl.linkGet(i)?.name).filter((n): n is string => !!n);
  return names.length ? names : [extName];
}

/** The node's device, subnet.env and rules for the lease, and the reconciler for its peers. */
function startDatapath(
  nl: Netlink,
  started: StartedNode,
  opts: NodeStateOptions & { ipBlackholeRoute: boolean },
  status: AgentStatus,
) {
  const { cfg, backend, lease, ext } = started;
  status.lease = lease;
  status.backendType = backend.type;
  status.forwarder = () => backend.forwarderStats?.();
  status.storeUp = true;
  const node = new NodeState(backend, cfg, opts, status, () => overlayNames(nl, backend, ext.name));
  node.ensure(lease, true);
  const clusterNets = [cfg.network, cfg.ipv6Network].filter((n): n is IPNet => !!n);
  const kernel = new NetlinkKernel(nl);
  const reconciler = new Reconciler(backend, kernel, clusterNets, blackholes(opts, () => status.lease));
  status.routesRefused = () => kernel.routes.refused;
  status.stats = () => reconciler.stats;
  status.leasesKnown = () => reconciler.desiredCount;
  return { node, reconciler };
}

/**
 * What the keeper's lease means for the rest of the agent: peer sync's own lease, a new subnet's state —
 * and a lost one (kube: the Node deleted), which withdraws subnet.env until the lease is back.
 */
function onOwnLease(
  parts: { status: AgentStatus; peers: PeerSync; health: StoreHealth; node: NodeState },
): { onLease: (l: Lease, reacquired: boolean) => void; onLost: (why: string) => void } {
  const { status, peers, health, node } = parts;
  const onLease = (l: Lease, reacquired: boolean) => {
    const changed = status.lease?.key !== l.key;
    const wasLost = status.leaseLost !== undefined;
    status.lease = l;
    status.leaseLost = undefined;
    peers.setOwn(l);
    health.set(true);
    if (!reacquired) return;
    status.counters.leaseReacquired++;
    if (!changed && !wasLost) return;
    logger.warn("lease changed to {subnet}: updating device, subnet.env and rules", { subnet: leaseName(l) });
    node.ensure(l, true);
  };
  const onLost = (why: string) => {
    status.leaseLost = why;
    node.withdraw();
  };
  return { onLease, onLost };
}

/** The running parts: keeper, peer sync, full passes, store health. */
interface Loops {
  keeper: OwnLeaseKeeper;
  peers: PeerSync;
  resync: Resync;
  health: StoreReachability;
}

/** Builds the loops in order (each from the ones before it), then connects the links back. */
function buildLoops(
  source: LeaseSource,
  nl: Netlink,
  started: StartedNode,
  dp: { node: NodeState; reconciler: Reconciler },
  parts: AgentParts,
  status: AgentStatus,
): Loops {
  const { cfg, ext, backend, attrs, lease } = started;
  const health = new StoreReachability(source, status);
  const facts = nodeFactsOf(nl, attrs, () => status.lease);
  const peers = new PeerSync(source, dp.reconciler, leaseFilterFor(backend), {
    ownKey: () => status.lease?.key,
    ownPublicIP: ext.publicIP,
    onConnectivity: (up) => health.watchSaw(up),
    onRefused: (why) => health.refused(why),
  }, { network: networkRules(cfg), node: facts() });
  peers.setOwn(lease);
  status.rejected = () => ({ total: peers.rejectedTotal, current: peers.rejected() });
  const keeper = source.keepLease(cfg, attrs, lease, {
    ...parts.keep,
    ...onOwnLease({ status, peers, health, node: dp.node }),
  });
  status.renewals = () => keeper.renewals;
  status.reasserted = () => keeper.reasserted ?? 0;
  const resync = new Resync({
    reconciler: dp.reconciler,
    node: dp.node,
    lease: () => keeper.lease,
    synced: () => peers.synced,
    status,
    before: () => peers.setNode(facts()), // the node's addresses, at each full pass
  });
  resync.onApplied = () => keeper.datapathReady?.(); // kube: NetworkUnavailable=False only now
  // The links back, now that every part exists.
  peers.connect({ onOwn: onOwnLeaseChange(keeper, source.kind), onSynced: () => void resync.pass() });
  health.kick = () => peers.relist(); // another witness says the store answers: the watch tries now
  health.onBack = () => {
    logger.info("catching up with the {kind} store after the outage", { kind: source.kind });
    peers.relist();
    keeper.poke(); // renew now if a renewal came due during the outage
  };
  return { keeper, peers, resync, health };
}

/**
 * Under systemd (`$NOTIFY_SOCKET`): READY=1 as soon as `status` is ready — watched from the start, so
 * readiness alone decides (lease, subnet.env, rules, datapath) — and STOPPING=1 when `signal` aborts.
 * `done()` ends the watch (the agent stopped without having been ready).
 */
function notifySystemd(status: AgentStatus, signal: AbortSignal): { ready: Promise<void>; done(): void } {
  const systemd = new SystemdNotifier();
  signal.addEventListener("abort", () => systemd.stopping(), { once: true });
  const end = new AbortController();
  const line = () => {
    const peers = status.stats()?.peersProgrammed ?? 0;
    return `ready: lease ${
      status.lease ? leaseName(status.lease) : "?"
    } (${status.backendType}), ${peers} peers programmed`;
  };
  const ready = systemd.readyWhen(
    () => status.readiness().ready,
    line,
    AbortSignal.any([signal, end.signal]),
  );
  return { ready, done: () => end.abort() };
}

/**
 * Runs the agent on `source` until `opts.signal` aborts; closes `source` when it stops. Under systemd
 * (`$NOTIFY_SOCKET`) it sends READY=1 once ready and STOPPING=1 when told to stop.
 */
export async function runAgent(source: LeaseSource, opts: AgentOptions): Promise<void> {
  const { signal } = opts;
  const parts = agentParts(opts);
  using nl = Netlink.open();
  const status = new AgentStatus(source.kind);
  status.subnetFile = parts.node.subnetFile;
  const { server, policy } = await startServing(parts, status);
  const systemd = notifySystemd(status, signal);
  let stopReconciler = () => {};
  let closeBackend = (): Promise<void> => Promise.resolve();
  try {
    const waiting = (why: string | undefined) => status.waiting = why;
    const started = await startNode(source, nl, parts.start, signal, waiting);
    closeBackend = () => started.backend.close?.() ?? Promise.resolve();
    const dp = startDatapath(nl, started, parts.node, status);
    stopReconciler = () => dp.reconciler.stop();
    const { keeper, peers, resync, health } = buildLoops(source, nl, started, dp, parts, status);
    await Promise.all([
      systemd.ready,
      keeper.run(signal),
      peers.run(signal),
      resync.run(parts.resyncSeconds, signal), // and the node's rules, every --iptables-resync
      health.run(parts.probeMs, started.cfgFingerprint, signal),
      policy?.run(parts.resyncSeconds, signal, podNetsOf(started.lease)),
    ]);
  } finally {
    systemd.done();
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
