/**
 * The `weft` command line's entry: the env file, then the command.
 *
 * Every command line goes to the commander program (program.ts) except the one a node runs all day:
 * `weft agent` with flags only. That one is read from the agent's flag specs alone (src/cli/agent.ts
 * `runAgentWithoutCommander`: the same values commander would hand over) and never loads commander,
 * whose CommonJS pulls in Node's compat layer: ~5 MB of every agent's resident memory
 * (bench/kube_scale.ts, BENCHMARKS.md). Anything else in an agent command line (`--help`, an unknown
 * flag, a stray argument) takes the program, which answers it as it always did.
 *
 * @module
 */
import { CliError } from "./errors.ts";
import { loadEnvFileFor } from "./env_file.ts";

/** Runs the CLI on `args` (without the program name) and returns the exit code. */
export async function runCli(args: string[]): Promise<number> {
  try {
    // The agent's env file (/etc/default/weft) for the commands that read its flags (env_file.ts).
    loadEnvFileFor(args);
    if (args[0] === "agent" && await (await import("./agent.ts")).runAgentWithoutCommander(args.slice(1))) {
      return Deno.exitCode;
    }
    const { runProgram } = await import("./program.ts");
    return await runProgram(args);
  } catch (err) {
    if (err instanceof CliError) {
      console.error(`weft: ${err.message}`);
      return err.code;
    }
    console.error(`weft: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}
