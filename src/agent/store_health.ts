/**
 * Whether the lease store answers, for the metric, the logs and recovery: the store's client reconnects
 * by itself and would stay silent through an outage, so a probe runs every few seconds. When the store
 * comes back, `onBack` re-lists and renews at once. Also notices a changed network config.
 *
 * @module
 */
import { sleep, withTimeout } from "../async.ts";
import { log } from "../log.ts";
import type { LeaseSource } from "../lease/source.ts";
import type { AgentStatus } from "./status.ts";

const logger = log("agent");

/** Tracks the store's reachability. */
export class StoreHealth {
  /** Called when the store answers again after an outage (set once the parts it wakes exist). */
  onBack: () => void = () => {};

  /**
   * @param source the lease store
   * @param status where `storeUp` is reported
   */
  constructor(
    private readonly source: LeaseSource,
    private readonly status: AgentStatus,
  ) {}

  /** Records a probe's or a watch's verdict; logs and acts on changes only. */
  set(up: boolean, why?: string): void {
    if (up === this.status.storeUp) return;
    this.status.storeUp = up;
    if (up) {
      logger.info("{kind} is reachable again", { kind: this.source.kind });
      this.onBack();
    } else {
      logger.warn("{kind} is unreachable ({why}); the datapath stays as it is", {
        kind: this.source.kind,
        why: why ?? "?",
      });
    }
  }

  /** Probes every `periodMs` until `signal` aborts; `config` is the config fingerprint at start. */
  async run(periodMs: number, config: string, signal: AbortSignal): Promise<void> {
    let warnedConfig = false;
    while (!signal.aborted) {
      await sleep(periodMs, signal);
      if (signal.aborted) break;
      try {
        const now = await withTimeout(this.source.probe(), 3000, this.source.kind);
        this.set(true);
        if (now !== config && !warnedConfig) {
          warnedConfig = true;
          logger.warn("the network config changed: restart the agent to use it");
        }
      } catch (err) {
        this.set(false, (err as Error).message);
      }
    }
  }
}
