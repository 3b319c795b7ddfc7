/**
 * The one place flags are read the way flanneld reads them: Go's boolean syntax
 * ({@linkcode parseBool}, strconv.ParseBool) and the `FLANNELD_<FLAG>` variable of every flag
 * ({@linkcode envName}, coreos/pkg/flagutil's rule: dashes become underscores, upper case). The agent's,
 * the etcd, Kubernetes and policy flags, and every command that shares them, use these.
 *
 * @module
 */
import { Option } from "@commander-js/extra-typings";
import { CliError } from "./errors.ts";

const TRUE = ["1", "t", "T", "true", "TRUE", "True"];
// "" as false is what the three copies this replaces did (an empty FLANNELD_* variable through commander).
const FALSE = ["0", "f", "F", "false", "FALSE", "False", ""];

/**
 * Go's strconv.ParseBool, which flanneld's boolean flags and `FLANNELD_*` variables go through:
 * `1 t T true TRUE True` / `0 f F false FALSE False`; anything else is a {@linkcode CliError} (exit 2)
 * naming `flag`. A flag given without a value (`true` from commander) is true; absent is false.
 */
export function parseBool(flag: string, v: string | boolean | undefined): boolean {
  if (v === undefined || typeof v === "boolean") return !!v;
  if (TRUE.includes(v)) return true;
  if (FALSE.includes(v)) return false;
  throw new CliError(`${flag} ${v}: must be true or false`, 2);
}

/** The environment variable flanneld reads for `--flag-name` (or `flag-name`): `FLANNELD_FLAG_NAME`. */
export function envName(flag: string): string {
  return `FLANNELD_${flag.replace(/^-+/, "").replace(/-/g, "_").toUpperCase()}`;
}

/**
 * The value of `flag`'s `FLANNELD_*` variable, or undefined when it is unset or empty (flagutil skips
 * empty variables, so an empty one means "not set", never "false" or "").
 */
export function envValue(
  flag: string,
  env: (name: string) => string | undefined = (k) => Deno.env.get(k),
): string | undefined {
  const v = env(envName(flag));
  return v === undefined || v === "" ? undefined : v;
}

/**
 * A commander option for `flags` (e.g. `"--etcd-prefix <prefix>"`) that reads its `FLANNELD_*` variable
 * when the flag is not given; `--help` names the variable but never prints its value (passwords). An
 * empty default reads "none" in `--help`.
 */
export function flagOption<F extends string>(flags: F, description: string, dflt: string) {
  const long = flags.split(" ")[0]!;
  return new Option(flags, description).env(envName(long)).default(dflt, dflt === "" ? "none" : undefined);
}
