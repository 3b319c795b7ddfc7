/**
 * The network-policy conformance matrix on a real datapath: two nodes in namespaces running real
 * `weft agent`s (etcd leases, vxlan or host-gw between the nodes), a `cni0` bridge on each, the
 * catalog's pods (tests/helpers/netpol_cases.ts) as pod namespaces on those bridges, each running a
 * prober that serves TCP and UDP on 80 and 81. {@linkcode NetpolMatrix.runCase} plays a case's steps
 * through a {@linkcode PolicyDriver} (whatever puts the policies into the nodes' kernels), probes the
 * whole from→to table after each step, in parallel with short timeouts, and returns the table diffs.
 *
 * @module
 */
import { netnsDelete, withNetns } from "../../ffi/mod.ts";
import { runIn } from "../../src/lab/lab.ts";
import type { SubnetEnv } from "../../src/config/subnet_env.ts";
import { addIP, formatIP } from "../../src/net/ip.ts";
import { ensureBridgeNetfilter } from "../../src/policy/br_netfilter.ts";
import { addPodBridge, type AgentProcess, gatewayOf, startAgent, waitReady, waitSubnetEnv } from "./agent.ts";
import { putNetworkConfig, startEtcd } from "./etcd.ts";
import { type NetpolCase, NODE_NAMES } from "./netpol_cases.ts";
import { ModelCluster } from "./netpol_model.ts";
import { Prober } from "./netpol_prober.ts";
import { compareReach, type Reachability, reachDiff, type Target, TARGETS } from "./netpol_reach.ts";
import { createTopology, type Topology } from "./topology.ts";

/** Puts a modelled cluster's policies into the nodes' kernels. */
export interface PolicyDriver {
  /** Makes every node enforce `cluster` as it is now; resolves once enforced. */
  sync(cluster: ModelCluster, matrix: NetpolMatrix): Promise<void>;
}

/** A pod of the matrix. */
export interface MatrixPod {
  /** `ns/name`. */
  key: string;
  /** Its namespace. */
  netns: string;
  /** Its address. */
  ip: string;
  /** Its node's index. */
  node: number;
  /** Its server/prober. */
  prober: Prober;
}

/** Where the agents take their leases from: starts node i's agent; stops whatever it runs. */
export interface ControlPlane {
  /** Starts the agent of node `i` with extra flags. */
  startAgent(i: number, args: string[]): AgentProcess;
  /** Stops the store (after the agents). */
  close(): Promise<void>;
}

/** Makes a control plane for a topology (its store in the underlay namespace). */
export type ControlPlaneFactory = (
  topo: Topology,
  backend: "vxlan" | "host-gw",
  dir: string,
) => Promise<ControlPlane>;

/** etcd in the underlay namespace, agents in etcd mode (the default). */
export const etcdControlPlane: ControlPlaneFactory = async (topo, backend, dir) => {
  const etcd = await startEtcd({ netns: topo.underlay, host: topo.underlayIP });
  try {
    await putNetworkConfig(etcd.endpoint, { Network: "10.244.0.0/16", Backend: { Type: backend } }, {
      netns: topo.underlay,
    });
  } catch (err) {
    await etcd[Symbol.asyncDispose]();
    throw err;
  }
  return {
    startAgent: (i, args) => startAgent(topo.nodes[i]!, { etcd: etcd.endpoint, dir, args }),
    close: async () => await etcd[Symbol.asyncDispose](),
  };
};

/** Options of {@linkcode NetpolMatrix.create}. */
export interface MatrixOptions {
  /** Backend between the nodes. */
  backend: "vxlan" | "host-gw";
  /** Pods to create at once (default: the catalog's base pods). */
  pods: { key: string; node: number }[];
  /** Extra `weft agent` flags. */
  agentArgs?: string[];
  /** The lease store (default: etcd). */
  controlPlane?: ControlPlaneFactory;
}

const PORTS = [80, 81];
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The two-node cluster with its pods. */
export class NetpolMatrix implements AsyncDisposable {
  /** Pods by `ns/name`. */
  readonly pods = new Map<string, MatrixPod>();
  #nextHost: number[];

  private constructor(
    readonly topo: Topology,
    readonly control: ControlPlane,
    readonly agents: AgentProcess[],
    readonly envs: SubnetEnv[],
    readonly dir: string,
  ) {
    this.#nextHost = envs.map(() => 10);
  }

  /** Builds the nodes, the datapath and the pods. */
  static async create(opts: MatrixOptions): Promise<NetpolMatrix> {
    const topo = await createTopology({ nodes: NODE_NAMES.length });
    let control: ControlPlane | undefined;
    const agents: AgentProcess[] = [];
    const dir = await Deno.makeTempDir({ prefix: "weft-netpol-" });
    try {
      control = await (opts.controlPlane ?? etcdControlPlane)(topo, opts.backend, dir);
      for (const i of topo.nodes.keys()) agents.push(control.startAgent(i, opts.agentArgs ?? []));
      const envs = await Promise.all(agents.map((a) => waitSubnetEnv(a, 60_000)));
      await Promise.all(agents.map((a) => waitReady(a, 60_000)));
      topo.nodes.forEach((n, i) => {
        addPodBridge(n.netns, envs[i]!);
        withNetns(n.netns, () => ensureBridgeNetfilter());
      });
      const m = new NetpolMatrix(topo, control, agents, envs, dir);
      await Promise.all(opts.pods.map((p) => m.ensurePod(p.key, p.node)));
      return m;
    } catch (err) {
      await Promise.all(agents.map((a) => a.stop("SIGKILL")));
      await control?.close();
      await topo.cleanup();
      throw err;
    }
  }

  /** Creates pod `key` on node `node` (with its prober) unless it exists; returns it. */
  async ensurePod(key: string, node: number): Promise<MatrixPod> {
    const have = this.pods.get(key);
    if (have) return have;
    const env = this.envs[node]!;
    const ip = formatIP(addIP(env.subnet!.ip, this.#nextHost[node]!++));
    const pod = await this.topo.addPod(this.topo.nodes[node]!, {
      name: key.replace("/", "-"),
      cidr: `${ip}/${env.subnet!.prefix}`,
      gateway: gatewayOf(env),
      bridge: "cni0",
      ...(env.mtu ? { mtu: env.mtu } : {}),
    });
    // A blocked TCP connect gives up soon instead of retrying for two minutes.
    this.topo.sysctl(pod.netns, "net.ipv4.tcp_syn_retries", "1");
    const prober = await Prober.start(pod.netns, key, PORTS);
    const mp: MatrixPod = { key, netns: pod.netns, ip, node, prober };
    this.pods.set(key, mp);
    return mp;
  }

  /**
   * Replaces pod `oldKey` by a new pod `newKey` on the same node with the same address — what IPAM does
   * when it hands a freed address out again: the old pod's namespace (and veth) goes, the new one comes.
   * The node forgets the old pod's MAC (a new veth has a new one), as it would after a while.
   */
  async replacePod(oldKey: string, newKey: string): Promise<MatrixPod> {
    const old = this.pods.get(oldKey);
    if (!old) throw new Error(`no pod ${oldKey}`);
    await old.prober.close();
    netnsDelete(old.netns);
    this.pods.delete(oldKey);
    const env = this.envs[old.node]!;
    const pod = await this.topo.addPod(this.topo.nodes[old.node]!, {
      name: newKey.replace("/", "-"),
      cidr: `${old.ip}/${env.subnet!.prefix}`,
      gateway: gatewayOf(env),
      bridge: "cni0",
      ...(env.mtu ? { mtu: env.mtu } : {}),
    });
    this.topo.sysctl(pod.netns, "net.ipv4.tcp_syn_retries", "1");
    await runIn(this.topo.nodes[old.node]!.netns, ["ip", "neigh", "flush", "to", old.ip]);
    const mp: MatrixPod = {
      key: newKey,
      netns: pod.netns,
      ip: old.ip,
      node: old.node,
      prober: await Prober.start(pod.netns, newKey, PORTS),
    };
    this.pods.set(newKey, mp);
    return mp;
  }

  /** Probers running in node namespaces, by `node-<i>` (see {@linkcode ensureNodeProber}). */
  readonly nodes = new Map<string, MatrixPod>();

  /**
   * Starts a prober in node `i`'s own namespace (serving TCP and UDP on 80 and 81 there), reachable at
   * `ip` (default: its underlay address); probes name it `node-<i>`.
   */
  async ensureNodeProber(i: number, ip = this.topo.nodes[i]!.ip): Promise<MatrixPod> {
    const key = `node-${i}`;
    const have = this.nodes.get(key);
    if (have) return have;
    const netns = this.topo.nodes[i]!.netns;
    this.topo.sysctl(netns, "net.ipv4.tcp_syn_retries", "1");
    const n: MatrixPod = { key, netns, ip, node: i, prober: await Prober.start(netns, key, PORTS) };
    this.nodes.set(key, n);
    return n;
  }

  /**
   * A model of the cluster on these pods' addresses: the base pods that exist here (pods a case adds
   * later are created on demand).
   */
  newCluster(): ModelCluster {
    const c = new ModelCluster((p) => {
      const have = this.pods.get(`${p.ns}/${p.name}`);
      if (!have) throw new Error(`pod ${p.ns}/${p.name} must be created with ensurePod() first`);
      return have.ip;
    }, [...this.pods.keys()]);
    // The API must say where each pod really runs (an agent holds a pod its node is not told of).
    for (const [k, p] of c.pods) p.node = this.pods.get(k)?.node ?? p.node;
    return c;
  }

  /** One probe: true when the right pod answered. `address`: where to send it (default: `to`'s own). */
  async probeOnce(
    from: string,
    to: string,
    t: Target,
    timeoutMs: number,
    address?: string,
  ): Promise<boolean | "wrong"> {
    const src = this.pods.get(from) ?? this.nodes.get(from), dst = this.pods.get(to) ?? this.nodes.get(to);
    if (!src || !dst) throw new Error(`no pod or node ${src ? to : from}`);
    const reply = await src.prober.probe(address ?? dst.ip, t, timeoutMs);
    if (reply === undefined) return false;
    return reply === `${to} ${t.proto}/${t.port}` ? true : "wrong";
  }

  /**
   * Probes the whole table (every pair, every target) at once; a pair expected to connect that did not
   * is probed again (twice at most, with a longer timeout) so that a loaded machine's slow answer is not
   * taken for a block. A connection that succeeds is never retried: it is proof.
   */
  async probeTable(
    expected: Reachability,
    targets: Target[] = TARGETS,
    via?: (to: string) => string,
  ): Promise<Map<string, boolean | "wrong">> {
    const key = (f: string, t: string, tg: Target) => `${f}>${t}>${tg.proto}/${tg.port}`;
    const results = new Map<string, boolean | "wrong">();
    const jobs: Promise<void>[] = [];
    const probe = (f: string, to: string, tg: Target, ms: number) =>
      // Through a Service, a pod reaching itself would need hairpin NAT: loopback is taken as given.
      via && f === to ? Promise.resolve(true) : this.probeOnce(f, to, tg, ms, via?.(to));
    for (const tg of targets) {
      for (const f of expected.pods) {
        for (const to of expected.pods) {
          jobs.push(probe(f, to, tg, 1000).then((r) => void results.set(key(f, to, tg), r)));
        }
      }
    }
    await Promise.all(jobs);
    for (let attempt = 0; attempt < 2; attempt++) {
      const again: Promise<void>[] = [];
      for (const tg of targets) {
        for (const f of expected.pods) {
          for (const to of expected.pods) {
            if (expected.get(f, to, tg) && results.get(key(f, to, tg)) === false) {
              again.push(probe(f, to, tg, 3000).then((r) => void results.set(key(f, to, tg), r)));
            }
          }
        }
      }
      if (again.length === 0) break;
      await Promise.all(again);
    }
    return results;
  }

  /**
   * Runs one catalog case through `driver`; returns a description of every step whose table differs
   * from the expected one (empty: the case passed). Starts from the base cluster without policies.
   * `via`: probe each pod at this address instead of its own (its Service IP).
   */
  async runCase(
    kase: NetpolCase,
    driver: PolicyDriver,
    targets: Target[] = TARGETS,
    via?: (to: string) => string,
  ): Promise<string[]> {
    const failures: string[] = [];
    const cluster = this.newCluster();
    await driver.sync(cluster, this);
    let previous: Reachability | undefined;
    for (const step of kase.steps({ ip: (p) => cluster.ip(p), network: "10.244.0.0/16" })) {
      for (const m of step.apply) {
        if ("addPod" in m) await this.ensurePod(m.addPod, m.node);
        cluster.apply(m);
      }
      const expected = step.expect(cluster.podKeys());
      let watcher: Promise<string[]> | undefined;
      const stop = { now: false };
      if (kase.whileTrafficFlows && previous) watcher = this.#watchStable(previous, expected, targets, stop);
      await driver.sync(cluster, this);
      if (watcher) {
        await sleep(300);
        stop.now = true;
        const bad = await watcher;
        if (bad.length) failures.push(`step "${step.title}": during the change:\n  ${bad.join("\n  ")}`);
      }
      const results = await this.probeTable(expected, targets, via);
      const observed = (f: string, t: string, tg: Target) =>
        results.get(`${f}>${t}>${tg.proto}/${tg.port}`) === true;
      const wrong = [...results].filter(([, v]) => v === "wrong").map(([k]) => k);
      if (wrong.length) failures.push(`step "${step.title}": answered by the wrong pod: ${wrong.join(", ")}`);
      if (compareReach(expected, observed, targets).length) {
        failures.push(`step "${step.title}":\n${reachDiff(expected, observed, targets)}`);
      }
      previous = expected;
    }
    return failures;
  }

  /**
   * While a change is being enforced, keeps probing pairs whose expected result is the same before and
   * after it: any other result means the kernel held a state that was neither the old nor the new rule
   * set (a half-applied table). Returns the violations.
   */
  async #watchStable(
    before: Reachability,
    after: Reachability,
    targets: Target[],
    stop: { now: boolean },
  ): Promise<string[]> {
    const stable: [string, string, Target, boolean][] = [];
    for (const tg of targets) {
      for (const f of before.pods) {
        for (const to of before.pods) {
          if (f === to || !after.pods.includes(f) || !after.pods.includes(to)) continue;
          const v = before.get(f, to, tg);
          if (v === after.get(f, to, tg)) stable.push([f, to, tg, v]);
        }
      }
    }
    // A spread sample: both verdicts, both protocols, same- and cross-node pairs.
    const sample = [
      ...stable.filter((s) => s[3]).filter((_, i) => i % 7 === 0).slice(0, 8),
      ...stable.filter((s) => !s[3]).filter((_, i) => i % 5 === 0).slice(0, 8),
    ];
    const bad: string[] = [];
    let probes = 0;
    await Promise.all(sample.map(async ([f, to, tg, want]) => {
      while (!stop.now) {
        const r = await this.probeOnce(f, to, tg, want ? 3000 : 500);
        probes++;
        if ((r === true) !== want) bad.push(`${f} -> ${to} ${tg.proto}/${tg.port}: ${r}, expected ${want}`);
      }
    }));
    if (probes < sample.length) bad.push(`only ${probes} probes ran`);
    return bad;
  }

  /** Stops the probers and agents, etcd, and removes every namespace. */
  async close(): Promise<void> {
    await Promise.all([...this.pods.values(), ...this.nodes.values()].map((p) => p.prober.close()));
    await Promise.all(this.agents.map((a) => a.stop("SIGKILL")));
    await this.control.close();
    await this.topo.cleanup();
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }

  /** Same as close(). */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}
