/**
 * Builds the single weft executable with `deno compile` for linux x86_64 and aarch64 into `dist/`.
 *
 * `deno compile` needs the `denort` runtime of each target: it downloads it, or takes `DENORT_BIN`
 * (one runtime, so only the host's target is built then). Usage: `deno task compile [--target T]`.
 *
 * @module
 */
import { CLI_MODULE } from "../main.ts";
import { DENO_FLAGS } from "../src/self_command.ts";

const TARGETS = ["x86_64-unknown-linux-gnu", "aarch64-unknown-linux-gnu"] as const;
const HOST = `${Deno.build.arch}-unknown-linux-gnu`;

function targetsToBuild(args: string[]): string[] {
  const i = args.indexOf("--target");
  if (i >= 0 && args[i + 1]) return [args[i + 1]!];
  // With a local runtime only the host's own target can be built.
  return Deno.env.get("DENORT_BIN") ? [HOST] : [...TARGETS];
}

if (import.meta.main) {
  await Deno.mkdir("dist", { recursive: true });
  for (const target of targetsToBuild(Deno.args)) {
    const out = `dist/weft-${target.split("-")[0]}-linux`;
    const cmd = new Deno.Command(Deno.execPath(), {
      args: [
        "compile",
        "-A",
        ...DENO_FLAGS,
        "--target",
        target,
        "--output",
        out,
        // main.ts imports the CLI through a computed specifier (so the CNI path never resolves npm
        // packages); name it here so the binary embeds it.
        "--include",
        CLI_MODULE,
        "main.ts",
      ],
      stdout: "inherit",
      stderr: "inherit",
    });
    const { code } = await cmd.output();
    if (code !== 0) {
      console.error(`compile: deno compile for ${target} failed (exit ${code})`);
      Deno.exit(code);
    }
    console.log(`compile: built ${out}`);
  }
}
