/**
 * One verdict on the lease store from several witnesses: the lease watch, the store probe and the keeper
 * all see whether the store answers, and {@linkcode StoreHealth} logs and acts on every change. The watch
 * is the witness that matters for "reachable again": its re-list is what brings the node back in step,
 * and another witness may answer while the store does not (kube mode's probe reads the config file; a
 * keeper may report without a round trip). So a failure from any witness counts at once; while the watch
 * is failing, an answer from another witness does not announce "reachable again" — it only asks the
 * watch to re-list now, and the watch's own success then does.
 *
 * @module
 */
import { StoreHealth } from "./store_health.ts";

/** StoreHealth that lets the watch decide when the store is back after the watch saw it fail. */
export class StoreReachability extends StoreHealth {
  #watchFailing = false;

  /** Called when another witness says "up" while the watch still fails: re-list now. */
  kick: () => void = () => {};

  /** The watch's verdict (it listed and watches: up; it failed: down). */
  watchSaw(up: boolean): void {
    this.#watchFailing = !up;
    super.set(up, up ? undefined : "the lease watch failed");
  }

  /** Another witness's verdict (the probe, the keeper). */
  override set(up: boolean, why?: string): void {
    if (up && this.#watchFailing) {
      this.kick();
      return;
    }
    super.set(up, why);
  }
}
