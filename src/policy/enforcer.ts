/**
 * The agent's network-policy loop (`weft agent --network-policy`): three informers (NetworkPolicies,
 * Pods, Namespaces) keep the cluster's state; any change marks the rule set dirty and one worker —
 * never the watch handlers — recompiles it (src/policy/compile.ts) and installs it in one transaction
 * (src/policy/nft_table.ts). Bursts of events coalesce into one install.
 *
 * Fail closed: nothing is installed before all three kinds have been listed once (an empty view would
 * open every pod), and while the API is unreachable the informers keep their last state, so the rules
 * last installed stay in force; on return, a re-list brings in what changed meanwhile. The table is
 * left in place when the agent stops, so pods stay protected across restarts; it is removed only when
 * the agent runs without `--network-policy`.
 *
 * What a policy asks that weft cannot enforce is logged once per problem and counted, and handled
 * fail-closed by the compiler without touching the other policies.
 *
 * @module
 */
import { log } from "../log.ts";
import { ensureBridgeNetfilter } from "./br_netfilter.ts";
import { compilePolicies } from "./compile.ts";
import { Informer, type KubeObject, type ListWatchClient } from "./informer.ts";
import { PolicyTable, type TableChange } from "./nft_table.ts";
import type { PolicyProblem, RuleSet } from "./rule_set.ts";
import type { Container, Namespace, NetworkPolicy, Pod } from "./types.ts";

const logger = log("policy");

/** The collections watched. */
export const POLICY_WATCH_PATHS = {
  policies: "/apis/networking.k8s.io/v1/networkpolicies",
  pods: "/api/v1/pods",
  namespaces: "/api/v1/namespaces",
} as const;

/** Options of {@linkcode PolicyEnforcer}. */
export interface EnforcerOptions {
  /** This node's name (its pods get rules). */
  nodeName: string;
  /** `--policy-log-drops`. */
  logDrops?: boolean;
  /** Runs a kernel operation in the right network namespace (default: the calling thread's). */
  inNetns?: <T>(fn: () => T) => T;
  /** Called after each install with the time from the first change it contains to the install, s. */
  onApplied?(seconds: number): void;
  /** Informer back-off, ms (tests shorten it). */
  backoffMs?: [number, number];
  /** Wait before retrying a failed install, ms (default 1000). */
  retryMs?: number;
}

/** Counters and gauges for metrics and status. */
export interface EnforcerStats {
  /** Rule sets installed. */
  updates: number;
  /** Installs nft rejected (retried). */
  failures: number;
  /** Times the table (or br_netfilter) was found altered and repaired. */
  repairs: number;
  /** Distinct unenforceable policy parts seen since start. */
  problemsSeen: number;
  /** Allow rules in force (one per policy rule, peer family and port). */
  rules: number;
  /** Pods of this node that some policy isolates. */
  isolatedPods: number;
  /** Duration of the last compile + install, s. */
  lastApplySeconds: number;
}

/** Keeps only what policy reads of a Pod (the store holds every pod of the cluster). */
export function trimPod(o: KubeObject): KubeObject {
  const p = o as Pod;
  const ports = (cs: Container[] | undefined) => cs?.map((c) => ({ name: c.name, ports: c.ports }));
  const pod: Pod = {
    metadata: {
      name: p.metadata.name,
      namespace: p.metadata.namespace,
      labels: p.metadata.labels,
      resourceVersion: p.metadata.resourceVersion,
    },
    spec: {
      nodeName: p.spec?.nodeName,
      hostNetwork: p.spec?.hostNetwork,
      containers: ports(p.spec?.containers),
      initContainers: ports(p.spec?.initContainers),
    },
    status: { phase: p.status?.phase, podIP: p.status?.podIP, podIPs: p.status?.podIPs },
  };
  return pod;
}

/** The policy loop of one node. */
export class PolicyEnforcer {
  /** NetworkPolicies. */
  readonly policies: Informer<NetworkPolicy>;
  /** Pods (every node's: peers may be anywhere). */
  readonly pods: Informer<Pod>;
  /** Namespaces. */
  readonly namespaces: Informer<Namespace>;
  /** Counters. */
  readonly stats: EnforcerStats = {
    updates: 0,
    failures: 0,
    repairs: 0,
    problemsSeen: 0,
    rules: 0,
    isolatedPods: 0,
    lastApplySeconds: 0,
  };
  /** What the current rule set could not enforce as written. */
  problems: PolicyProblem[] = [];
  /** The rule set last installed. */
  current: RuleSet | undefined;

  readonly #table: PolicyTable;
  readonly #inNetns: <T>(fn: () => T) => T;
  #dirtySince: number | undefined;
  #scheduled: ReturnType<typeof setTimeout> | undefined;
  #seenProblems = new Set<string>();
  #idle: (() => void)[] = [];

  /** @param client the API; @param opts see {@linkcode EnforcerOptions} */
  constructor(client: ListWatchClient, private readonly opts: EnforcerOptions) {
    this.#table = new PolicyTable({ logDrops: opts.logDrops ?? false });
    this.#inNetns = opts.inNetns ?? (<T>(fn: () => T) => fn());
    const common = (what: string) => ({
      onChange: () => this.kick(),
      onError: (err: unknown) =>
        logger.warn("{what}: {error}; the rules last installed stay in force", {
          what,
          error: err instanceof Error ? err.message : String(err),
        }),
      onRecover: () => logger.info("{what}: the API answers again", { what }),
      ...(opts.backoffMs ? { backoffMs: opts.backoffMs } : {}),
    });
    this.policies = new Informer(client, POLICY_WATCH_PATHS.policies, common("watching NetworkPolicies"));
    this.pods = new Informer(client, POLICY_WATCH_PATHS.pods, {
      ...common("watching Pods"),
      transform: trimPod,
    });
    this.namespaces = new Informer(client, POLICY_WATCH_PATHS.namespaces, common("watching Namespaces"));
  }

  /** This node's name. */
  get nodeName(): string {
    return this.opts.nodeName;
  }

  /** True once every kind has been listed. */
  get synced(): boolean {
    return this.policies.synced && this.pods.synced && this.namespaces.synced;
  }

  /** True while every informer's last call to the API succeeded. */
  get apiUp(): boolean {
    return this.policies.connected && this.pods.connected && this.namespaces.connected;
  }

  /** Runs the informers until `signal` aborts (the table stays installed afterwards). */
  async run(signal: AbortSignal): Promise<void> {
    const changed = this.#inNetns(() => ensureBridgeNetfilter());
    if (changed.length) {
      logger.info("turned on {keys} (bridged pod traffic must pass the policy table)", {
        keys: changed.join(", "),
      });
    }
    signal.addEventListener("abort", () => clearTimeout(this.#scheduled), { once: true });
    await Promise.all([this.policies.run(signal), this.pods.run(signal), this.namespaces.run(signal)]);
  }

  /** Marks the rule set dirty; the worker recompiles and installs it soon (coalescing bursts). */
  kick(): void {
    this.#dirtySince ??= performance.now();
    this.#scheduled ??= setTimeout(() => {
      this.#scheduled = undefined;
      this.#work();
    }, 0);
  }

  /** Resolves once no change is waiting to be installed (tests, benches). */
  idle(): Promise<void> {
    if (this.#dirtySince === undefined || !this.synced) return Promise.resolve();
    return new Promise((res) => this.#idle.push(res));
  }

  /** Full check (each agent resync): repairs the table and br_netfilter if they were altered. */
  resync(): TableChange {
    const changed = this.#inNetns(() => ensureBridgeNetfilter());
    if (changed.length) {
      this.stats.repairs++;
      logger.warn("{keys} had been turned off: turned on again", { keys: changed.join(", ") });
    }
    let r: TableChange;
    try {
      r = this.#inNetns(() => this.#table.ensure());
    } catch (err) {
      logger.error("repairing the policy table failed: {error}", { error: (err as Error).message });
      return "unchanged";
    }
    if (r === "repaired") {
      this.stats.repairs++;
      logger.warn("the policy table was deleted or altered: re-installed");
    }
    return r;
  }

  #work(): void {
    if (!this.synced || this.#dirtySince === undefined) return;
    const since = this.#dirtySince;
    this.#dirtySince = undefined;
    const t0 = performance.now();
    const rs = compilePolicies({
      policies: this.policies.store.values(),
      pods: this.pods.store.values(),
      namespaces: this.namespaces.store.values(),
      nodeName: this.opts.nodeName,
    });
    this.#report(rs.problems);
    let change: TableChange;
    try {
      change = this.#inNetns(() => this.#table.apply(rs));
    } catch (err) {
      // nft refused the whole script: the previous table stays in force; try again later.
      this.stats.failures++;
      logger.error("installing the policy rules failed: {error}; the previous rules stay in force", {
        error: (err as Error).message,
      });
      this.#dirtySince ??= since;
      setTimeout(() => this.kick(), this.opts.retryMs ?? 1000);
      return;
    }
    const t1 = performance.now();
    this.current = rs;
    this.stats.lastApplySeconds = (t1 - t0) / 1000;
    this.stats.isolatedPods = rs.pods.length;
    this.stats.rules = countRules(rs);
    if (change === "installed") {
      this.stats.updates++;
      this.opts.onApplied?.((t1 - since) / 1000);
      logger.debug("policy rules installed: {pods} isolated pods, {rules} allow rules, {ms} ms", {
        pods: rs.pods.length,
        rules: this.stats.rules,
        ms: Math.round(t1 - t0),
      });
    }
    if (this.#dirtySince === undefined) { for (const res of this.#idle.splice(0)) res(); }
  }

  #report(problems: PolicyProblem[]): void {
    this.problems = problems;
    for (const p of problems) {
      const key = `${p.policy}\n${p.path}\n${p.message}`;
      if (this.#seenProblems.has(key)) continue;
      this.#seenProblems.add(key);
      this.stats.problemsSeen++;
      logger.warn("NetworkPolicy {policy}: {path}: {message}", { ...p });
    }
  }
}

/** Allow rules of a rule set as the table has them (per peer family and port entry). */
export function countRules(rs: RuleSet): number {
  let n = 0;
  for (const pod of rs.pods) {
    for (const dir of [pod.ingress, pod.egress]) {
      for (const r of dir?.rules ?? []) {
        const fams = r.peers === "any" ? 1 : (r.peers.v4.length ? 1 : 0) + (r.peers.v6.length ? 1 : 0);
        const ports = r.ports === "any" ? 1 : r.ports.length;
        n += fams * ports + (r.destPorts.length ? 1 : 0);
      }
    }
  }
  return n;
}
