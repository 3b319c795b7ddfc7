/**
 * The agent's Prometheus metrics, read from its own state at scrape time and written by the one
 * exposition writer (prometheus.ts).
 *
 * Not prom-client: importing it cost every agent ~6 MB of RSS and ~100 ms of start-up
 * (bench/agent_scale.ts). The text is what prom-client wrote for the same metrics, byte for byte
 * (metrics_test.ts).
 *
 * @module
 */
import type { HostRulesState } from "../datapath/host_rules.ts";
import { emptyReconcileStats, type ReconcileStats } from "../datapath/reconciler.ts";
import type { ForwarderStats } from "../backend/backend.ts";
import type { RejectedLease } from "../lease/lease_filter.ts";
import type { LeaseRule } from "../lease/validate.ts";
import type { HttpServerStats } from "./http_server.ts";
import { WEFT_VERSION } from "../version.ts";
import { MetricFamilies, type MetricsText, type Sample } from "./prometheus.ts";

export type { MetricsText } from "./prometheus.ts";

/** At most this many rejected leases are listed one by one in `weft_lease_rejected` (all are counted). */
export const MAX_REJECTED_SERIES = 100;

/** Counters the agent itself keeps (outside the reconciler). */
export interface AgentCounters {
  /** Times the masquerade/forward rules were found deleted or altered and re-installed. */
  rulesRepaired: number;
  /** Times subnet.env was found missing or altered and rewritten. */
  subnetEnvRewritten: number;
  /** Times the own lease was gone (deleted, expired) and acquired again. */
  leaseReacquired: number;
}

const NO_STATS: ReconcileStats = emptyReconcileStats();

/** What the metrics read when scraped. */
export interface AgentView {
  /** Reconciler counters (undefined before the reconciler exists). */
  stats(): ReconcileStats | undefined;
  /** Agent counters. */
  counters(): AgentCounters;
  /** Leases known (other nodes'). */
  leasesKnown(): number;
  /** Current lease summary, if any. */
  lease(): { subnet: string; publicIP: string; backend: string; expiresAt?: Date } | undefined;
  /** Whether the lease store answered last time. */
  storeUp(): boolean;
  /** The lease store: `etcd` or `kube` (the Kubernetes API). */
  store(): string;
  /** Since when the store has been unreachable, or undefined while it answers. */
  storeDownSince?(): Date | undefined;
  /** The backend's type, once chosen (`""` before). */
  backend?(): string;
  /** Whether subnet.env is where the agent writes it. */
  subnetEnvPresent?(): boolean;
  /** Readiness. */
  ready(): boolean;
  /** Lease renewals done. */
  renewals(): number;
  /** The udp backend's packet loop counters, when it runs one. */
  forwarder(): ForwarderStats | undefined;
  /** The health server's counters, when it runs. */
  http?(): HttpServerStats | undefined;
  /** Rejected leases: reports per rule since start, and the ones rejected now. */
  rejected?(): { total: ReadonlyMap<LeaseRule, number>; current: RejectedLease[] };
  /** Times the own value was written back over somebody else's under the own key. */
  reasserted?(): number;
  /** Routes refused: their destination holds a route weft does not own. */
  routesRefused?(): number;
  /** The masquerade/forward rules' state. */
  hostRules?(): HostRulesState | undefined;
}

/** The reconciler's counters and gauges. */
function reconcilerMetrics(m: MetricFamilies, stats: () => ReconcileStats): void {
  m.gauge(
    "weft_peers_programmed",
    "Peers whose datapath entries are all in place",
    () => stats().peersProgrammed,
  );
  m.counter("weft_reconcile_passes_total", "Full reconcile passes", () => stats().passes);
  m.counter(
    "weft_reconcile_reads_skipped_total",
    "Full passes that trusted the last kernel read (the kernel announced no change)",
    () => stats().readsSkipped,
  );
  m.gauge(
    "weft_reconcile_duration_seconds",
    "Duration of the last full reconcile pass",
    () => stats().lastPassSeconds,
  );
  m.counter("weft_reconcile_errors_total", "Failed datapath operations", () => stats().errors);
  m.counter(
    "weft_drift_repaired_total",
    "Datapath entries repaired after being lost or altered",
    () => stats().driftRepaired,
  );
  m.counter("weft_pruned_total", "Stale datapath entries pruned", () => stats().pruned);
  m.counter(
    "weft_device_recreated_total",
    "Times the overlay device was recreated",
    () => stats().deviceRecreated,
  );
  m.gauge(
    "weft_peers_failing",
    "Peers whose last apply failed (retrying with back-off)",
    () => stats().peersFailing,
  );
}

/**
 * Whether the lease store answers, named for any store (`store="etcd"` or `"kube"`), and the old
 * etcd-only name as a deprecated alias (it reported the API server in kube mode too).
 */
function storeMetrics(m: MetricFamilies, view: AgentView): void {
  m.series(
    "gauge",
    "weft_store_up",
    "1 when the lease store (etcd, or the Kubernetes API in kube mode) answered the last request",
    () => [[{ store: view.store() }, view.storeUp() ? 1 : 0]],
  );
  m.gauge(
    "weft_store_unreachable_since_timestamp_seconds",
    "Since when the lease store has not answered (unix seconds; 0 while it answers)",
    () => (view.storeDownSince?.()?.getTime() ?? 0) / 1000,
  );
  m.gauge(
    "weft_etcd_up",
    "Deprecated alias of weft_store_up (the lease store, also in kube mode); will be removed",
    () => (view.storeUp() ? 1 : 0),
  );
}

/** The udp backend's packet loop: packets moved per direction, and dropped per reason. */
function forwarderMetrics(m: MetricFamilies, view: AgentView): void {
  m.series(
    "counter",
    "weft_udp_packets_total",
    "Packets the udp backend moved (tun_to_udp: sent to a peer; udp_to_tun: delivered from a peer)",
    () => {
      const s = view.forwarder();
      return s ? [[{ direction: "tun_to_udp" }, s.tunToUdp], [{ direction: "udp_to_tun" }, s.udpToTun]] : [];
    },
  );
  m.series(
    "counter",
    "weft_udp_dropped_total",
    "Packets the udp backend dropped: no_peer (no lease holds the destination), malformed, " +
      "ttl (expired), send_error",
    () => {
      const s = view.forwarder();
      if (!s) return [];
      return [
        [{ reason: "no_peer" }, s.droppedNoPeer],
        [{ reason: "malformed" }, s.droppedMalformed],
        [{ reason: "ttl" }, s.droppedTtl],
        [{ reason: "send_error" }, s.sendErrors],
      ];
    },
  );
}

/** Builds the metrics, whose values are read from `view` at scrape time. */
export function agentMetrics(view: AgentView): MetricsText {
  const m = new MetricFamilies();
  m.series("gauge", "weft_build_info", "weft's version, backend and lease store (always 1)", () => [
    [{ version: WEFT_VERSION, backend: view.backend?.() || "none", store: view.store() }, 1],
  ]);
  m.gauge("weft_leases_known", "Leases of other nodes known from the lease store", () => view.leasesKnown());
  reconcilerMetrics(m, () => view.stats() ?? NO_STATS);
  m.counter(
    "weft_rules_repaired_total",
    "Times the masquerade/forward rules (iptables chains or nftables table) were found deleted or altered and re-installed",
    () => view.counters().rulesRepaired,
  );
  m.counter(
    "weft_subnet_env_rewritten_total",
    "Times subnet.env was found missing or altered and rewritten",
    () => view.counters().subnetEnvRewritten,
  );
  m.counter(
    "weft_lease_reacquired_total",
    "Times the own lease was gone (deleted or expired) and acquired again",
    () => view.counters().leaseReacquired,
  );
  m.counter("weft_lease_renewals_total", "Lease renewals", () => view.renewals());
  storeMetrics(m, view);
  m.gauge("weft_ready", "1 when the agent is ready", () => (view.ready() ? 1 : 0));
  m.gauge(
    "weft_subnet_env_present",
    "1 when subnet.env is where the agent writes it (pods cannot start without it)",
    () => (view.subnetEnvPresent?.() ? 1 : 0),
  );
  m.gauge("weft_lease_expiry_timestamp_seconds", "When the own lease expires (unix seconds)", () => {
    const e = view.lease()?.expiresAt;
    return e ? e.getTime() / 1000 : 0;
  });
  // Memory as the process sees it: RSS is what an operator's limit applies to; the JS heap and the
  // external (ArrayBuffer, native) parts tell whether growth is weft's own state or the runtime's.
  m.gauge("process_resident_memory_bytes", "Resident memory size in bytes", () => Deno.memoryUsage().rss);
  m.gauge("weft_js_heap_used_bytes", "JavaScript heap in use", () => Deno.memoryUsage().heapUsed);
  m.gauge("weft_js_heap_total_bytes", "JavaScript heap reserved", () => Deno.memoryUsage().heapTotal);
  m.gauge(
    "weft_js_external_bytes",
    "Memory outside the JS heap held by JS objects",
    () => Deno.memoryUsage().external,
  );
  forwarderMetrics(m, view);
  httpMetrics(m, view);
  rejectedMetrics(m, view);
  hostRulesMetrics(m, view);
  m.series("gauge", "weft_lease_info", "The own lease", () => {
    const l = view.lease();
    return l ? [[{ subnet: l.subnet, public_ip: l.publicIP, backend: l.backend }, 1]] : [];
  });
  return m.target();
}

/** Where the rules live, how often they were written, and what on the host drops pod traffic. */
function hostRulesMetrics(m: MetricFamilies, view: AgentView): void {
  const byMode = (v: (s: HostRulesState) => number) => (): Sample[] => {
    const s = view.hostRules?.();
    return s?.mode ? [[{ mode: s.mode }, v(s)]] : [];
  };
  m.series(
    "counter",
    "weft_host_rules_passes_total",
    "Passes of the masquerade/forward rules (every --iptables-resync)",
    byMode((s) => s.passes),
  );
  m.series(
    "counter",
    "weft_host_rules_reads_total",
    "Passes that read the rules (iptables-save, nft list); the others found nftables' ruleset generation unchanged",
    byMode((s) => s.reads),
  );
  m.series(
    "counter",
    "weft_host_rules_writes_total",
    "Writes of the masquerade/forward rules (iptables-restore calls, nft transactions); 0 at rest",
    byMode((s) => s.writes),
  );
  m.series(
    "gauge",
    "weft_host_firewall_blocking",
    "nftables base chains on the forward hook that drop pod traffic (verdict: drops, may drop); " +
      "no rule of weft's can overrule them",
    () =>
      (view.hostRules?.()?.blockers ?? []).map((b): Sample => [
        { family: b.family, table: b.table, chain: b.chain, verdict: b.verdict },
        1,
      ]),
  );
}

/** The health server's own health: open connections, requests, what it dropped and why, its errors. */
function httpMetrics(m: MetricFamilies, view: AgentView): void {
  m.gauge(
    "weft_http_connections_open",
    "Connections open to the health/metrics server",
    () => view.http?.()?.open ?? 0,
  );
  m.counter(
    "weft_http_requests_total",
    "Requests answered by the health/metrics server",
    () => view.http?.()?.requests ?? 0,
  );
  m.series(
    "counter",
    "weft_http_connections_dropped_total",
    "Connections the health/metrics server closed: limit, evicted, idle_timeout, header_timeout, " +
      "write_timeout",
    () => {
      const d = view.http?.()?.dropped;
      if (!d) return [];
      return [
        [{ reason: "limit" }, d.limit],
        [{ reason: "evicted" }, d.evicted],
        [{ reason: "idle_timeout" }, d.idleTimeout],
        [{ reason: "header_timeout" }, d.headerTimeout],
        [{ reason: "write_timeout" }, d.writeTimeout],
      ];
    },
  );
  m.series(
    "counter",
    "weft_http_errors_total",
    "Errors of the health/metrics server (none is fatal): accept (EMFILE …), io, bad_request, handler",
    () => {
      const e = view.http?.()?.errors;
      if (!e) return [];
      return [
        [{ kind: "accept" }, e.accept],
        [{ kind: "io" }, e.io],
        [{ kind: "bad_request" }, e.badRequest],
        [{ kind: "handler" }, e.handler],
      ];
    },
  );
}

/** Rejected leases: a counter per rule, and the ones rejected now (key and rule, at most 100 series). */
function rejectedMetrics(m: MetricFamilies, view: AgentView): void {
  m.counter(
    "weft_lease_reasserted_total",
    "Times another value was found under the own key and the own lease written back",
    () => view.reasserted?.() ?? 0,
  );
  m.counter(
    "weft_routes_refused_total",
    "Routes refused because their destination holds a route weft does not own",
    () => view.routesRefused?.() ?? 0,
  );
  m.series(
    "counter",
    "weft_leases_rejected_total",
    "Leases refused before anything was programmed, by the rule they broke",
    () => [...view.rejected?.().total ?? []].map(([rule, n]): Sample => [{ reason: rule }, n]),
  );
  m.series(
    "gauge",
    "weft_lease_rejected",
    `Leases rejected now (1 per key, the first ${MAX_REJECTED_SERIES} by key), with the rule they break`,
    () => {
      const series = new Map<string, Sample>();
      for (const r of (view.rejected?.().current ?? []).slice(0, MAX_REJECTED_SERIES)) {
        // A hostile key may be huge: the label keeps its first 200 characters (two keys cut to the same
        // label are one series, as a gauge set twice).
        const key = r.key.length > 200 ? `${r.key.slice(0, 200)}…` : r.key;
        series.set(`${key}\n${r.rule}`, [{ key, reason: r.rule }, 1]);
      }
      return [...series.values()];
    },
  );
}
