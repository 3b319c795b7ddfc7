/**
 * TEMPORARY (until issue 11's BackendOptionReader lands in net_conf.ts): the same reader over
 * `BackendConfig.options`, so the udp and wireguard option parsers are written against its API.
 *
 * @module
 */
import { ConfigError } from "../config/net_conf.ts";

/** Reads `Backend.*` options (keys lowercased), naming the key in every rejection. */
export class BackendOptionReader {
  /** @param options the Backend section with lowercased keys (`BackendConfig.options`) */
  constructor(private readonly options: Record<string, unknown>) {}

  #get(key: string): unknown {
    return this.options[key.toLowerCase()];
  }

  /** A non-negative integer option within `[min, max]`, or `dflt` when absent. */
  int<D extends number | undefined>(
    key: string,
    dflt: D,
    min = 0,
    max = Number.MAX_SAFE_INTEGER,
  ): number | D {
    const v = this.#get(key);
    if (v === undefined || v === null) return dflt;
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
      throw new ConfigError(`Backend.${key}`, v, "must be a non-negative integer");
    }
    if (v < min || v > max) throw new ConfigError(`Backend.${key}`, v, `must be ${min}–${max}`);
    return v;
  }

  /** A boolean option, or `dflt` when absent. */
  bool(key: string, dflt: boolean): boolean {
    const v = this.#get(key);
    if (v === undefined || v === null) return dflt;
    if (typeof v !== "boolean") throw new ConfigError(`Backend.${key}`, v, "must be true or false");
    return v;
  }

  /** A string option, or undefined when absent or empty. */
  string(key: string): string | undefined {
    const v = this.#get(key);
    if (v === undefined || v === null || v === "") return undefined;
    if (typeof v !== "string") throw new ConfigError(`Backend.${key}`, v, "must be a string");
    return v;
  }

  /** A string option that must be one of `allowed` (compared lowercased), or `dflt` when absent. */
  oneOf<T extends string>(key: string, allowed: readonly T[], dflt: T): T {
    const v = this.string(key)?.toLowerCase();
    if (v === undefined) return dflt;
    if (!(allowed as readonly string[]).includes(v)) {
      throw new ConfigError(`Backend.${key}`, v, `must be one of ${allowed.join(", ")}`);
    }
    return v as T;
  }
}
