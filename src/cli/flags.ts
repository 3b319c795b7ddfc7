/**
 * The one place flags are read the way flanneld reads them, for every weft command:
 *
 * - Go's flag syntax ({@linkcode goArgs}): `-flag`, `--flag`, `-flag=value`, `-flag value` (not for
 *   booleans, which take `-flag=false`), klog's `-v=2` / `-v 2`; rewritten into commander's syntax
 *   before commander parses;
 * - Go's boolean and integer syntax ({@linkcode parseBool}: strconv.ParseBool; {@linkcode parseGoInt}:
 *   strconv.ParseInt base 0), checked before the command runs, naming the flag or variable;
 * - the `FLANNELD_<FLAG>` variable of every flag ({@linkcode envName}, coreos/pkg/flagutil's rule:
 *   dashes → underscores, upper case), read for the flags the command line does not set, an empty
 *   variable counting as unset, exactly as flanneld's `flagutil.SetFlagsFromEnv` does.
 *
 * A command declares its flags as {@linkcode FlagSpec}s ({@linkcode addFlags}); `--help` marks which
 * are flanneld's, klog's (through flanneld) or weft's own.
 *
 * @module
 */
// Types only: commander is imported by the full command line (program.ts), never by `weft agent`'s
// own path ({@linkcode parseFlags}), which reads the same specs without it.
import type { Command, Option } from "@commander-js/extra-typings";
import { CliError } from "./errors.ts";

const TRUE = ["1", "t", "T", "true", "TRUE", "True"];
const FALSE = ["0", "f", "F", "false", "FALSE", "False"];

/**
 * Go's strconv.ParseBool, which flanneld's boolean flags and `FLANNELD_*` variables go through:
 * `1 t T true TRUE True` / `0 f F false FALSE False`; anything else (also "") is a {@linkcode CliError}
 * (exit 2) naming `flag`. A flag given without a value (`true` from commander) is true; absent is false.
 */
export function parseBool(flag: string, v: string | boolean | undefined): boolean {
  if (v === undefined || typeof v === "boolean") return !!v;
  if (TRUE.includes(v)) return true;
  if (FALSE.includes(v)) return false;
  throw new CliError(`${flag} ${v}: must be true or false`, 2);
}

/**
 * Go's strconv.ParseInt(v, 0, 64), which flanneld's integer flags go through: an optional sign, then
 * decimal, `0x` hex, `0o`/`0` octal or `0b` binary, `_` between digits only after a base prefix.
 */
export function parseGoInt(flag: string, v: string): number {
  const m =
    /^([+-]?)(?:0[xX]_?([0-9a-fA-F]+(?:_[0-9a-fA-F]+)*)|0[bB]_?([01]+(?:_[01]+)*)|0[oO]_?([0-7]+(?:_[0-7]+)*)|0(_?[0-7]+(?:_[0-7]+)*)|([0-9]+))$/
      .exec(v);
  if (!m) throw new CliError(`${flag} ${v}: must be an integer`, 2);
  const [radix, digits] = m[2]
    ? [16, m[2]]
    : m[3]
    ? [2, m[3]]
    : m[4]
    ? [8, m[4]]
    : m[5]
    ? [8, m[5]]
    : [10, m[6]!];
  const n = parseInt(digits.replace(/_/g, ""), radix) * (m[1] === "-" ? -1 : 1);
  if (!Number.isSafeInteger(n)) throw new CliError(`${flag} ${v}: out of range`, 2);
  return n;
}

/** The environment variable flanneld reads for `--flag-name` (or `flag-name`): `FLANNELD_FLAG_NAME`. */
export function envName(flag: string): string {
  return `FLANNELD_${flag.replace(/^-+/, "").replace(/-/g, "_").toUpperCase()}`;
}

/** Reads an environment variable. */
export type EnvReader = (name: string) => string | undefined;

const processEnv: EnvReader = (k) => Deno.env.get(k);

/**
 * The value of `flag`'s `FLANNELD_*` variable, or undefined when it is unset or empty (flagutil skips
 * empty variables, so an empty one means "not set", never "false" or "").
 */
export function envValue(flag: string, env: EnvReader = processEnv): string | undefined {
  const v = env(envName(flag));
  return v === undefined || v === "" ? undefined : v;
}

/** How a flag takes its value (Go's flag kinds). */
export type FlagKind =
  /** `-flag` is true, `-flag=false`; never `-flag false`. */
  | "bool"
  /** `-flag value` / `-flag=value`. */
  | "string"
  /** A string checked as Go's base-0 integer. */
  | "int"
  /** A string flag that may be repeated (flanneld's `flagSlice`); each use adds one value. */
  | "list";

/** Whose flag it is (shown in `--help`). */
export type FlagOrigin = "flanneld" | "klog" | "weft";

/** One flag of a command. */
export interface FlagSpec {
  /** Long name without dashes, as flanneld spells it (`ip-masq`, `log_backtrace_at`). */
  name: string;
  /** Value syntax. */
  kind: FlagKind;
  /** What it does (one line for `--help`). */
  help: string;
  /** Value placeholder in `--help` (`ip`, `seconds`); not for booleans. */
  arg?: string;
  /** Default as text ("" = none); booleans default to "false". Lists start empty. */
  default?: string;
  /** flanneld's own, klog's through flanneld, or weft's. */
  origin: FlagOrigin;
  /** Read from `FLANNELD_<FLAG>` when not given (default true; flanneld reads `-version` before). */
  env?: boolean;
}

const specsOf = new WeakMap<object, Map<string, FlagSpec>>();

/** The option's attribute name commander uses for `name` (`ip-masq` → `ipMasq`, `v` → `v`). */
export function attributeOf(name: string): string {
  return name.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
}

// deno-lint-ignore no-explicit-any -- any commander command
function optionFor(cmd: Command<any, any, any>, spec: FlagSpec): Option {
  const value = spec.kind === "bool" ? "[bool]" : `<${spec.arg ?? "value"}>`;
  const env = spec.env === false ? "" : `; env ${envName(spec.name)}`;
  const origin = spec.origin === "klog" ? "klog flag of flanneld" : spec.origin;
  const opt = cmd.createOption(`--${spec.name} ${value}`, `${spec.help} [${origin}${env}]`);
  const dflt = defaultOf(spec);
  if (typeof dflt !== "string") {
    return opt.argParser((v: string, prev: string[] | undefined) => [...(prev ?? []), v]).default(
      dflt,
      "none",
    );
  }
  return opt.default(dflt, dflt === "" ? "none" : undefined);
}

/** A flag's value when neither the command line nor its variable sets it: lists empty, booleans "false". */
function defaultOf(spec: FlagSpec): string | string[] {
  if (spec.kind === "list") return [];
  return spec.kind === "bool" ? spec.default ?? "false" : spec.default ?? "";
}

/**
 * Adds `specs` to `command` (any commander command; its type is handed back unchanged: read the values
 * through a `…FlagValues` cast) and records them for {@linkcode goArgs} and `--help`.
 */
export function addFlags<C extends object>(command: C, specs: readonly FlagSpec[]): C {
  // deno-lint-ignore no-explicit-any -- any commander command; its type is handed back unchanged
  const cmd = command as unknown as Command<any, any, any>;
  const known = specsOf.get(cmd) ?? new Map<string, FlagSpec>();
  for (const spec of specs) {
    cmd.addOption(optionFor(cmd, spec));
    known.set(spec.name, spec);
  }
  specsOf.set(cmd, known);
  return command;
}

/** Lines for `--help` explaining the syntax and the variables. */
export const FLAG_SYNTAX_HELP = `
Flags are read as flanneld reads them: -flag or --flag, -flag=value or -flag value (booleans only
-flag or -flag=false), and each from FLANNELD_<FLAG> (dashes as underscores, e.g. FLANNELD_IP_MASQ)
when the command line does not set it; an empty variable counts as unset. [flanneld] marks flanneld
v0.28.9's flags, [weft] weft's own.`;

/** The flags one command knows, as {@linkcode goArgs} and {@linkcode parseFlags} read them. */
interface FlagTable {
  /** Its specs by name. */
  specs: ReadonlyMap<string, FlagSpec>;
  /** How `name` takes a value: declared through a spec, a plain commander option, or unknown. */
  kind(name: string): FlagKind | "switch" | undefined;
}

/** A commander command's flags: its specs, and the plain options it declares besides. */
// deno-lint-ignore no-explicit-any -- any commander command
function commandTable(cmd: Command<any, any, any>): FlagTable {
  const specs = specsOf.get(cmd) ?? new Map<string, FlagSpec>();
  return {
    specs,
    kind(name) {
      const spec = specs.get(name);
      if (spec) return spec.kind;
      const opt = cmd.options.find((o) => o.long === `--${name}`);
      if (!opt) return undefined;
      return opt.required ? "string" : opt.optional ? "bool" : "switch";
    },
  };
}

/** A command's flags from its specs alone. */
function specTable(list: readonly FlagSpec[]): FlagTable {
  const specs = new Map(list.map((s) => [s.name, s]));
  return { specs, kind: (name) => specs.get(name)?.kind };
}

/** A value checked for its kind, in the spelling commander gets (integers in decimal). */
function checked(kind: FlagKind, label: string, v: string): string {
  if (kind === "bool") return String(parseBool(label, v));
  if (kind === "int") return String(parseGoInt(label, v));
  return v;
}

/** klog's level: a decimal int32 (klog's Level.Set is strconv.ParseInt(v, 10, 32)). */
function klogLevel(label: string, v: string): string {
  const n = Number(v);
  if (!/^[+-]?\d+$/.test(v) || n < -(2 ** 31) || n >= 2 ** 31) {
    throw new CliError(`${label} ${v}: must be a verbosity level (an integer, e.g. -v=2)`, 2);
  }
  return String(n);
}

/**
 * klog's `-v`: `-v=2`, `-v 2`; weft's `-v` alone (followed by nothing or by something that is not a
 * number) is its `--verbose`, which it was before klog's flag was accepted.
 */
function klogV(
  table: FlagTable,
  args: readonly string[],
  i: number,
  value: string | undefined,
  out: string[],
) {
  const label = args[i]!.replace(/=.*$/s, "");
  const next = args[i + 1];
  if (value !== undefined) out.push(`--v=${klogLevel(label, value)}`);
  else if (next !== undefined && /^[+-]?\d+$/.test(next)) out.push(`--v=${klogLevel(label, next)}`), i++;
  else if (table.specs.has("verbose")) out.push("--verbose=true");
  else throw new CliError(`flag needs an argument: ${label}`, 2);
  return i;
}

/** Rewrites the flag at `args[i]` (and its value) for commander; returns the index of the last token used. */
function normalise(table: FlagTable, args: readonly string[], i: number, out: string[], seen: Set<string>) {
  const t = args[i]!;
  // Go: one or two dashes, then a name that starts with neither "-" nor "=".
  const m = /^(--?)([^-=][^=]*)(?:=([\s\S]*))?$/.exec(t);
  if (!m) return out.push(t), i;
  const [, dashes, name, value] = m as unknown as [string, string, string, string | undefined];
  if (name === "h" || name === "help") return out.push("--help"), i;
  if (name === "v" && table.specs.has("v")) return seen.add("v"), klogV(table, args, i, value, out);
  const kind = table.kind(name);
  // Unknown flags, and single-letter ones commander knows by their short form, go to commander as they are.
  if (!kind || (dashes === "-" && name.length === 1)) return out.push(t), i;
  seen.add(name);
  const label = `${dashes}${name}`;
  if (kind === "switch") {
    if (value === undefined || parseBool(label, value)) out.push(`--${name}`);
    return i;
  }
  if (kind === "bool") {
    const next = args[i + 1];
    if (value === undefined && next !== undefined && [...TRUE, ...FALSE].includes(next)) {
      throw new CliError(
        `${label} ${next}: a boolean flag takes its value as ${label}=${next} (flanneld would read ` +
          `${label} as true and ignore every argument from ${JSON.stringify(next)} on)`,
        2,
      );
    }
    out.push(`--${name}=${value === undefined ? true : parseBool(label, value)}`);
    return i;
  }
  if (value !== undefined) return out.push(`--${name}=${checked(kind, label, value)}`), i;
  if (i + 1 >= args.length) throw new CliError(`flag needs an argument: ${label}`, 2);
  out.push(`--${name}=${checked(kind, label, args[i + 1]!)}`);
  return i + 1;
}

/** `--flag=value` for each declared flag of `table` not in `seen` whose `FLANNELD_*` variable is set. */
function envArgs(table: FlagTable, seen: Set<string>, env: EnvReader): string[] {
  const out: string[] = [];
  for (const spec of table.specs.values()) {
    if (spec.env === false || seen.has(spec.name)) continue;
    const v = envValue(spec.name, env);
    if (v === undefined) continue;
    const label = envName(spec.name);
    out.push(`--${spec.name}=${spec.name === "v" ? klogLevel(label, v) : checked(spec.kind, label, v)}`);
  }
  return out;
}

/**
 * Rewrites `args` (the command line after the program name) from Go's flag syntax into commander's,
 * checking booleans and integers as Go would, and adds the `FLANNELD_*` variables of the flags the
 * command line leaves unset (to the innermost subcommand: options belong to the command they follow).
 * Everything after `--` is passed on untouched. Throws {@linkcode CliError} (exit 2) for a bad value.
 *
 * @example
 * ```ts
 * goArgs(program, ["agent", "-iface=eth0", "-ip-masq", "-v", "2"]);
 * // → ["agent", "--iface=eth0", "--ip-masq=true", "--v=2", …FLANNELD_* values]
 * ```
 */
export function goArgs(program: Command, args: readonly string[], env: EnvReader = processEnv): string[] {
  const out: string[] = [];
  // deno-lint-ignore no-explicit-any -- commander's typed commands nest without a common type
  let cmd: Command<any, any, any> = program;
  let envAt = 0;
  let seen = new Set<string>();
  let positional = false;
  for (let i = 0; i < args.length; i++) {
    const t = args[i]!;
    if (t === "--") {
      out.push(...args.slice(i));
      break;
    }
    const sub = !t.startsWith("-") && !positional &&
      cmd.commands.find((c) => c.name() === t || c.aliases().includes(t));
    if (sub) {
      [cmd, seen, envAt] = [sub, new Set(), out.push(t)];
    } else if (!t.startsWith("-") || t === "-") {
      positional = true;
      out.push(t);
    } else {
      i = normalise(commandTable(cmd), args, i, out, seen);
    }
  }
  out.splice(envAt, 0, ...envArgs(commandTable(cmd), seen, env));
  return out;
}

/** A command's flag values as commander hands them to its action: strings, lists as arrays. */
export type FlagValues = Record<string, string | string[]>;

/**
 * `args` (the flags after a command's name) read against `specs` alone, without commander: exactly the
 * values commander hands the command's action for the same arguments and `FLANNELD_*` variables
 * (src/cli/agent_test.ts compares the two), or undefined when the arguments need commander — `--help`, a
 * positional argument, `--`, a flag no spec declares — and the caller then runs the full command line,
 * which answers those as it always did. `weft agent` starts this way: commander (and the node compat
 * layer it loads) would be a few MB of every agent's memory (bench/kube_scale.ts, BENCHMARKS.md).
 * Throws {@linkcode CliError} (exit 2) for a bad value, as {@linkcode goArgs} does.
 */
export function parseFlags(
  specs: readonly FlagSpec[],
  args: readonly string[],
  env: EnvReader = processEnv,
): FlagValues | undefined {
  const table = specTable(specs);
  const given: string[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < args.length; i++) i = normalise(table, args, i, given, seen);
  const values: FlagValues = Object.fromEntries(specs.map((s) => [attributeOf(s.name), defaultOf(s)]));
  // As goArgs: the variables first, then the command line (a variable is only read for a flag not given).
  for (const arg of [...envArgs(table, seen, env), ...given]) {
    const m = /^--([^=]+)=([\s\S]*)$/.exec(arg);
    const spec = m && table.specs.get(m[1]!);
    if (!m || !spec) return undefined;
    const key = attributeOf(spec.name);
    values[key] = spec.kind === "list" ? [...values[key]!, m[2]!] : m[2]!;
  }
  return values;
}
