/**
 * Whether the lease store answers, for the metric, the logs, readiness and recovery, and whether the
 * network config changed.
 *
 * Two kinds of store: one whose client reconnects silently (etcd) is probed every few seconds — a cheap
 * round trip that also reads the config; one whose watch reports its own health (Kubernetes: the stream
 * open, events and bookmarks arriving, or a watch that cannot be re-established) is never probed — 5000
 * nodes probing every 5 s would be 1000 requests/s for nothing — and its config is compared from local
 * state alone (`configFingerprint`: the net-conf.json file). When the store comes back, `onBack` catches
 * up at once. A store that answers but refuses the agent (revoked credentials, RBAC) is recorded with
 * the cause, which /readyz reports.
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
   * @param status where `storeUp` and `storeRefused` are reported
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

  /** Records that the store refuses the agent (`why`: what to fix), or accepts it again (undefined). */
  refused(why: string | undefined): void {
    if (why === this.status.storeRefused) return;
    const was = this.status.storeRefused;
    this.status.storeRefused = why;
    if (why) logger.error("{why}", { why });
    else if (was) logger.info("{kind} accepts the agent's credentials again", { kind: this.source.kind });
  }

  /**
   * Until `signal` aborts, every `periodMs`: probes the store when it has a probe, else reads the config
   * fingerprint locally; `config` is the fingerprint at start.
   */
  async run(periodMs: number, config: string, signal: AbortSignal): Promise<void> {
    let warnedConfig = false;
    const probe = this.source.probe?.bind(this.source);
    while (!signal.aborted) {
      await sleep(periodMs, signal);
      if (signal.aborted) break;
      let now: string;
      try {
        now = probe
          ? await withTimeout(probe(), 3000, this.source.kind)
          : this.source.configFingerprint?.() ?? config;
        if (probe) this.set(true);
      } catch (err) {
        this.set(false, (err as Error).message);
        continue;
      }
      if (now !== config && !warnedConfig) {
        warnedConfig = true;
        logger.warn("the network config changed: restart the agent to use it");
      }
    }
  }
}
