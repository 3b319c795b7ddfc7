/**
 * Installing compiled rule sets straight into a node namespace's kernel, as the agent does minus the
 * API: {@linkcode NodeTable} (one node's table) and {@linkcode DirectDriver} (the matrix's driver that
 * compiles the modelled cluster per node in the test and installs each node's table).
 *
 * @module
 */
import { withNetns } from "../../ffi/mod.ts";
import type { IPNet } from "../../src/net/ip.ts";
import { compilePolicies } from "../../src/policy/compile.ts";
import { buildTableSpec, type Counters, EMPTY_RULES } from "../../src/policy/nft_render.ts";
import { type ApplyResult, PolicyTable } from "../../src/policy/nft_table.ts";
import type { RuleSet } from "../../src/policy/rule_set.ts";
import { NODE_NAMES } from "./netpol_cases.ts";
import type { NetpolMatrix, PolicyDriver } from "./netpol_matrix.ts";
import type { ModelCluster } from "./netpol_model.ts";

/** weft's policy table in one node namespace. */
export class NodeTable {
  /** The table. */
  readonly table: PolicyTable;

  /**
   * @param netns the node's namespace
   * @param podNets the node's pod subnets
   * @param opts `logDrops` as `--policy-log-drops`
   */
  constructor(readonly netns: string, readonly podNets: IPNet[], readonly opts: { logDrops?: boolean } = {}) {
    this.table = new PolicyTable({
      enter: (f) => withNetns(netns, f),
      fallback: () => buildTableSpec(EMPTY_RULES, { podNets, holdUnknown: true }),
    });
  }

  /** Installs the table `rs` asks for; throws when any part was refused. */
  async apply(rs: RuleSet): Promise<ApplyResult> {
    const r = await this.table.apply(
      buildTableSpec(rs, { podNets: this.podNets, logDrops: this.opts.logDrops ?? false }),
    );
    if (r.failed.length) throw new Error(`refused: ${JSON.stringify(r.failed)}`);
    return r;
  }

  /** The live counters. */
  counters(): Promise<Counters> {
    return this.table.counters();
  }
}

/** Compiles in the test and installs each node's table directly (what the agent does, minus the API). */
export class DirectDriver implements PolicyDriver {
  #tables: NodeTable[] | undefined;

  /** @param opts `logDrops` as `--policy-log-drops` */
  constructor(readonly opts: { logDrops?: boolean } = {}) {}

  /** Node `i`'s table. */
  table(m: NetpolMatrix, i: number): NodeTable {
    this.#tables ??= m.topo.nodes.map((n, j) => new NodeTable(n.netns, [m.envs[j]!.subnet!], this.opts));
    return this.#tables[i]!;
  }

  /** {@linkcode PolicyDriver.sync}: compile per node, install. */
  async sync(cluster: ModelCluster, m: NetpolMatrix): Promise<void> {
    for (const i of m.topo.nodes.keys()) {
      const rs = compilePolicies({
        policies: cluster.policies.values(),
        pods: cluster.podObjects(),
        namespaces: cluster.namespaceObjects(),
        nodeName: NODE_NAMES[i]!,
      });
      if (rs.problems.length) throw new Error(`problems: ${JSON.stringify(rs.problems)}`);
      await this.table(m, i).apply(rs);
    }
  }

  /** Forgets what it installed (another writer changed the tables): the next sync replaces them whole. */
  reset(): void {
    this.#tables = undefined;
  }

  /** Node `node`'s live counters. */
  counters(m: NetpolMatrix, node: number): Promise<Counters> {
    return this.table(m, node).counters();
  }
}
