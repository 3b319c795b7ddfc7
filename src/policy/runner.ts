/**
 * A bounded-frequency runner (kube-proxy's `BoundedFrequencyRunner`, in small): {@linkcode kick} asks for
 * a run; runs never overlap, start at least `minIntervalMs` apart (so a burst of a thousand events costs
 * a few runs, not a thousand), and a kick always leads to a run that starts after it (no change is left
 * behind).
 *
 * {@linkcode retry} is the failure path: one retry, coalesced — while a retry is pending, further
 * failures do not add timers — at the delay the caller's back-off gives.
 *
 * @module
 */

/** Options of {@linkcode BoundedRunner}. */
export interface RunnerOptions {
  /** The least time between the starts of two runs, ms. */
  minIntervalMs: number;
}

/** Runs `fn` when kicked, at most once per interval, never twice at a time. */
export class BoundedRunner {
  #running: Promise<void> | undefined;
  #wanted = false; // a kick not yet served by a run that started after it
  #timer: ReturnType<typeof setTimeout> | undefined;
  #retry: ReturnType<typeof setTimeout> | undefined;
  #lastStart = -Infinity;
  #stopped = false;
  #waiters: (() => void)[] = [];
  /** Runs started. */
  runs = 0;

  /** @param fn the work; @param opts see {@linkcode RunnerOptions} */
  constructor(private readonly fn: () => Promise<void>, private readonly opts: RunnerOptions) {}

  /** Asks for a run. */
  kick(): void {
    if (this.#stopped) return;
    this.#wanted = true;
    this.#schedule();
  }

  /** Schedules one retry in `ms` unless one is pending already. */
  retry(ms: number): void {
    if (this.#stopped || this.#retry !== undefined) return;
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      this.kick();
    }, ms);
  }

  /** Whether a retry is pending. */
  get retryPending(): boolean {
    return this.#retry !== undefined;
  }

  /** Resolves when a run that starts after this call has finished. */
  next(): Promise<void> {
    return new Promise((res) => this.#waiters.push(res));
  }

  /** Cancels timers; a run in progress finishes. */
  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    clearTimeout(this.#retry);
    this.#timer = this.#retry = undefined;
    for (const w of this.#waiters.splice(0)) w();
  }

  #schedule(): void {
    if (this.#running || !this.#wanted || this.#stopped) return;
    if (this.#timer !== undefined) return; // already timed
    const wait = Math.max(0, this.#lastStart + this.opts.minIntervalMs - performance.now());
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#start();
    }, wait);
  }

  #start(): void {
    if (this.#running || this.#stopped) return;
    this.#wanted = false;
    this.#lastStart = performance.now();
    this.runs++;
    const waiters = this.#waiters.splice(0);
    this.#running = this.fn().catch(() => {}).finally(() => {
      this.#running = undefined;
      for (const w of waiters) w();
      this.#schedule();
    });
  }
}
