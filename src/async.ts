/**
 * The three waiting helpers every long-running part of weft uses: {@linkcode sleep} (abortable),
 * {@linkcode withTimeout} (a promise raced against a deadline) and {@linkcode Backoff} (jittered
 * exponential delays with a ceiling), plus {@linkcode retry} built from them.
 *
 * @module
 */

/** Sleeps `ms`, or less when `signal` aborts (never rejects). */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(t);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const t = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}

/** Error of {@linkcode withTimeout}: `what` gave no answer in time. */
export class TimeoutError extends Error {
  /** Names what timed out and after how long. */
  constructor(what: string, ms: number) {
    super(`${what}: no answer in ${ms} ms`);
    this.name = "TimeoutError";
  }
}

/**
 * `p`, or a {@linkcode TimeoutError} after `ms`. The timer is always cleared, so a settled race leaves
 * nothing behind (tests check for leaked timers).
 */
export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new TimeoutError(what, ms)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

/**
 * How a {@linkcode Backoff} spreads its delays: `full` draws each one uniformly from [0, current] (AWS's
 * "full jitter": after an outage, a thousand nodes retry spread over the whole window instead of in
 * lock-step), `equal` from [current/2, current] (a floor that is never zero), `none` is the plain ladder.
 */
export type Jitter = "full" | "equal" | "none";

/** Options of a {@linkcode Backoff}. */
export interface BackoffOptions {
  /** How the delays are spread (default `full`). */
  jitter?: Jitter;
  /** A number in [0, 1) (tests pass their own; default `Math.random`). */
  random?: () => number;
}

/**
 * Exponential back-off, the one every retry loop of weft uses: the ceiling of the delay starts at
 * `first` and doubles with each {@linkcode Backoff.next} up to `max`; the delay itself is jittered
 * (see {@linkcode Jitter}). A server's `Retry-After` is a floor: `next(retryAfterMs)` never returns less.
 */
export class Backoff {
  #current: number;
  readonly #jitter: Jitter;
  readonly #random: () => number;

  /**
   * @param first the first ceiling, ms
   * @param max the largest ceiling, ms
   */
  constructor(readonly first: number, readonly max: number, opts: BackoffOptions = {}) {
    this.#current = first;
    this.#jitter = opts.jitter ?? "full";
    this.#random = opts.random ?? Math.random;
  }

  /**
   * The delay to wait now (at least `floorMs`, e.g. a server's `Retry-After`); the ceiling of the one
   * after it doubles (up to `max`).
   */
  next(floorMs = 0): number {
    const ceiling = this.#current;
    this.#current = Math.min(this.#current * 2, this.max);
    const d = this.#jitter === "full"
      ? this.#random() * ceiling
      : this.#jitter === "equal"
      ? ceiling / 2 + this.#random() * ceiling / 2
      : ceiling;
    return Math.max(Math.round(d), floorMs);
  }

  /** Back to the first delay (after a success). */
  reset(): void {
    this.#current = this.first;
  }

  /** Waits the next delay (less when `signal` aborts) and returns how long it meant to wait. */
  async wait(signal?: AbortSignal, floorMs = 0): Promise<number> {
    const d = this.next(floorMs);
    await sleep(d, signal);
    return d;
  }
}

/**
 * Calls `fn` until it resolves, waiting up to 100 ms → 5 s (full jitter; `backoff` sets other ceilings)
 * between failures, never less than a failure's `retryAfterMs` (a server's Retry-After), and telling
 * `onRetry` each time. Rethrows only once `signal` aborted.
 */
export async function retry<T>(
  fn: () => Promise<T>,
  signal: AbortSignal,
  onRetry: (err: Error, ms: number) => void,
  backoff: { firstMs: number; maxMs: number } = { firstMs: 100, maxMs: 5000 },
): Promise<T> {
  const b = new Backoff(backoff.firstMs, backoff.maxMs);
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (signal.aborted) throw err;
      const floor = (err as { retryAfterMs?: unknown }).retryAfterMs;
      const ms = b.next(typeof floor === "number" ? floor : 0);
      onRetry(err as Error, ms);
      await sleep(ms, signal);
    }
  }
}
