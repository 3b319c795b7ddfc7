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

/**
 * One full collection, with compaction and the freed pages handed back (V8's "last resort" flavour),
 * when start-up is over: the first list's text and objects are garbage now, and V8 would otherwise keep
 * their pages until its memory reducer runs ~30 s later (at 5000 Nodes ~20 MB for that long; ~50 ms
 * once). Only with `--expose-gc`, which weft's V8 flags include (src/self_command.ts).
 */
function collectStartGarbage(): void {
  const gc = (globalThis as { gc?: (opts: Record<string, string>) => void }).gc;
  gc?.({ type: "major", execution: "sync", flavor: "last-resort" });
}

/** What a full pass works on. */
export interface ResyncParts {
  /** The peers' entries. */
  reconciler: Reconciler;
  /** The node's own state. */
  node: NodeState;
  /** The current own lease. */
  lease: () => Lease;
  /** Whether the first complete list of leases arrived. */
  synced: () => boolean;
  /** Where "datapath applied" is reported. */
  status: AgentStatus;
  /** Run first in every pass (e.g. re-read the node's addresses for the lease rules). */
  before?: () => void;
}

/** Runs full passes. */
export class Resync {
  readonly #p: ResyncParts;
  /** Called after every pass that left the datapath applied (the keeper then tells the store). */
  onApplied: () => void = () => {};

  /** @param parts what a pass works on */
  constructor(parts: ResyncParts) {
    this.#p = parts;
  }

  /** One pass, after the applies already scheduled; a no-op before the first complete list. */
  async pass(): Promise<void> {
    const { reconciler, node, lease, synced, status, before } = this.#p;
    if (!synced()) return;
    before?.();
    // Peers queued until now (at start: the whole first list) are applied by this pass, from its one
    // read of the kernel; whatever it leaves is applied as usual once it is over.
    reconciler.hold();
    let ok: boolean;
    try {
      await reconciler.settled();
      const change = node.ensure(lease());
      if (change === undefined) {
        reconciler.stats.errors++; // the device failed (logged): the next pass tries again
        return;
      }
      ok = reconciler.fullPass(change);
    } finally {
      reconciler.release();
    }
    // The pass read the whole kernel through libnl: hand the native heap it freed back (ffi/malloc.ts).
    releaseFreeNativeMemory();
    if (ok && !status.datapathApplied) {
      status.datapathApplied = true;
      logger.info("datapath applied: {n} peers programmed", { n: reconciler.stats.peersProgrammed });
      collectStartGarbage();
    }
    if (status.datapathApplied && status.subnetEnvWritten) this.onApplied();
  }

  /**
   * A pass every `seconds` until `signal` aborts; meanwhile the node state's own periodic pass (its
   * masquerade/forward rules, every `--iptables-resync`).
   */
  async run(seconds: number, signal: AbortSignal): Promise<void> {
    const passes = async () => {
      while (!signal.aborted) {
        await sleep(seconds * 1000, signal);
        if (!signal.aborted) await this.pass();
      }
    };
    await Promise.all([passes(), this.#p.node.run(signal)]);
  }
}
