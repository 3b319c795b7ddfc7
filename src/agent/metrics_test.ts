import assert from "node:assert/strict";
import { WEFT_VERSION } from "../version.ts";
import { agentMetrics, type AgentView } from "./metrics.ts";

/** Every part of the view set, with awkward values: label text to escape, a 250-character key. */
const view = (full: boolean): AgentView => ({
  stats: () => ({
    passes: 7,
    readsSkipped: 4,
    driftRepaired: 2,
    pruned: 1,
    deviceRecreated: 0,
    errors: 3,
    lastPassSeconds: 0.125,
    peersProgrammed: 5000,
    peersFailing: 1,
  }),
  counters: () => ({ rulesRepaired: 1, subnetEnvRewritten: 2, leaseReacquired: 0 }),
  leasesKnown: () => 5001,
  lease: () =>
    full
      ? {
        subnet: "10.244.3.0/24",
        publicIP: '192.168.1."2\\',
        backend: "vxlan",
        expiresAt: new Date(1700000000500),
      }
      : undefined,
  storeUp: () => true,
  store: () => "etcd",
  backend: () => full ? "vxlan" : "",
  storeDownSince: () => full ? undefined : new Date(1700000000000),
  subnetEnvPresent: () => full,
  ready: () => false,
  hostRules: () =>
    full
      ? {
        mode: "iptables-nft",
        ok: true,
        error: "",
        repaired: 0,
        writes: 3,
        passes: 9,
        reads: 2,
        blockers: [{
          family: "inet",
          table: "firewalld",
          chain: "filter_FORWARD",
          verdict: "drops",
          where: "policy drop",
          probe: "10.244.3.2 → 10.244.0.2, cni0 → flannel.1",
        }],
      }
      : undefined,
  renewals: () => 4,
  forwarder: () =>
    full
      ? {
        tunToUdp: 10,
        udpToTun: 20,
        droppedNoPeer: 1,
        droppedMalformed: 0,
        droppedTtl: 2,
        sendErrors: 3,
        netUnreachableSent: 0,
        wakeups: 5,
      }
      : undefined,
  http: () =>
    full
      ? {
        open: 2,
        accepted: 9,
        requests: 8,
        dropped: { limit: 1, evicted: 0, idleTimeout: 2, headerTimeout: 0, writeTimeout: 1 },
        errors: { accept: 0, io: 1, badRequest: 2, handler: 0 },
      }
      : undefined,
  rejected: () => ({
    total: new Map(full ? [["subnet_outside_network", 3], ["public_ip_loopback", 1]] as const : []),
    current: full
      ? [
        { key: "10.9.0.0-24", rule: "subnet_outside_network", detail: "", since: new Date() },
        // Two long keys that are cut to the same label: one series, as prom-client's gauge made them.
        { key: "k".repeat(250), rule: "subnet_outside_network", detail: "", since: new Date() },
        { key: "k".repeat(250) + "x", rule: "subnet_outside_network", detail: "", since: new Date() },
        { key: 'a"b\\c\nd', rule: "public_ip_loopback", detail: "", since: new Date() },
      ]
      : [],
  }),
  reasserted: () => 6,
  routesRefused: () => 7,
});

const K200 = "k".repeat(200);

// What prom-client 15.1.3 wrote for the same view (captured before it was replaced), with the metrics
// renamed or added since (weft_store_up, weft_etcd_up's HELP); the process memory gauges vary, so their
// values are masked.
const PROM_CLIENT_FULL = `# HELP weft_build_info weft's version, backend and lease store (always 1)
# TYPE weft_build_info gauge
weft_build_info{version="${WEFT_VERSION}",backend="vxlan",store="etcd"} 1

# HELP weft_leases_known Leases of other nodes known from the lease store
# TYPE weft_leases_known gauge
weft_leases_known 5001

# HELP weft_peers_programmed Peers whose datapath entries are all in place
# TYPE weft_peers_programmed gauge
weft_peers_programmed 5000

# HELP weft_reconcile_passes_total Full reconcile passes
# TYPE weft_reconcile_passes_total counter
weft_reconcile_passes_total 7

# HELP weft_reconcile_reads_skipped_total Full passes that trusted the last kernel read (the kernel announced no change)
# TYPE weft_reconcile_reads_skipped_total counter
weft_reconcile_reads_skipped_total 4

# HELP weft_reconcile_duration_seconds Duration of the last full reconcile pass
# TYPE weft_reconcile_duration_seconds gauge
weft_reconcile_duration_seconds 0.125

# HELP weft_reconcile_errors_total Failed datapath operations
# TYPE weft_reconcile_errors_total counter
weft_reconcile_errors_total 3

# HELP weft_drift_repaired_total Datapath entries repaired after being lost or altered
# TYPE weft_drift_repaired_total counter
weft_drift_repaired_total 2

# HELP weft_pruned_total Stale datapath entries pruned
# TYPE weft_pruned_total counter
weft_pruned_total 1

# HELP weft_device_recreated_total Times the overlay device was recreated
# TYPE weft_device_recreated_total counter
weft_device_recreated_total 0

# HELP weft_peers_failing Peers whose last apply failed (retrying with back-off)
# TYPE weft_peers_failing gauge
weft_peers_failing 1

# HELP weft_rules_repaired_total Times the masquerade/forward rules (iptables chains or nftables table) were found deleted or altered and re-installed
# TYPE weft_rules_repaired_total counter
weft_rules_repaired_total 1

# HELP weft_subnet_env_rewritten_total Times subnet.env was found missing or altered and rewritten
# TYPE weft_subnet_env_rewritten_total counter
weft_subnet_env_rewritten_total 2

# HELP weft_lease_reacquired_total Times the own lease was gone (deleted or expired) and acquired again
# TYPE weft_lease_reacquired_total counter
weft_lease_reacquired_total 0

# HELP weft_lease_renewals_total Lease renewals
# TYPE weft_lease_renewals_total counter
weft_lease_renewals_total 4

# HELP weft_store_up 1 when the lease store (etcd, or the Kubernetes API in kube mode) answered the last request
# TYPE weft_store_up gauge
weft_store_up{store="etcd"} 1

# HELP weft_store_unreachable_since_timestamp_seconds Since when the lease store has not answered (unix seconds; 0 while it answers)
# TYPE weft_store_unreachable_since_timestamp_seconds gauge
weft_store_unreachable_since_timestamp_seconds 0

# HELP weft_etcd_up Deprecated alias of weft_store_up (the lease store, also in kube mode); will be removed
# TYPE weft_etcd_up gauge
weft_etcd_up 1

# HELP weft_ready 1 when the agent is ready
# TYPE weft_ready gauge
weft_ready 0

# HELP weft_subnet_env_present 1 when subnet.env is where the agent writes it (pods cannot start without it)
# TYPE weft_subnet_env_present gauge
weft_subnet_env_present 1

# HELP weft_lease_expiry_timestamp_seconds When the own lease expires (unix seconds)
# TYPE weft_lease_expiry_timestamp_seconds gauge
weft_lease_expiry_timestamp_seconds 1700000000.5

# HELP process_resident_memory_bytes Resident memory size in bytes
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes N

# HELP weft_js_heap_used_bytes JavaScript heap in use
# TYPE weft_js_heap_used_bytes gauge
weft_js_heap_used_bytes N

# HELP weft_js_heap_total_bytes JavaScript heap reserved
# TYPE weft_js_heap_total_bytes gauge
weft_js_heap_total_bytes N

# HELP weft_js_external_bytes Memory outside the JS heap held by JS objects
# TYPE weft_js_external_bytes gauge
weft_js_external_bytes N

# HELP weft_udp_packets_total Packets the udp backend moved (tun_to_udp: sent to a peer; udp_to_tun: delivered from a peer)
# TYPE weft_udp_packets_total counter
weft_udp_packets_total{direction="tun_to_udp"} 10
weft_udp_packets_total{direction="udp_to_tun"} 20

# HELP weft_udp_dropped_total Packets the udp backend dropped: no_peer (no lease holds the destination), malformed, ttl (expired), send_error
# TYPE weft_udp_dropped_total counter
weft_udp_dropped_total{reason="no_peer"} 1
weft_udp_dropped_total{reason="malformed"} 0
weft_udp_dropped_total{reason="ttl"} 2
weft_udp_dropped_total{reason="send_error"} 3

# HELP weft_http_connections_open Connections open to the health/metrics server
# TYPE weft_http_connections_open gauge
weft_http_connections_open 2

# HELP weft_http_requests_total Requests answered by the health/metrics server
# TYPE weft_http_requests_total counter
weft_http_requests_total 8

# HELP weft_http_connections_dropped_total Connections the health/metrics server closed: limit, evicted, idle_timeout, header_timeout, write_timeout
# TYPE weft_http_connections_dropped_total counter
weft_http_connections_dropped_total{reason="limit"} 1
weft_http_connections_dropped_total{reason="evicted"} 0
weft_http_connections_dropped_total{reason="idle_timeout"} 2
weft_http_connections_dropped_total{reason="header_timeout"} 0
weft_http_connections_dropped_total{reason="write_timeout"} 1

# HELP weft_http_errors_total Errors of the health/metrics server (none is fatal): accept (EMFILE …), io, bad_request, handler
# TYPE weft_http_errors_total counter
weft_http_errors_total{kind="accept"} 0
weft_http_errors_total{kind="io"} 1
weft_http_errors_total{kind="bad_request"} 2
weft_http_errors_total{kind="handler"} 0

# HELP weft_lease_reasserted_total Times another value was found under the own key and the own lease written back
# TYPE weft_lease_reasserted_total counter
weft_lease_reasserted_total 6

# HELP weft_routes_refused_total Routes refused because their destination holds a route weft does not own
# TYPE weft_routes_refused_total counter
weft_routes_refused_total 7

# HELP weft_leases_rejected_total Leases refused before anything was programmed, by the rule they broke
# TYPE weft_leases_rejected_total counter
weft_leases_rejected_total{reason="subnet_outside_network"} 3
weft_leases_rejected_total{reason="public_ip_loopback"} 1

# HELP weft_lease_rejected Leases rejected now (1 per key, the first 100 by key), with the rule they break
# TYPE weft_lease_rejected gauge
weft_lease_rejected{key="10.9.0.0-24",reason="subnet_outside_network"} 1
weft_lease_rejected{key="${K200}…",reason="subnet_outside_network"} 1
weft_lease_rejected{key="a\\"b\\\\c\\nd",reason="public_ip_loopback"} 1

# HELP weft_host_rules_passes_total Passes of the masquerade/forward rules (every --iptables-resync)
# TYPE weft_host_rules_passes_total counter
weft_host_rules_passes_total{mode="iptables-nft"} 9

# HELP weft_host_rules_reads_total Passes that read the rules (iptables-save, nft list); the others found nftables' ruleset generation unchanged
# TYPE weft_host_rules_reads_total counter
weft_host_rules_reads_total{mode="iptables-nft"} 2

# HELP weft_host_rules_writes_total Writes of the masquerade/forward rules (iptables-restore calls, nft transactions); 0 at rest
# TYPE weft_host_rules_writes_total counter
weft_host_rules_writes_total{mode="iptables-nft"} 3

# HELP weft_host_firewall_blocking nftables base chains on the forward hook that drop pod traffic (verdict: drops, may drop); no rule of weft's can overrule them
# TYPE weft_host_firewall_blocking gauge
weft_host_firewall_blocking{family="inet",table="firewalld",chain="filter_FORWARD",verdict="drops"} 1

# HELP weft_lease_info The own lease
# TYPE weft_lease_info gauge
weft_lease_info{subnet="10.244.3.0/24",public_ip="192.168.1.\\"2\\\\",backend="vxlan"} 1
`;
const PROM_CLIENT_EMPTY = `# HELP weft_build_info weft's version, backend and lease store (always 1)
# TYPE weft_build_info gauge
weft_build_info{version="${WEFT_VERSION}",backend="none",store="etcd"} 1

# HELP weft_leases_known Leases of other nodes known from the lease store
# TYPE weft_leases_known gauge
weft_leases_known 5001

# HELP weft_peers_programmed Peers whose datapath entries are all in place
# TYPE weft_peers_programmed gauge
weft_peers_programmed 5000

# HELP weft_reconcile_passes_total Full reconcile passes
# TYPE weft_reconcile_passes_total counter
weft_reconcile_passes_total 7

# HELP weft_reconcile_reads_skipped_total Full passes that trusted the last kernel read (the kernel announced no change)
# TYPE weft_reconcile_reads_skipped_total counter
weft_reconcile_reads_skipped_total 4

# HELP weft_reconcile_duration_seconds Duration of the last full reconcile pass
# TYPE weft_reconcile_duration_seconds gauge
weft_reconcile_duration_seconds 0.125

# HELP weft_reconcile_errors_total Failed datapath operations
# TYPE weft_reconcile_errors_total counter
weft_reconcile_errors_total 3

# HELP weft_drift_repaired_total Datapath entries repaired after being lost or altered
# TYPE weft_drift_repaired_total counter
weft_drift_repaired_total 2

# HELP weft_pruned_total Stale datapath entries pruned
# TYPE weft_pruned_total counter
weft_pruned_total 1

# HELP weft_device_recreated_total Times the overlay device was recreated
# TYPE weft_device_recreated_total counter
weft_device_recreated_total 0

# HELP weft_peers_failing Peers whose last apply failed (retrying with back-off)
# TYPE weft_peers_failing gauge
weft_peers_failing 1

# HELP weft_rules_repaired_total Times the masquerade/forward rules (iptables chains or nftables table) were found deleted or altered and re-installed
# TYPE weft_rules_repaired_total counter
weft_rules_repaired_total 1

# HELP weft_subnet_env_rewritten_total Times subnet.env was found missing or altered and rewritten
# TYPE weft_subnet_env_rewritten_total counter
weft_subnet_env_rewritten_total 2

# HELP weft_lease_reacquired_total Times the own lease was gone (deleted or expired) and acquired again
# TYPE weft_lease_reacquired_total counter
weft_lease_reacquired_total 0

# HELP weft_lease_renewals_total Lease renewals
# TYPE weft_lease_renewals_total counter
weft_lease_renewals_total 4

# HELP weft_store_up 1 when the lease store (etcd, or the Kubernetes API in kube mode) answered the last request
# TYPE weft_store_up gauge
weft_store_up{store="etcd"} 1

# HELP weft_store_unreachable_since_timestamp_seconds Since when the lease store has not answered (unix seconds; 0 while it answers)
# TYPE weft_store_unreachable_since_timestamp_seconds gauge
weft_store_unreachable_since_timestamp_seconds 1700000000

# HELP weft_etcd_up Deprecated alias of weft_store_up (the lease store, also in kube mode); will be removed
# TYPE weft_etcd_up gauge
weft_etcd_up 1

# HELP weft_ready 1 when the agent is ready
# TYPE weft_ready gauge
weft_ready 0

# HELP weft_subnet_env_present 1 when subnet.env is where the agent writes it (pods cannot start without it)
# TYPE weft_subnet_env_present gauge
weft_subnet_env_present 0

# HELP weft_lease_expiry_timestamp_seconds When the own lease expires (unix seconds)
# TYPE weft_lease_expiry_timestamp_seconds gauge
weft_lease_expiry_timestamp_seconds 0

# HELP process_resident_memory_bytes Resident memory size in bytes
# TYPE process_resident_memory_bytes gauge
process_resident_memory_bytes N

# HELP weft_js_heap_used_bytes JavaScript heap in use
# TYPE weft_js_heap_used_bytes gauge
weft_js_heap_used_bytes N

# HELP weft_js_heap_total_bytes JavaScript heap reserved
# TYPE weft_js_heap_total_bytes gauge
weft_js_heap_total_bytes N

# HELP weft_js_external_bytes Memory outside the JS heap held by JS objects
# TYPE weft_js_external_bytes gauge
weft_js_external_bytes N

# HELP weft_udp_packets_total Packets the udp backend moved (tun_to_udp: sent to a peer; udp_to_tun: delivered from a peer)
# TYPE weft_udp_packets_total counter

# HELP weft_udp_dropped_total Packets the udp backend dropped: no_peer (no lease holds the destination), malformed, ttl (expired), send_error
# TYPE weft_udp_dropped_total counter

# HELP weft_http_connections_open Connections open to the health/metrics server
# TYPE weft_http_connections_open gauge
weft_http_connections_open 0

# HELP weft_http_requests_total Requests answered by the health/metrics server
# TYPE weft_http_requests_total counter
weft_http_requests_total 0

# HELP weft_http_connections_dropped_total Connections the health/metrics server closed: limit, evicted, idle_timeout, header_timeout, write_timeout
# TYPE weft_http_connections_dropped_total counter

# HELP weft_http_errors_total Errors of the health/metrics server (none is fatal): accept (EMFILE …), io, bad_request, handler
# TYPE weft_http_errors_total counter

# HELP weft_lease_reasserted_total Times another value was found under the own key and the own lease written back
# TYPE weft_lease_reasserted_total counter
weft_lease_reasserted_total 6

# HELP weft_routes_refused_total Routes refused because their destination holds a route weft does not own
# TYPE weft_routes_refused_total counter
weft_routes_refused_total 7

# HELP weft_leases_rejected_total Leases refused before anything was programmed, by the rule they broke
# TYPE weft_leases_rejected_total counter

# HELP weft_lease_rejected Leases rejected now (1 per key, the first 100 by key), with the rule they break
# TYPE weft_lease_rejected gauge

# HELP weft_host_rules_passes_total Passes of the masquerade/forward rules (every --iptables-resync)
# TYPE weft_host_rules_passes_total counter

# HELP weft_host_rules_reads_total Passes that read the rules (iptables-save, nft list); the others found nftables' ruleset generation unchanged
# TYPE weft_host_rules_reads_total counter

# HELP weft_host_rules_writes_total Writes of the masquerade/forward rules (iptables-restore calls, nft transactions); 0 at rest
# TYPE weft_host_rules_writes_total counter

# HELP weft_host_firewall_blocking nftables base chains on the forward hook that drop pod traffic (verdict: drops, may drop); no rule of weft's can overrule them
# TYPE weft_host_firewall_blocking gauge

# HELP weft_lease_info The own lease
# TYPE weft_lease_info gauge
`;

const masked = (text: string) => text.replace(/^((?:process|weft_js)_\w+) \d+$/gm, "$1 N");

Deno.test("the metrics text is laid out as prom-client wrote it: labels, escaping, empty series", () => {
  const m = agentMetrics(view(true));
  assert.equal(m.contentType, "text/plain; version=0.0.4; charset=utf-8");
  assert.equal(masked(m.metrics()), PROM_CLIENT_FULL);
  assert.equal(masked(agentMetrics(view(false)).metrics()), PROM_CLIENT_EMPTY);
});

Deno.test("without a lease the lease info metric has its header and no sample, and the expiry reads 0", () => {
  const text = agentMetrics(view(false)).metrics();
  assert.ok(text.endsWith("# HELP weft_lease_info The own lease\n# TYPE weft_lease_info gauge\n"));
  assert.match(text, /^weft_lease_expiry_timestamp_seconds 0$/m);
});

Deno.test("memory gauges report this process's figures at scrape time", () => {
  const text = agentMetrics(view(false)).metrics();
  const rss = Number(text.match(/^process_resident_memory_bytes (\d+)$/m)![1]);
  assert.ok(rss > 10e6 && rss < 4e9, `RSS ${rss}`);
});

Deno.test("weft_store_up names the store; weft_etcd_up stays as its deprecated alias with the same value", () => {
  for (const [kind, up] of [["etcd", true], ["kube", false]] as const) {
    const text = agentMetrics({ ...view(false), store: () => kind, storeUp: () => up }).metrics();
    assert.match(text, new RegExp(`^weft_store_up\\{store="${kind}"\\} ${up ? 1 : 0}$`, "m"));
    assert.match(text, new RegExp(`^weft_etcd_up ${up ? 1 : 0}$`, "m"));
    assert.match(text, /^# HELP weft_etcd_up Deprecated alias of weft_store_up/m);
  }
});
