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

function formatText(record: LogRecord): string {
  const ts = new Date(record.timestamp).toISOString();
  const msg = record.message.map((part) => typeof part === "string" ? part : JSON.stringify(part)).join("");
  const props = Object.entries(record.properties);
  const extra = props.length ? " " + props.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(" ") : "";
  return `${ts} ${record.level.toUpperCase().padEnd(7)} ${record.category.join(".")}: ${msg}${extra}\n`;
}

function formatJson(record: LogRecord): string {
  const msg = record.message.map((part) => typeof part === "string" ? part : JSON.stringify(part)).join("");
  return JSON.stringify({
    ts: new Date(record.timestamp).toISOString(),
    level: record.level,
    logger: record.category.join("."),
    msg,
    ...record.properties,
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
