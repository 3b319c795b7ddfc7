/**
 * The agent's network-policy part (`--network-policy`, kube mode): runs the
 * {@linkcode PolicyEnforcer} (informers → compile → one nftables transaction), checks its table every
 * resync, and publishes its metrics. Without the flag the agent removes weft's policy table, so turning
 * the feature off leaves no rule behind.
 *
 * Metrics: `weft_policy_rules`, `weft_policy_isolated_pods`, `weft_policy_updates_total`,
 * `weft_policy_update_latency_seconds` (histogram: a change seen in the API → its rules installed),
 * `weft_policy_install_seconds`, `weft_policy_install_failures_total`, `weft_policy_unenforceable`,
 * `weft_policy_unenforceable_total`, `weft_policy_repaired_total`, `weft_policy_api_up`,
 * `weft_policy_synced`.
 *
 * @module
 */
import { sleep } from "../async.ts";
import { log } from "../log.ts";
import { PolicyEnforcer } from "../policy/enforcer.ts";
import type { ListWatchClient } from "../policy/informer.ts";
import { listPolicyTable, removePolicyTable } from "../policy/nft_table.ts";
import { Histogram, MetricFamilies, type MetricsText } from "./prometheus.ts";

const logger = log("agent");

/** What `--network-policy` needs. */
export interface NetworkPolicyOptions {
  /** The Kubernetes API (kube mode's client). */
  client: ListWatchClient;
  /** This node's name. */
  nodeName: string;
  /** `--policy-log-drops`. */
  logDrops: boolean;
}

/** Buckets of the update latency histogram, s. */
export const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/** The update latency histogram (cumulative buckets, sum, count; prometheus.ts writes it). */
export class LatencyHistogram extends Histogram {
  constructor() {
    super(LATENCY_BUCKETS);
  }
}

/**
 * The policy metrics as Prometheus text (format 0.0.4, laid out as the agent's others), read from `e`
 * at scrape time.
 */
export function policyMetricsText(e: PolicyEnforcer, latency: LatencyHistogram): string {
  const m = new MetricFamilies();
  m.gauge("weft_policy_rules", "Allow rules in weft's policy table", () => e.stats.rules);
  m.gauge(
    "weft_policy_isolated_pods",
    "Pods of this node isolated by some NetworkPolicy",
    () => e.stats.isolatedPods,
  );
  m.counter("weft_policy_updates_total", "Policy rule sets installed", () => e.stats.updates);
  m.gauge(
    "weft_policy_install_seconds",
    "Duration of the last compile and install",
    () => e.stats.lastApplySeconds,
  );
  m.counter(
    "weft_policy_install_failures_total",
    "Rule sets nftables refused (the previous rules stayed in force)",
    () => e.stats.failures,
  );
  m.gauge(
    "weft_policy_unenforceable",
    "Parts of NetworkPolicies weft cannot enforce as written (they allow nothing)",
    () => e.problems.length,
  );
  m.counter(
    "weft_policy_unenforceable_total",
    "Distinct unenforceable NetworkPolicy parts seen",
    () => e.stats.problemsSeen,
  );
  m.counter(
    "weft_policy_repaired_total",
    "Times the policy table or br_netfilter was found altered and repaired",
    () => e.stats.repairs,
  );
  m.gauge(
    "weft_policy_api_up",
    "1 when the last list/watch of every policy input succeeded",
    () => e.apiUp ? 1 : 0,
  );
  m.gauge(
    "weft_policy_synced",
    "1 once policies, pods and namespaces have been listed",
    () => e.synced ? 1 : 0,
  );
  m.histogram(
    "weft_policy_update_latency_seconds",
    "From a change seen in the API to its rules installed in the kernel",
    latency,
  );
  return m.text();
}

/** The running part. */
export class NetworkPolicyPart {
  /** The enforcer. */
  readonly enforcer: PolicyEnforcer;

  /** Update latencies (change seen → installed). */
  readonly latency = new LatencyHistogram();

  /** @param opts the flag's needs */
  constructor(opts: NetworkPolicyOptions) {
    this.enforcer = new PolicyEnforcer(opts.client, {
      nodeName: opts.nodeName,
      logDrops: opts.logDrops,
      onApplied: (s) => this.latency.observe(s),
    });
  }

  /** `base` (the agent's metrics) followed by the policy metrics. */
  metrics(base: MetricsText): MetricsText {
    return {
      contentType: base.contentType,
      metrics: () => `${base.metrics()}\n${policyMetricsText(this.enforcer, this.latency)}`,
    };
  }

  /** True once the first rule set is installed (readiness). */
  get enforced(): boolean {
    return this.enforcer.current !== undefined;
  }

  /** Runs the enforcer, and its table check every `resyncSeconds`, until `signal` aborts. */
  async run(resyncSeconds: number, signal: AbortSignal): Promise<void> {
    logger.info("network policy: enforcing NetworkPolicies for the pods of node {node}", {
      node: this.enforcer.nodeName,
    });
    const checks = (async () => {
      while (!signal.aborted) {
        await sleep(resyncSeconds * 1000, signal);
        if (!signal.aborted) this.enforcer.resync();
      }
    })();
    await Promise.all([this.enforcer.run(signal), checks]);
    logger.info("network policy: stopped; the rules last installed stay in force");
  }
}

/**
 * The policy part for `opts` (readiness then waits for its first install), or, without
 * `--network-policy`, none — and weft's policy table is removed if an earlier run left one.
 */
export function networkPolicyFor(
  opts: NetworkPolicyOptions | undefined,
  status: { policyEnforced: () => boolean },
): NetworkPolicyPart | undefined {
  if (!opts) {
    removeNetworkPolicyTable();
    return undefined;
  }
  const part = new NetworkPolicyPart(opts);
  status.policyEnforced = () => part.enforced;
  return part;
}

/** Without `--network-policy`: removes weft's policy table if an earlier run left one. */
export function removeNetworkPolicyTable(): void {
  try {
    if (listPolicyTable() === undefined) return;
    removePolicyTable();
    logger.info("network policy is off: removed the table inet weft-policy");
  } catch (err) {
    logger.warn("removing the policy table failed: {error}", { error: (err as Error).message });
  }
}
