/**
 * The agent's Prometheus metrics, written as Prometheus text (format 0.0.4) by hand.
 *
 * Hand-written rather than prom-client: the agent only exposes gauges and counters read from its own
 * state at scrape time, and importing prom-client cost every agent ~6 MB of RSS and ~100 ms of
 * start-up (bench/agent_scale.ts). The text is what prom-client wrote for the same metrics, byte for
 * byte (metrics_test.ts).
 *
 * @module
 */
import type { HostRulesState } from "../datapath/host_rules.ts";
import { emptyReconcileStats, type ReconcileStats } from "../datapath/reconciler.ts";
import type { ForwarderStats } from "../backend/backend.ts";
import type { RejectedLease } from "../lease/lease_filter.ts";
import type { LeaseRule } from "../lease/validate.ts";
import type { HttpServerStats } from "./http_server.ts";

/** At most this many rejected leases are listed one by one in `weft_lease_rejected` (all are counted). */
export const MAX_REJECTED_SERIES = 100;

/** Counters the agent itself keeps (outside the reconciler). */
export interface AgentCounters {
  /** Times weft's nftables table was found deleted or altered and re-installed. */
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
  /** Whether etcd answered last time. */
  etcdUp(): boolean;
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

/** Defines one metric whose value is read at scrape time. */
type Define = (name: string, help: string, read: () => number) => unknown;

/** The reconciler's counters and gauges. */
function reconcilerMetrics(gauge: Define, counter: Define, stats: () => ReconcileStats): void {
  gauge(
    "weft_peers_programmed",
    "Peers whose datapath entries are all in place",
    () => stats().peersProgrammed,
  );
  counter("weft_reconcile_passes_total", "Full reconcile passes", () => stats().passes);
  gauge(
    "weft_reconcile_duration_seconds",
    "Duration of the last full reconcile pass",
    () => stats().lastPassSeconds,
  );
  counter("weft_reconcile_errors_total", "Failed datapath operations", () => stats().errors);
  counter(
    "weft_drift_repaired_total",
    "Datapath entries repaired after being lost or altered",
    () => stats().driftRepaired,
  );
  counter("weft_pruned_total", "Stale datapath entries pruned", () => stats().pruned);
  counter(
    "weft_device_recreated_total",
    "Times the overlay device was recreated",
    () => stats().deviceRecreated,
  );
  gauge(
    "weft_peers_failing",
    "Peers whose last apply failed (retrying with back-off)",
    () => stats().peersFailing,
  );
}

/** A scrape target: Prometheus text of the metrics as they are now. */
export interface MetricsText {
  /** The Content-Type of {@linkcode MetricsText.metrics}'s text. */
  readonly contentType: string;
  /** The metrics, read now. */
  metrics(): string;
}

/** One sample: its labels (name → value, in the order written) and its value. */
type Sample = [Record<string, string>, number];

/** One metric: its header and how to read its samples at scrape time. */
interface Metric {
  name: string;
  help: string;
  type: "gauge" | "counter";
  samples: () => Sample[];
}

/** Prometheus's text for a sample value (as prom-client formats it). */
function sampleValue(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (!Number.isFinite(v)) return v < 0 ? "-Inf" : "+Inf";
  return String(v);
}

/** `{a="x",b="y"}` with values escaped for the text format, or `""` without labels. */
function labelText(labels: Record<string, string>): string {
  const pairs = Object.entries(labels).map(([k, v]) =>
    `${k}="${v.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"')}"`
  );
  return pairs.length ? `{${pairs.join(",")}}` : "";
}

/** The text of `list`, as prom-client lays it out (one block per metric, blank lines between). */
function render(list: Metric[]): string {
  return list.map((m) => {
    const lines = [`# HELP ${m.name} ${m.help}`, `# TYPE ${m.name} ${m.type}`];
    for (const [labels, v] of m.samples()) lines.push(`${m.name}${labelText(labels)} ${sampleValue(v)}`);
    return lines.join("\n") + "\n";
  }).join("\n");
}

/** The udp backend's packet loop: packets moved per direction, and dropped per reason. */
function forwarderMetrics(list: Metric[], view: AgentView): void {
  list.push({
    name: "weft_udp_packets_total",
    help: "Packets the udp backend moved (tun_to_udp: sent to a peer; udp_to_tun: delivered from a peer)",
    type: "counter",
    samples: () => {
      const s = view.forwarder();
      return s ? [[{ direction: "tun_to_udp" }, s.tunToUdp], [{ direction: "udp_to_tun" }, s.udpToTun]] : [];
    },
  });
  list.push({
    name: "weft_udp_dropped_total",
    help: "Packets the udp backend dropped: no_peer (no lease holds the destination), malformed, " +
      "ttl (expired), send_error",
    type: "counter",
    samples: () => {
      const s = view.forwarder();
      if (!s) return [];
      return [
        [{ reason: "no_peer" }, s.droppedNoPeer],
        [{ reason: "malformed" }, s.droppedMalformed],
        [{ reason: "ttl" }, s.droppedTtl],
        [{ reason: "send_error" }, s.sendErrors],
      ];
    },
  });
}

/** Builds the metrics, whose values are read from `view` at scrape time. */
export function agentMetrics(view: AgentView): MetricsText {
  const list: Metric[] = [];
  const define = (type: Metric["type"]): Define => (name, help, read) =>
    list.push({ name, help, type, samples: () => [[{}, read()]] });
  const gauge = define("gauge");
  const counter = define("counter");
  gauge("weft_leases_known", "Leases of other nodes known from etcd", () => view.leasesKnown());
  reconcilerMetrics(gauge, counter, () => view.stats() ?? NO_STATS);
  counter(
    "weft_rules_repaired_total",
    "Times the masquerade/forward rules (iptables chains or nftables table) were found deleted or altered and re-installed",
    () => view.counters().rulesRepaired,
  );
  counter(
    "weft_subnet_env_rewritten_total",
    "Times subnet.env was found missing or altered and rewritten",
    () => view.counters().subnetEnvRewritten,
  );
  counter(
    "weft_lease_reacquired_total",
    "Times the own lease was gone (deleted or expired) and acquired again",
    () => view.counters().leaseReacquired,
  );
  counter("weft_lease_renewals_total", "Lease renewals", () => view.renewals());
  gauge("weft_etcd_up", "1 when etcd answered the last request", () => (view.etcdUp() ? 1 : 0));
  gauge("weft_ready", "1 when the agent is ready", () => (view.ready() ? 1 : 0));
  gauge("weft_lease_expiry_timestamp_seconds", "When the own lease expires (unix seconds)", () => {
    const e = view.lease()?.expiresAt;
    return e ? e.getTime() / 1000 : 0;
  });
  // Memory as the process sees it: RSS is what an operator's limit applies to; the JS heap and the
  // external (ArrayBuffer, native) parts tell whether growth is weft's own state or the runtime's.
  gauge("process_resident_memory_bytes", "Resident memory size in bytes", () => Deno.memoryUsage().rss);
  gauge("weft_js_heap_used_bytes", "JavaScript heap in use", () => Deno.memoryUsage().heapUsed);
  gauge("weft_js_heap_total_bytes", "JavaScript heap reserved", () => Deno.memoryUsage().heapTotal);
  gauge(
    "weft_js_external_bytes",
    "Memory outside the JS heap held by JS objects",
    () => Deno.memoryUsage().external,
  );
  forwarderMetrics(list, view);
  httpMetrics(list, view);
  rejectedMetrics(list, view);
  hostRulesMetrics(list, view);
  list.push({
    name: "weft_lease_info",
    help: "The own lease",
    type: "gauge",
    samples: () => {
      const l = view.lease();
      return l ? [[{ subnet: l.subnet, public_ip: l.publicIP, backend: l.backend }, 1]] : [];
    },
  });
  return { contentType: "text/plain; version=0.0.4; charset=utf-8", metrics: () => render(list) };
}

/** Where the rules live, how often they were written, and what on the host drops pod traffic. */
function hostRulesMetrics(list: Metric[], view: AgentView): void {
  list.push({
    name: "weft_host_rules_passes_total",
    help: "Passes of the masquerade/forward rules (every --iptables-resync)",
    type: "counter",
    samples: () => {
      const s = view.hostRules?.();
      return s?.mode ? [[{ mode: s.mode }, s.passes]] : [];
    },
  });
  list.push({
    name: "weft_host_rules_writes_total",
    help: "Writes of the masquerade/forward rules (iptables-restore calls, nft transactions); 0 at rest",
    type: "counter",
    samples: () => {
      const s = view.hostRules?.();
      return s?.mode ? [[{ mode: s.mode }, s.writes]] : [];
    },
  });
  list.push({
    name: "weft_host_firewall_blocking",
    help: "nftables base chains on the forward hook that drop pod traffic (verdict: drops, may drop); " +
      "no rule of weft's can overrule them",
    type: "gauge",
    samples: () =>
      (view.hostRules?.()?.blockers ?? []).map((b): Sample => [
        { family: b.family, table: b.table, chain: b.chain, verdict: b.verdict },
        1,
      ]),
  });
}

/** The health server's own health: open connections, requests, what it dropped and why, its errors. */
function httpMetrics(list: Metric[], view: AgentView): void {
  list.push({
    name: "weft_http_connections_open",
    help: "Connections open to the health/metrics server",
    type: "gauge",
    samples: () => [[{}, view.http?.()?.open ?? 0]],
  });
  list.push({
    name: "weft_http_requests_total",
    help: "Requests answered by the health/metrics server",
    type: "counter",
    samples: () => [[{}, view.http?.()?.requests ?? 0]],
  });
  list.push({
    name: "weft_http_connections_dropped_total",
    help: "Connections the health/metrics server closed: limit, evicted, idle_timeout, header_timeout, " +
      "write_timeout",
    type: "counter",
    samples: () => {
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
  });
  list.push({
    name: "weft_http_errors_total",
    help: "Errors of the health/metrics server (none is fatal): accept (EMFILE …), io, bad_request, handler",
    type: "counter",
    samples: () => {
      const e = view.http?.()?.errors;
      if (!e) return [];
      return [
        [{ kind: "accept" }, e.accept],
        [{ kind: "io" }, e.io],
        [{ kind: "bad_request" }, e.badRequest],
        [{ kind: "handler" }, e.handler],
      ];
    },
  });
}

/** Rejected leases: a counter per rule, and the ones rejected now (key and rule, at most 100 series). */
function rejectedMetrics(list: Metric[], view: AgentView): void {
  list.push({
    name: "weft_lease_reasserted_total",
    help: "Times another value was found under the own key and the own lease written back",
    type: "counter",
    samples: () => [[{}, view.reasserted?.() ?? 0]],
  });
  list.push({
    name: "weft_routes_refused_total",
    help: "Routes refused because their destination holds a route weft does not own",
    type: "counter",
    samples: () => [[{}, view.routesRefused?.() ?? 0]],
  });
  list.push({
    name: "weft_leases_rejected_total",
    help: "Leases refused before anything was programmed, by the rule they broke",
    type: "counter",
    samples: () => [...view.rejected?.().total ?? []].map(([rule, n]): Sample => [{ reason: rule }, n]),
  });
  list.push({
    name: "weft_lease_rejected",
    help:
      `Leases rejected now (1 per key, the first ${MAX_REJECTED_SERIES} by key), with the rule they break`,
    type: "gauge",
    samples: () => {
      const series = new Map<string, Sample>();
      for (const r of (view.rejected?.().current ?? []).slice(0, MAX_REJECTED_SERIES)) {
        // A hostile key may be huge: the label keeps its first 200 characters (two keys cut to the same
        // label are one series, as a gauge set twice).
        const key = r.key.length > 200 ? `${r.key.slice(0, 200)}…` : r.key;
        series.set(`${key}\n${r.rule}`, [{ key, reason: r.rule }, 1]);
      }
      return [...series.values()];
    },
  });
}
