/**
 * Logging setup shared by every mode: structured records on stderr (text or JSON lines), levels chosen
 * with `-v`/`--log-level`. stdout stays free for machine output (CNI results, `--json`).
 *
 * @module
 */
import { configure, getLogger, type Logger, type LogLevel, type LogRecord, reset } from "@logtape/logtape";

/** Log levels accepted by `--log-level`. */
export const LOG_LEVELS = ["trace", "debug", "info", "warning", "error", "fatal"] as const;

/** Options for {@linkcode setupLogging}. */
export interface LoggingOptions {
  /** Lowest level written. Default `info`. */
  level?: LogLevel;
  /** Write one JSON object per line instead of text. */
  json?: boolean;
  /** Also append records to this file (the CNI `logFile` option). */
  file?: string;
}

/** The message with its values in place (a string value as it is, anything else as JSON). */
function messageText(record: LogRecord): string {
  return record.message.map((part) => typeof part === "string" ? part : JSON.stringify(part)).join("");
}

/** The property names a message template places in its text (`{name}`; `{*}`: all of them). */
function placed(raw: LogRecord["rawMessage"]): Set<string> | "all" {
  if (typeof raw !== "string") return new Set();
  const names = [...raw.matchAll(/\{([^{}]+)\}/g)].map((m) => m[1]!.trim());
  return names.includes("*") ? "all" : new Set(names);
}

/**
 * One line for people: time, level, logger, the message, then only the properties the message does not
 * already show, as `key=value` (a value is never printed twice).
 */
export function formatText(record: LogRecord): string {
  const ts = new Date(record.timestamp).toISOString();
  const shown = placed(record.rawMessage);
  const props = shown === "all" ? [] : Object.entries(record.properties).filter(([k]) => !shown.has(k));
  const extra = props.length ? " " + props.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(" ") : "";
  return `${ts} ${record.level.toUpperCase().padEnd(7)} ${record.category.join(".")}: ${
    messageText(record)
  }${extra}\n`;
}

/**
 * One JSON object per line for machines (`--log-json`): `ts` (ISO 8601, UTC), `level`, `logger`
 * (`weft.agent`, …), `msg` (the text as `formatText` shows it), then every property of the record as its
 * own field (`error`, `key`, `attempts`, …), so a log pipeline can filter on them.
 */
export function formatJson(record: LogRecord): string {
  return JSON.stringify({
    ...record.properties,
    ts: new Date(record.timestamp).toISOString(),
    level: record.level,
    logger: record.category.join("."),
    msg: messageText(record),
  }) + "\n";
}

/** Configures the `weft` logger tree. Safe to call more than once (the last call wins). */
export async function setupLogging(opts: LoggingOptions = {}): Promise<void> {
  const format = opts.json ? formatJson : formatText;
  const encoder = new TextEncoder();
  const stderrSink = (record: LogRecord) => {
    Deno.stderr.writeSync(encoder.encode(format(record)));
  };
  const sinks: Record<string, (r: LogRecord) => void> = { stderr: stderrSink };
  const file = opts.file;
  if (file) {
    sinks.file = (record: LogRecord) => {
      try {
        Deno.writeTextFileSync(file, format(record), { append: true, create: true });
      } catch {
        // A log file we cannot write must never fail the operation being logged.
      }
    };
  }
  await reset();
  await configure({
    reset: true,
    sinks,
    loggers: [
      { category: ["weft"], lowestLevel: opts.level ?? "info", sinks: Object.keys(sinks) },
      { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
    ],
  });
}

/** Returns the logger for one weft component, e.g. `log("agent")` → category `weft.agent`. */
export function log(...component: string[]): Logger {
  return getLogger(["weft", ...component]);
}

/** Options of a {@linkcode RepeatedFailure}. */
export interface RepeatedFailureOptions {
  /** What fails, the start of each line: `"lease watch"`, `"renewing the lease"`. */
  what: string;
  /** What to do about it, closing the first line and the later ones (the error may carry its own). */
  fix?: string;
  /** The second line comes this long after the first, ms (default 60 000); each gap then doubles. */
  firstGapMs?: number;
  /** Longest gap between two lines, ms (default one hour). */
  maxGapMs?: number;
  /** The clock, ms (tests pass their own). */
  now?: () => number;
}

/** `3m 12s`, `1h 4m`, `800 ms`. */
function span(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

/**
 * A failure that repeats at every retry, logged so a reader at 3 a.m. sees it without drowning: the first
 * attempt in full (warning) with its fix; then one line per gap — 1 min, 2, 4 … up to 1 h — saying since
 * when and how many attempts failed; and, when an attempt works again, one line saying so (info). The
 * error text is the latest one (a library's "circuit breaker is open" should be translated into its plain
 * cause before it gets here).
 *
 * @example
 * ```ts
 * const renew = new RepeatedFailure(logger, { what: "renewing the lease", fix: "check etcd" });
 * try { await renewLease(); renew.succeeded(); } catch (err) { renew.failed((err as Error).message); }
 * ```
 */
export class RepeatedFailure {
  #since: number | undefined;
  #attempts = 0;
  #reported = 0;
  #nextAt = 0;
  #gap: number;
  readonly #now: () => number;

  /**
   * @param logger where the lines go
   * @param opts what fails, the fix, the gaps
   */
  constructor(private readonly logger: Logger, private readonly opts: RepeatedFailureOptions) {
    this.#gap = opts.firstGapMs ?? 60_000;
    this.#now = opts.now ?? Date.now;
  }

  /** Whether the last attempt failed. */
  get failing(): boolean {
    return this.#since !== undefined;
  }

  /** Failed attempts in a row. */
  get attempts(): number {
    return this.#attempts;
  }

  /** Records a failed attempt with its error; returns whether it wrote a line. */
  failed(error: string): boolean {
    const now = this.#now();
    this.#attempts++;
    // The fix goes in as a value, never into the template (where a brace in it would be a placeholder).
    const fix = this.opts.fix ? "; {fix}" : "";
    const fixProp = this.opts.fix ? { fix: this.opts.fix } : {};
    if (this.#since === undefined) {
      this.#since = now;
      this.#nextAt = now + this.#gap;
      this.#reported = 1;
      this.logger.warn(`{what}: {error}${fix}`, { what: this.opts.what, error, ...fixProp });
      return true;
    }
    if (now < this.#nextAt) return false;
    this.#gap = Math.min(this.#gap * 2, this.opts.maxGapMs ?? 3_600_000);
    this.#nextAt = now + this.#gap;
    const quiet = this.#attempts - this.#reported;
    this.#reported = this.#attempts;
    this.logger.warn(
      `{what}: still failing since {since} ({attempts} attempts, {quiet} not logged; next report in {next}): {error}${fix}`,
      {
        what: this.opts.what,
        since: new Date(this.#since).toISOString(),
        attempts: this.#attempts,
        quiet,
        next: span(this.#gap),
        error,
        ...fixProp,
      },
    );
    return true;
  }

  /** Records an attempt that worked: after failures, one line says for how long it had failed. */
  succeeded(): void {
    if (this.#since === undefined) return;
    this.logger.info("{what}: works again after {attempts} failed attempts over {duration}", {
      what: this.opts.what,
      attempts: this.#attempts,
      duration: span(this.#now() - this.#since),
    });
    this.#since = undefined;
    this.#attempts = 0;
    this.#gap = this.opts.firstGapMs ?? 60_000;
  }
}
