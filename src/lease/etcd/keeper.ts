/**
 * {@linkcode LeaseKeeper}: keeps the node's lease in a registry alive, and re-acquires it (the same
 * subnet when still free) when it is lost — flanneld exits instead.
 *
 * @module
 */
import { Backoff, sleep } from "../../async.ts";
import { log, RepeatedFailure } from "../../log.ts";
import { type Lease, leaseAttrsJSON, leaseName } from "../lease.ts";
import type { ReassertOutcome } from "./reassert.ts";
import type { OwnLeaseKeeper } from "../source.ts";

const logger = log("subnet");

/** What the keeper needs from the store. */
export interface KeptLeaseStore {
  /** Renews with a fresh TTL; undefined when the lease no longer exists as ours. */
  renewLease(lease: Lease, ttlSeconds: number): Promise<Lease | undefined>;
  /** The lease under `key`, or undefined. */
  getLease(key: string): Promise<Lease | undefined>;
  /** Writes the own value back when somebody else's is under the key (see reassert.ts). */
  reassertLease?(lease: Lease, ttlSeconds: number): Promise<ReassertOutcome>;
}

/** Options of {@linkcode LeaseKeeper}. */
export interface KeeperOptions {
  /** TTL of each renewal, seconds. */
  ttlSeconds: number;
  /** Renew this long before expiry, seconds (flannel: 60 min); capped at half the TTL. */
  renewMarginSeconds: number;
  /** Called with the new lease after every renewal or re-acquisition. */
  onLease?: (lease: Lease, reacquired: boolean) => void;
  /**
   * Re-acquires when the lease vanished (operator delete, expiry). Usually
   * `(prev) => manager.acquireLease(cfg, attrs, { previousSubnet: prev.subnet, … })`, which takes the
   * same subnet again when it is still free (`SubnetManager.keepLease` wires exactly that).
   */
  reacquire: (previous: Lease) => Promise<Lease>;
}

/**
 * Keeps one lease alive: renews it at `expiry − min(margin, TTL/2)` with a fresh TTL, retries failures
 * every TTL/10 (at most 60 s, backing off to TTL/6) so that several tries fit before expiry, and
 * re-acquires when the lease is gone. A reservation (no TTL) is only checked for existence.
 *
 * Call {@linkcode LeaseKeeper.poke} when a watch saw the own lease deleted: the keeper re-acquires at
 * once instead of at the next renewal.
 */
export class LeaseKeeper implements OwnLeaseKeeper {
  #lease: Lease;
  #wake = Promise.withResolvers<void>();
  /** Successful renewals. */
  renewals = 0;
  /** Failed renewal attempts (store unreachable, …). */
  failures = 0;
  /** Re-acquisitions after the lease was lost. */
  reacquisitions = 0;
  /** Times somebody else's value was found under the own key and the own value written back. */
  reasserted = 0;

  /** Keeps `lease` alive in `store`. */
  constructor(private readonly store: KeptLeaseStore, lease: Lease, private readonly opts: KeeperOptions) {
    this.#lease = lease;
  }

  /** The lease as last renewed. */
  get lease(): Lease {
    return this.#lease;
  }

  /** Renew (or re-acquire) now, e.g. because the watch saw the own lease deleted. */
  poke(): void {
    this.#wake.resolve();
  }

  async #reacquire(): Promise<void> {
    const prev = this.#lease;
    logger.warn("own lease {key} is gone (deleted or expired): re-acquiring, the same subnet if free", {
      key: prev.key,
    });
    this.#lease = await this.opts.reacquire(prev);
    this.reacquisitions++;
    if (this.#lease.key === prev.key) {
      logger.warn("re-acquired the same subnet {subnet}", { subnet: leaseName(this.#lease) });
    } else {
      logger.warn("re-acquired a different subnet {subnet}: {old} was taken meanwhile", {
        subnet: leaseName(this.#lease),
        old: leaseName(prev),
      });
    }
    this.opts.onLease?.(this.#lease, true);
  }

  /**
   * Somebody else's value may be under the own key (a renewal's compare failed): write the own value
   * back, the same subnet. True when handled; false when the key is gone (re-acquire) or the store
   * cannot reassert.
   */
  async #defend(ttl: number): Promise<boolean> {
    if (!this.store.reassertLease) return false;
    const r = await this.store.reassertLease(this.#lease, ttl);
    if (r.outcome === "gone") return false;
    if (r.outcome === "reasserted") {
      this.#lease = r.lease;
      this.reasserted++;
      this.opts.onLease?.(r.lease, false);
    }
    return true;
  }

  /** One check: renew (or reassert the own value), or re-acquire when the lease is gone. */
  async #check(ttl: number): Promise<void> {
    if (!this.#lease.etcdLeaseId) {
      // A reservation has no TTL: nothing to renew; re-acquire when an operator removed it, write the own
      // value back when somebody else's is there.
      const cur = await this.store.getLease(this.#lease.key);
      const ours = cur && leaseAttrsJSON(cur.attrs) === leaseAttrsJSON(this.#lease.attrs);
      if (!ours && !(await this.#defend(ttl))) await this.#reacquire();
      return;
    }
    const renewed = await this.store.renewLease(this.#lease, ttl);
    if (!renewed) {
      if (!(await this.#defend(ttl))) await this.#reacquire();
      return;
    }
    this.#lease = renewed;
    this.renewals++;
    logger.debug("renewed lease {key} for {ttl} s", { key: renewed.key, ttl });
    this.opts.onLease?.(renewed, false);
  }

  /** Runs until `signal` aborts. Never throws: failures are logged and retried. */
  async run(signal: AbortSignal): Promise<void> {
    const ttl = this.opts.ttlSeconds;
    const margin = Math.min(this.opts.renewMarginSeconds, ttl / 2);
    // Back off, but never so far that the lease could expire between two tries (flannel: every minute).
    const backoff = new Backoff(
      Math.max(0.2, Math.min(60, ttl / 10)) * 1000,
      Math.max(0.2, Math.min(60, ttl / 6)) * 1000,
    );
    const failure = new RepeatedFailure(logger, {
      what: "renewing the lease",
      fix: `retrying every ${Math.round(backoff.first / 1000)}–${Math.round(backoff.max / 1000)} s`,
    });
    while (!signal.aborted) {
      const expires = this.#lease.expiration?.getTime() ?? Date.now() + ttl * 1000;
      const wait = Math.max(0, expires - margin * 1000 - Date.now());
      this.#wake = Promise.withResolvers<void>();
      await Promise.race([sleep(this.#lease.etcdLeaseId ? wait : ttl * 1000, signal), this.#wake.promise]);
      if (signal.aborted) return;
      try {
        await this.#check(ttl);
        backoff.reset();
        failure.succeeded();
      } catch (err) {
        this.failures++;
        const ms = backoff.next();
        failure.failed(`${(err as Error).message} (lease ${this.#lease.key})`);
        await Promise.race([sleep(ms, signal), this.#wake.promise]);
        // Make the next loop try again at once.
        this.#lease = { ...this.#lease, expiration: new Date(Date.now() + margin * 1000) };
      }
    }
  }
}
