/**
 * The agent's network-policy loop (`weft agent --network-policy`): three informers (NetworkPolicies,
 * Pods, Namespaces) keep the cluster's state; a change only kicks a bounded-frequency runner
 * (runner.ts: at most one install per 100 ms, at least one per burst), whose single worker compiles the
 * rule set (compile.ts, pure), builds the table it asks for (nft_render.ts) and applies the difference
 * to what is installed (nft_table.ts, off the JS thread). An unchanged result costs no nft call.
 *
 * Closed from the first packet:
 *
 * - CNI ADD registers a new pod ({@linkcode PolicyEnforcer.register}) before it returns: its addresses
 *   are held closed at once (the `pending` set), the address's old connections are flushed from
 *   conntrack, and the next install (within 100 ms) takes the pod's rules in and releases it.
 * - Every address of this node's pod subnets that the table does not know is held closed while any
 *   policy exists (a pod the agent has not heard of might be selected). So a pod whose plugin could not
 *   tell the agent (an older plugin, no agent running) is closed too, until the API shows it.
 * - At start the previous run's table stays until the first full install, holding the pods it did not
 *   know; with no such table, one is installed that holds every pod of the node
 *   (`PolicyTable.adopt`). Nothing is installed from an incomplete view: the worker waits until
 *   policies, pods and namespaces have all been listed.
 *
 * Never frozen: an address two pods claim goes to the newer one (warned, counted); a transaction nft
 * refuses is retried unit by unit so only the offending entries fail; failures get one coalesced retry
 * with jittered back-off, never a chain of timers. A pod address that leaves this node's table or
 * changes hands is flushed from conntrack, so a reused address starts from its new pod's verdict.
 *
 * While the API is unreachable the informers keep their last state, so the rules last installed stay in
 * force; the table stays when the agent stops.
 *
 * @module
 */
import { conntrackFlushAddresses } from "../../ffi/mod.ts";
import { Backoff } from "../async.ts";
import { log } from "../log.ts";
import type { IPNet } from "../net/ip.ts";
import { checkBridgeNetfilter } from "./br_netfilter.ts";
import { compilePolicies } from "./compile.ts";
import { Informer, type KubeObject, type ListWatchClient } from "./informer.ts";
import { buildTableSpec, EMPTY_RULES, type TableSpec } from "./nft_render.ts";
import { type Enter, PolicyTable } from "./nft_table.ts";
import { type PodRegistrationRequest, PodRegistry } from "./registry.ts";
import type { DuplicateIP, PolicyProblem, RuleSet } from "./rule_set.ts";
import { BoundedRunner } from "./runner.ts";
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
  inNetns?: Enter;
  /** Called after each install with the time from the first change it contains to the install, s. */
  onApplied?(seconds: number): void;
  /** Called when a run (compile, then install) starts (tests check the runner's pace). */
  onRun?(): void;
  /** Informer back-off, ms (tests shorten it). */
  backoffMs?: [number, number];
  /** Back-off of the retry after a failed install: first and longest ceiling, ms (default 1000, 30000). */
  retryMs?: [number, number];
  /** The least time between two installs, ms (default 100). */
  minIntervalMs?: number;
  /** How long a registration waits for the install that takes the pod in, ms (default 2000). */
  registerWaitMs?: number;
  /** Flushes addresses' connections from conntrack (default: ctnetlink in `inNetns`'s namespace). */
  flushConntrack?: (ips: string[]) => Promise<number>;
}

/** Counters and gauges for metrics and status. */
export interface EnforcerStats {
  /** Rule sets installed (changes applied). */
  updates: number;
  /** Runs whose result equalled what was installed (no nft call). */
  unchanged: number;
  /** Installs nft refused, wholly or in part (retried). */
  failures: number;
  /** Units (a set, a chain, a pod address) the last install could not apply. */
  failedUnits: number;
  /** Times the table (or br_netfilter) was found altered and repaired. */
  repairs: number;
  /** Distinct unenforceable policy parts seen since start. */
  problemsSeen: number;
  /** Allow rules in force (one per policy rule, peer family and port; each policy's once). */
  rules: number;
  /** Rules in the whole table (policy chains, combination chains, base chains). */
  tableRules: number;
  /** Pods of this node that some policy isolates. */
  isolatedPods: number;
  /** Addresses two pods claim now (the newer pod has them). */
  duplicates: number;
  /** Distinct duplicate addresses seen since start. */
  duplicatesTotal: number;
  /** Pods registered by CNI ADD. */
  registrations: number;
  /** Registered addresses held because their pod is not known yet. */
  pending: number;
  /** Conntrack entries flushed for addresses that left or changed pods. */
  conntrackFlushed: number;
  /** 1 when br_netfilter's switches are on. */
  bridgeNetfilter: number;
  /** Duration of the last compile, s. */
  lastCompileSeconds: number;
  /** Duration of the last compile + install, s. */
  lastApplySeconds: number;
}

/** What a registration answers (the `register-pod` reply's `state`). */
export type RegistrationState =
  /** Held closed: its rules are not in yet (its pod is not known yet, or the agent is starting). */
  | "held"
  /** In the table with its rules: some policy isolates it. */
  | "enforced"
  /** In the table, no policy selects it: open. */
  | "open";

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
      creationTimestamp: p.metadata.creationTimestamp,
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
  /** Pods CNI ADD registered. */
  readonly registry = new PodRegistry();
  /** Counters. */
  readonly stats: EnforcerStats = {
    updates: 0,
    unchanged: 0,
    failures: 0,
    failedUnits: 0,
    repairs: 0,
    problemsSeen: 0,
    rules: 0,
    tableRules: 0,
    isolatedPods: 0,
    duplicates: 0,
    duplicatesTotal: 0,
    registrations: 0,
    pending: 0,
    conntrackFlushed: 0,
    bridgeNetfilter: 0,
    lastCompileSeconds: 0,
    lastApplySeconds: 0,
  };
  /** What the current rule set could not enforce as written. */
  problems: PolicyProblem[] = [];
  /** The rule set last installed (undefined before the first install). */
  current: RuleSet | undefined;
  /** What is wrong with br_netfilter, when something is. */
  bridgeProblem: string | undefined;

  readonly #table: PolicyTable;
  readonly #inNetns: Enter;
  readonly #runner: BoundedRunner;
  readonly #retry: Backoff;
  #podNets: IPNet[] = [];
  #dirtySince: number | undefined;
  #seenProblems = new Set<string>();
  #seenDuplicates = new Set<string>();
  #owners = new Map<string, string>(); // pod address of this node → pod, as last installed
  #flushWanted = new Map<string, (() => void)[]>(); // address → who waits for its flush
  #draining = false;
  #idle: (() => void)[] = [];

  /** @param client the API; @param opts see {@linkcode EnforcerOptions} */
  constructor(client: ListWatchClient, private readonly opts: EnforcerOptions) {
    this.#inNetns = opts.inNetns ?? (<T>(fn: () => T) => fn());
    this.#table = new PolicyTable({ enter: this.#inNetns, fallback: () => this.#fallback() });
    this.#runner = new BoundedRunner(() => this.#work(), { minIntervalMs: opts.minIntervalMs ?? 100 });
    this.#retry = new Backoff(...(opts.retryMs ?? [1000, 30_000]));
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

  /** The table (tests read what is installed). */
  get table(): PolicyTable {
    return this.#table;
  }

  /**
   * Runs until `signal` aborts (the table stays installed afterwards). `podNets`: this node's pod
   * subnets — their unknown addresses are held closed.
   */
  async run(signal: AbortSignal, podNets: IPNet[] = []): Promise<void> {
    this.#podNets = podNets;
    this.#checkBridge(false);
    const start = await this.#table.adopt();
    if (start === "installed") {
      logger.info("no policy table from a previous run: every pod is held until the first install");
    }
    signal.addEventListener("abort", () => this.#runner.stop(), { once: true });
    await Promise.all([this.policies.run(signal), this.pods.run(signal), this.namespaces.run(signal)]);
  }

  /** Marks the rule set dirty; the runner recompiles and installs it soon (coalescing bursts). */
  kick(): void {
    this.#dirtySince ??= performance.now();
    // Also before every kind is listed: the informer that completes the view kicks just before it
    // reports itself synced, and the run comes after.
    this.#runner.kick();
  }

  /** Resolves once no change is waiting to be installed (tests, benches). */
  idle(): Promise<void> {
    if (this.#dirtySince === undefined || !this.synced) return Promise.resolve();
    return new Promise((res) => this.#idle.push(res));
  }

  /**
   * A pod CNI ADD is setting up: holds its addresses closed, flushes their old connections, and waits
   * (up to `registerWaitMs`) for the install that takes it in; returns where it stands then.
   * Throws {@linkcode RegistrationError} for a malformed request.
   */
  async register(req: PodRegistrationRequest): Promise<{ state: RegistrationState; ips: string[] }> {
    const reg = this.registry.add(req, this.#podNets);
    this.stats.registrations++;
    // No policy at all (and a complete view): nothing can select it, nothing to hold.
    const free = this.synced && this.policies.store.size === 0;
    if (!free) await this.#table.hold(reg.ips);
    // An address that was a pod's (or may have been: before the first install) has its old
    // connections flushed; one nobody held has none that could pass (the hold dropped them).
    const used = reg.ips.filter((ip) => !this.current || this.#owners.has(ip));
    await Promise.all(used.map((ip) => this.#flush(ip)));
    const owner = reg.namespace && reg.name ? `${reg.namespace}/${reg.name}` : "(registered)";
    for (const ip of reg.ips) this.#owners.set(ip, owner); // flushed: the install need not again
    if (!this.synced) return { state: "held", ips: reg.ips };
    // The next run (within the runner's interval) takes it in; registrations of a burst share it.
    const installed = this.#runner.next();
    this.kick();
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      installed,
      new Promise((r) => timer = setTimeout(r, this.opts.registerWaitMs ?? 2000)),
    ]);
    clearTimeout(timer);
    return { state: this.#stateOf(reg.ips), ips: reg.ips };
  }

  /** Ends a container's registration (CNI DEL). */
  unregister(containerId: string): void {
    if (this.registry.remove(containerId)) this.kick();
  }

  #stateOf(ips: string[]): RegistrationState {
    const rs = this.current;
    if (!rs || ips.some((ip) => rs.unresolved.includes(ip))) return "held";
    if (!rs.local.some((p) => p.ips.some((ip) => ips.includes(ip)))) return "held";
    return rs.pods.some((p) => p.ips.some((ip) => ips.includes(ip))) ? "enforced" : "open";
  }

  /** Full check (each agent resync): repairs the table and br_netfilter if they were altered. */
  async resync(): Promise<"unchanged" | "repaired"> {
    if (this.#checkBridge(true)) this.stats.repairs++;
    let r: "unchanged" | "repaired";
    try {
      r = await this.#table.ensure();
    } catch (err) {
      logger.error("repairing the policy table failed: {error}", { error: (err as Error).message });
      return "unchanged";
    }
    if (r === "repaired") {
      this.stats.repairs++;
      logger.warn("the policy table was deleted or altered: re-installed");
    }
    if (this.#runner.retryPending || this.stats.failedUnits) this.kick();
    return r;
  }

  /** Checks br_netfilter (turning it on where it may); true when it had to turn something on again. */
  #checkBridge(again: boolean): boolean {
    const s = this.#inNetns(() => checkBridgeNetfilter(true));
    this.stats.bridgeNetfilter = s.ok ? 1 : 0;
    if (!s.ok && s.problem !== this.bridgeProblem) {
      logger.error("bridged traffic between pods of this node is not judged: {problem}", {
        problem: s.problem,
      });
    }
    this.bridgeProblem = s.ok ? undefined : s.problem;
    if (s.changed.length) {
      const msg = again
        ? "{keys} had been turned off: turned on again"
        : "turned on {keys} (bridged pod traffic must pass the policy table)";
      logger[again ? "warn" : "info"](msg, { keys: s.changed.join(", ") });
    }
    return again && s.changed.length > 0;
  }

  /** The table held before the first install, and when a whole table is refused: every unknown pod closed. */
  #fallback(): TableSpec {
    const pending = this.registry.values().flatMap((r) => r.ips);
    return buildTableSpec(EMPTY_RULES, {
      podNets: this.#podNets,
      pending,
      holdUnknown: true,
      logDrops: this.opts.logDrops ?? false,
    });
  }

  async #work(): Promise<void> {
    this.opts.onRun?.();
    if (!this.synced) return;
    const since = this.#dirtySince ?? performance.now();
    this.#dirtySince = undefined;
    const t0 = performance.now();
    this.registry.prune(this.pods.store);
    const rs = compilePolicies({
      policies: this.policies.store.values(),
      pods: this.pods.store.values(),
      namespaces: this.namespaces.store.values(),
      nodeName: this.opts.nodeName,
      registrations: this.registry.values(),
    });
    this.#report(rs.problems);
    this.#reportDuplicates(rs.duplicates);
    const spec = buildTableSpec(rs, { podNets: this.#podNets, logDrops: this.opts.logDrops ?? false });
    const t1 = performance.now();
    this.stats.lastCompileSeconds = (t1 - t0) / 1000;
    let result;
    try {
      result = await this.#table.apply(spec);
    } catch (err) {
      // Even the fallback table was refused: the previous table stays in force untouched.
      this.stats.failures++;
      logger.error("installing the policy rules failed: {error}; the previous rules stay in force", {
        error: (err as Error).message,
      });
      this.#dirtySince ??= since;
      this.#runner.retry(this.#retry.next());
      return;
    }
    const t2 = performance.now();
    this.stats.failedUnits = result.failed.length;
    if (result.failed.length) {
      this.stats.failures++;
      const ms = this.#retry.next();
      logger.error(
        "nftables refused {n} part(s) of the policy rules (the rest is in force; these are retried in {ms} ms): {parts}",
        {
          n: result.failed.length,
          ms,
          parts: result.failed.slice(0, 5).map((f) => `${f.unit}: ${f.error}`).join("; "),
        },
      );
      this.#runner.retry(ms);
    } else this.#retry.reset();
    this.current = rs;
    this.stats.lastApplySeconds = (t2 - t0) / 1000;
    this.stats.isolatedPods = rs.pods.length;
    this.stats.rules = allowRulesOf(spec);
    this.stats.tableRules = [...spec.chains.values()].reduce((n, c) => n + c.rules.length, 0);
    this.stats.pending = rs.unresolved.length;
    this.#flushChanged(rs);
    if (result.change === "installed") {
      this.stats.updates++;
      this.opts.onApplied?.((t2 - since) / 1000);
      logger.debug(
        "policy rules installed: {pods} isolated pods, {rules} allow rules, compile {c} ms, install {i} ms",
        {
          pods: rs.pods.length,
          rules: this.stats.rules,
          c: Math.round(t1 - t0),
          i: Math.round(t2 - t1),
        },
      );
    } else this.stats.unchanged++;
    if (this.#dirtySince === undefined) { for (const res of this.#idle.splice(0)) res(); }
  }

  /** Flushes the connections of every pod address of this node that left the table or changed pods. */
  #flushChanged(rs: RuleSet): void {
    const owners = new Map<string, string>();
    for (const p of rs.local) for (const ip of p.ips) owners.set(ip, p.pod);
    for (const [ip, pod] of this.#owners) {
      if (rs.unresolved.includes(ip)) owners.set(ip, pod); // held for the pod that registered it
      else if (owners.get(ip) !== pod) void this.#flush(ip);
    }
    this.#owners = owners;
  }

  /**
   * Flushes one address's connections; resolves once done. Flushes run one at a time, and the addresses
   * asked for meanwhile go together in the next (a rollout's deletions: one table walk for many).
   */
  #flush(ip: string): Promise<void> {
    return new Promise((res) => {
      const waiting = this.#flushWanted.get(ip) ?? [];
      waiting.push(res);
      this.#flushWanted.set(ip, waiting);
      if (!this.#draining) {
        this.#draining = true;
        void this.#drainFlushes();
      }
    });
  }

  async #drainFlushes(): Promise<void> {
    const flush = this.opts.flushConntrack ??
      ((ips: string[]) => conntrackFlushAddresses(ips, this.#inNetns));
    while (this.#flushWanted.size) {
      const batch = new Map(this.#flushWanted);
      this.#flushWanted.clear();
      try {
        this.stats.conntrackFlushed += await flush([...batch.keys()]);
      } catch (err) {
        logger.warn("flushing the connections of {ips} failed: {error}", {
          ips: [...batch.keys()].join(", "),
          error: (err as Error).message,
        });
      }
      for (const waiting of batch.values()) for (const res of waiting) res();
    }
    this.#draining = false; // in the same turn as the last check: nothing can be left behind
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

  #reportDuplicates(dups: DuplicateIP[]): void {
    this.stats.duplicates = dups.length;
    for (const d of dups) {
      const key = `${d.ip} ${d.winner} ${d.losers.join(",")}`;
      if (this.#seenDuplicates.has(key)) continue;
      this.#seenDuplicates.add(key);
      this.stats.duplicatesTotal++;
      logger.warn("address {ip} is claimed by {pods}: {winner}, the newest, keeps it", {
        ip: d.ip,
        pods: [d.winner, ...d.losers].join(", "),
        winner: d.winner,
      });
    }
  }
}

/** The allow rules of a table: the rules of its policy chains (each policy's once, whatever it selects). */
export function allowRulesOf(spec: TableSpec): number {
  let n = 0;
  for (const c of spec.chains.values()) if (c.level === 0) n += c.rules.length;
  return n;
}
