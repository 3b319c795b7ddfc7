/**
 * The agent's configuration for the other commands: the systemd unit (deploy/weft.service) gives
 * `weft agent` its `FLANNELD_*` settings through `EnvironmentFile=-/etc/default/weft`, so `weft status`,
 * `doctor`, `leases` and `config` read the same file — `--env-file <path>` or `WEFT_ENV_FILE`
 * name another — for the variables the environment does not already set (a DaemonSet's are set). The
 * agent itself never reads it: under systemd the unit hands it over, elsewhere its environment is its
 * configuration, as flanneld's is.
 *
 * @module
 */
import { CliError } from "./errors.ts";
import { addFlags, type FlagSpec } from "./flags.ts";

/** Where the unit keeps the agent's settings. */
export const DEFAULT_ENV_FILE = "/etc/default/weft";

/** The commands that read the env file (those reading the agent's flags). */
export const ENV_FILE_COMMANDS = ["status", "doctor", "leases", "config"];

/** `--env-file`, for the commands that read it. */
export const ENV_FILE_FLAG: FlagSpec = {
  name: "env-file",
  kind: "string",
  arg: "path",
  help:
    `the agent's systemd EnvironmentFile, read for the FLANNELD_* variables not set (default ${DEFAULT_ENV_FILE}; env WEFT_ENV_FILE)`,
  origin: "weft",
  env: false,
};

/** Adds `--env-file` to `cmd` (its type is handed back unchanged). */
export function addEnvFileFlag<C extends object>(cmd: C): C {
  return addFlags(cmd, [ENV_FILE_FLAG]);
}

/** A double-quoted value's escapes, as systemd reads them. */
const ESCAPES: Record<string, string> = { n: "\n", t: "\t", "\\": "\\", '"': '"', $: "$", "`": "`" };

function unquote(raw: string, where: string): string {
  const v = raw.trim();
  if (v.startsWith("'")) {
    if (!v.endsWith("'") || v.length < 2) throw new Error(`${where}: unterminated '`);
    return v.slice(1, -1);
  }
  if (v.startsWith('"')) {
    let out = "";
    for (let i = 1; i < v.length; i++) {
      const c = v[i]!;
      if (c === "\\" && i + 1 < v.length) out += ESCAPES[v[++i]!] ?? `\\${v[i]}`;
      else if (c === '"' && i === v.length - 1) return out;
      else if (c === '"') throw new Error(`${where}: text after the closing "`);
      else out += c;
    }
    throw new Error(`${where}: unterminated "`);
  }
  return v;
}

/**
 * Parses a systemd EnvironmentFile: `KEY=VALUE` lines; blank lines and lines starting with `#` or `;`
 * skipped; a value in single quotes taken as it is, in double quotes with `\"`, `\\`, `\n` escapes; a
 * backslash at the end of a line continues it. Throws naming the line for anything else.
 */
export function parseEnvFile(text: string, path = "env file"): Map<string, string> {
  const out = new Map<string, string>();
  const lines = text.replace(/\\\r?\n/g, "").split(/\r?\n/);
  lines.forEach((line, i) => {
    const t = line.trim();
    if (!t || t.startsWith("#") || t.startsWith(";")) return;
    const m = /^([A-Za-z_][A-Za-z0-9_]*)\s*=(.*)$/s.exec(t);
    if (!m) throw new Error(`${path}:${i + 1}: not KEY=VALUE: ${JSON.stringify(t)}`);
    out.set(m[1]!, unquote(m[2]!, `${path}:${i + 1}`));
  });
  return out;
}

/** The `--env-file` value among `args` (any syntax flags.ts accepts), if given. */
export function envFileArg(args: readonly string[]): string | undefined {
  for (let i = 0; i < args.length && args[i] !== "--"; i++) {
    const m = /^--?env-file(?:=(.*))?$/s.exec(args[i]!);
    if (m) return m[1] ?? args[i + 1];
  }
  return undefined;
}

/**
 * For a command that reads it (`args[0]` in {@linkcode ENV_FILE_COMMANDS}): loads the env file into
 * the process environment, without overriding what is set. The default file may be absent; a file
 * named by `--env-file` or `WEFT_ENV_FILE` must exist. Returns the variables it set.
 */
export function loadEnvFileFor(args: readonly string[], env = Deno.env): string[] {
  if (!ENV_FILE_COMMANDS.includes(args[0] ?? "")) return [];
  const named = envFileArg(args) ?? (env.get("WEFT_ENV_FILE") || undefined);
  const path = named ?? DEFAULT_ENV_FILE;
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (err) {
    if (!named && err instanceof Deno.errors.NotFound) return [];
    throw new CliError(`env file ${path}: ${(err as Error).message}`, 2);
  }
  let vars: Map<string, string>;
  try {
    vars = parseEnvFile(text, path);
  } catch (err) {
    throw new CliError((err as Error).message, 2);
  }
  const set: string[] = [];
  for (const [k, v] of vars) {
    if (env.get(k) !== undefined) continue;
    env.set(k, v);
    set.push(k);
  }
  return set;
}
