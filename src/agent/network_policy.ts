/**
 * The agent's network-policy part (`--network-policy`, kube mode): runs the
 * {@linkcode PolicyEnforcer} (informers → compile → one nftables transaction), checks its table every
 * resync, and publishes its metrics. Without the flag the agent removes weft's policy table, so turning
 * the feature off leaves no rule behind.
 *
 * It also answers the pod registrations CNI ADD sends over the agent's socket (through the
 * {@linkcode RegistrationSlot} it binds): the new pod is held closed until its rules are in.
 *
 * Metrics: `weft_policy_rules`, `weft_policy_table_rules`, `weft_policy_isolated_pods`,
 * `weft_policy_updates_total`, `weft_policy_unchanged_total`, `weft_policy_update_latency_seconds`
 * (histogram: a change seen in the API → its rules installed), `weft_policy_install_seconds`,
 * `weft_policy_compile_seconds`, `weft_policy_install_failures_total`, `weft_policy_failed_entries`,
 * `weft_policy_unenforceable`, `weft_policy_unenforceable_total`, `weft_policy_repaired_total`,
 * `weft_policy_duplicate_ips`, `weft_policy_duplicate_ips_total`, `weft_policy_registrations_total`,
 * `weft_policy_pending_pods`, `weft_policy_conntrack_flushed_total`, `weft_policy_bridge_netfilter`,
 * `weft_policy_api_up`, `weft_policy_synced`.
 *
 * @module
 */
import { sleep } from "../async.ts";
import { log } from "../log.ts";
import type { IPNet } from "../net/ip.ts";
import { PolicyEnforcer } from "../policy/enforcer.ts";
import type { ListWatchClient } from "../policy/informer.ts";
import { RegistrationError } from "../policy/registry.ts";
import {
  MASQUERADE_REFUSAL,
  type RegistrationReply,
  type RegistrationRequest,
  type RegistrationSlot,
} from "./pod_registrations.ts";
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
  /** Where CNI ADD's pod registrations arrive (the agent's CNI server sends them). */
  registrations?: RegistrationSlot;
}

/** Buckets of the update latency histogram, s. */
export const LATENCY_BUCKETS = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5];

/** The update latency histogram (cumulative buckets, sum, count; prometheus.ts writes it). */
export class LatencyHistogram extends Histogram {
  constructor() {
    super(LATENCY_BUCKETS);
  }
}

/** The families about pods and addresses: duplicates, registrations, conntrack, br_netfilter, failures. */
function podFamilies(m: MetricFamilies, e: PolicyEnforcer): void {
  m.gauge(
    "weft_policy_failed_entries",
    "Entries (a set, a chain, a pod address) nftables refused in the last install (retried)",
    () => e.stats.failedUnits,
  );
  m.gauge(
    "weft_policy_duplicate_ips",
    "Pod addresses two pods claim (the newest has it)",
    () => e.stats.duplicates,
  );
  m.counter(
    "weft_policy_duplicate_ips_total",
    "Distinct duplicate pod addresses seen",
    () => e.stats.duplicatesTotal,
  );
  m.counter("weft_policy_registrations_total", "Pods registered by CNI ADD", () => e.stats.registrations);
  m.gauge(
    "weft_policy_pending_pods",
    "Registered pod addresses held closed until their pod is known",
    () => e.stats.pending,
  );
  m.counter(
    "weft_policy_conntrack_flushed_total",
    "Connections flushed for pod addresses that left this node's table or changed pods",
    () => e.stats.conntrackFlushed,
  );
  m.gauge(
    "weft_policy_bridge_netfilter",
    "1 when br_netfilter passes bridged pod traffic through the policy table",
    () => e.stats.bridgeNetfilter,
  );
}

/**
 * The policy metrics as Prometheus text (format 0.0.4, laid out as the agent's others), read from `e`
 * at scrape time.
 */
export function policyMetricsText(e: PolicyEnforcer, latency: LatencyHistogram): string {
  const m = new MetricFamilies();
  m.gauge(
    "weft_policy_rules",
    "Allow rules in weft's policy table (each policy's once)",
    () => e.stats.rules,
  );
  m.gauge("weft_policy_table_rules", "Rules in weft's policy table, all chains", () => e.stats.tableRules);
  m.gauge(
    "weft_policy_isolated_pods",
    "Pods of this node isolated by some NetworkPolicy",
    () => e.stats.isolatedPods,
  );
  m.counter("weft_policy_updates_total", "Policy rule sets installed", () => e.stats.updates);
  m.counter(
    "weft_policy_unchanged_total",
    "Recompiles whose result was already installed (no nftables call)",
    () => e.stats.unchanged,
  );
  m.gauge("weft_policy_compile_seconds", "Duration of the last compile", () => e.stats.lastCompileSeconds);
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
  podFamilies(m, e);
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
    opts.registrations?.bind((r) => this.register(r));
  }

  /** Answers a pod registration (see {@linkcode RegistrationSlot}). */
  async register(r: RegistrationRequest): Promise<RegistrationReply> {
    if (r.masquerades) {
      logger.error("refused pod {pod}: {why}", { pod: `${r.namespace}/${r.name}`, why: MASQUERADE_REFUSAL });
      return { refused: MASQUERADE_REFUSAL };
    }
    try {
      const { state, ips } = await this.enforcer.register(r);
      return { policy: "on", state, ips };
    } catch (err) {
      if (err instanceof RegistrationError) return { error: err.message };
      throw err;
    }
  }

  /** `base` (the agent's metrics) followed by the policy metrics. */
  metrics(base: MetricsText): MetricsText {
    return {
      contentType: base.contentType,
      metrics: () => `${base.metrics()}\n${policyMetricsText(this.enforcer, this.latency)}`,
    };
  }

  /** True once the first rule set is installed, with br_netfilter on (readiness). */
  get enforced(): boolean {
    return this.enforcer.current !== undefined && this.enforcer.bridgeProblem === undefined;
  }

  /**
   * Runs the enforcer, and its table check every `resyncSeconds`, until `signal` aborts. `podNets`:
   * this node's pod subnets (the lease's).
   */
  async run(resyncSeconds: number, signal: AbortSignal, podNets: IPNet[] = []): Promise<void> {
    logger.info("network policy: enforcing NetworkPolicies for the pods of node {node}", {
      node: this.enforcer.nodeName,
    });
    const checks = (async () => {
      while (!signal.aborted) {
        await sleep(resyncSeconds * 1000, signal);
        if (!signal.aborted) await this.enforcer.resync();
      }
    })();
    await Promise.all([this.enforcer.run(signal, podNets), checks]);
    logger.info("network policy: stopped; the rules last installed stay in force");
  }
}

/**
 * The policy part for `opts` (readiness then waits for its first install). Without `--network-policy`
 * the agent does not import this module at all (src/policy/table_ref.ts removes a leftover table).
 */
export function networkPolicyFor(
  opts: NetworkPolicyOptions,
  status: { policyEnforced: () => boolean },
): NetworkPolicyPart {
  const part = new NetworkPolicyPart(opts);
  status.policyEnforced = () => part.enforced;
  return part;
}
