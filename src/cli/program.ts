/**
 * The `weft` command line as one commander program whose subcommands live one per file in this folder
 * (`agent.ts`, `config.ts`, `leases.ts`, …; the doctor in `doctor/`). Each exports a
 * `register<Command>(program)` ({@linkcode Registrar}). main.ts runs it for every command line except a
 * plain `weft agent …`, which it reads from the agent's flag specs alone (see main.ts).
 *
 * @module
 */
import { Command, CommanderError } from "@commander-js/extra-typings";
import { WEFT_VERSION } from "../version.ts";
import { registerAgent } from "./agent.ts";
import { goArgs } from "./flags.ts";
import { registerConfig } from "./config.ts";
import { registerLeases } from "./leases.ts";
import { registerDemo } from "./demo.ts";
import { registerDoctor } from "./doctor/doctor.ts";
import { registerStatus } from "./status.ts";
import { registerPolicy } from "./policy.ts";
import { registerCleanup } from "./cleanup.ts";

/** A function that adds one subcommand (and its options) to the program. */
export type Registrar = (program: Command) => void;

/** Every subcommand, in the order `weft --help` lists them. */
const REGISTRARS: Registrar[] = [
  registerAgent,
  registerConfig,
  registerLeases,
  registerStatus,
  registerDoctor,
  registerPolicy,
  registerDemo,
  registerCleanup,
];

/** Builds the program (exported for tests that inspect flags). */
export function buildProgram(): Command {
  const program = new Command("weft")
    .description("flannel-compatible overlay network for Kubernetes")
    .version(WEFT_VERSION, "--version", "print the version")
    .showHelpAfterError()
    // `weft leases --json` and `weft leases release … --etcd-endpoints …` both have etcd flags: options
    // belong to the command they follow.
    .enablePositionalOptions()
    .exitOverride();
  program.command("version").description("print the version").action(() => console.log(WEFT_VERSION));
  for (const register of REGISTRARS) register(program);
  return program;
}

/**
 * Runs the program on `args` (without the program name, `FLANNELD_*` and the env file already in
 * place) and returns the exit code; commander's own errors (usage, `--help`) end here with theirs.
 */
export async function runProgram(args: string[]): Promise<number> {
  try {
    const program = buildProgram();
    // flanneld's flag syntax (-iface=eth0, -ip-masq=false, -v 2) and FLANNELD_* variables (flags.ts).
    await program.parseAsync(goArgs(program, args), { from: "user" });
    // Commands report "finished, but with failures" (e.g. doctor) through Deno.exitCode.
    return Deno.exitCode;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode;
    throw err;
  }
}
