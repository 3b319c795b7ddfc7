/**
 * The full pass: node state (device, subnet.env, rules) and then every peer's entries, compared with
 * what the kernel holds; run once the first complete list of leases arrived and then every
 * `--resync-interval`. Nothing is pruned before that first list (an empty desired map would look like
 * "every peer is gone").
 *
 * @module
 */
import { releaseFreeNativeMemory } from "../../ffi/mod.ts";
import { sleep } from "../async.ts";
import type { Reconciler } from "../datapath/reconciler.ts";
import { log } from "../log.ts";
import type { Lease } from "../lease/lease.ts";
import type { NodeState } from "./node_state.ts";
import type { AgentStatus } from "./status.ts";

const logger = log("agent");

/** Runs full passes. */
export class Resync {
  /** Called after every pass that left the datapath applied (the keeper then tells the store). */
  onApplied: () => void = () => {};

  /**
   * @param reconciler the peers' entries
   * @param node the node's own state
   * @param lease the current own lease
   * @param synced whether the first complete list of leases arrived
   * @param status where "datapath applied" is reported
   * @param before run first in every pass (e.g. re-read the node's addresses for the lease rules)
   */
  constructor(
    private readonly reconciler: Reconciler,
    private readonly node: NodeState,
    private readonly lease: () => Lease,
    private readonly synced: () => boolean,
    private readonly status: AgentStatus,
    private readonly before: () => void = () => {},
  ) {}

  /** One pass, after the applies already scheduled; a no-op before the first complete list. */
  async pass(): Promise<void> {
    if (!this.synced()) return;
    this.before();
    await this.reconciler.settled();
    const change = this.node.ensure(this.lease());
    if (change === undefined) {
      this.reconciler.stats.errors++; // the device failed (logged): the next pass tries again
      return;
    }
    const ok = this.reconciler.fullPass(change);
    // The pass read the whole kernel through libnl: hand the native heap it freed back (ffi/malloc.ts).
    releaseFreeNativeMemory();
    if (ok && !this.status.datapathApplied) {
      this.status.datapathApplied = true;
      logger.info("datapath applied: {n} peers programmed", { n: this.reconciler.stats.peersProgrammed });
    }
    if (this.status.datapathApplied && this.status.subnetEnvWritten) this.onApplied();
  }

  /** A pass every `seconds` until `signal` aborts. */
  async run(seconds: number, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      await sleep(seconds * 1000, signal);
      if (!signal.aborted) await this.pass();
    }
  }
}
