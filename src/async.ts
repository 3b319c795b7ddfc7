/**
 * The three waiting helpers every long-running part of weft uses: {@linkcode sleep} (abortable),
 * {@linkcode withTimeout} (a promise raced against a deadline) and {@linkcode Backoff} (exponential
 * delays with a ceiling), plus {@linkcode retry} built from them.
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

/** Exponential back-off: `first`, doubling each {@linkcode Backoff.next}, capped at `max`. */
export class Backoff {
  #current: number;

  /**
   * @param first the first delay, ms
   * @param max the ceiling, ms
   */
  constructor(readonly first: number, readonly max: number) {
    this.#current = first;
  }

  /** The delay to wait now; the one after it doubles (up to the ceiling). */
  next(): number {
    const d = this.#current;
    this.#current = Math.min(this.#current * 2, this.max);
    return d;
  }

  /** Back to the first delay (after a success). */
  reset(): void {
    this.#current = this.first;
  }

  /** Waits the next delay (less when `signal` aborts) and returns how long it meant to wait. */
  async wait(signal?: AbortSignal): Promise<number> {
    const d = this.next();
    await sleep(d, signal);
    return d;
  }
}

/**
 * Calls `fn` until it resolves, waiting 100 ms → 5 s between failures and telling `onRetry` each time.
 * Rethrows only once `signal` aborted.
 */
export async function retry<T>(
  fn: () => Promise<T>,
  signal: AbortSignal,
  onRetry: (err: Error, ms: number) => void,
): Promise<T> {
  const backoff = new Backoff(100, 5000);
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      if (signal.aborted) throw err;
      const ms = backoff.next();
      onRetry(err as Error, ms);
      await sleep(ms, signal);
    }
  }
}
