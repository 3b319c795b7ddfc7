/**
 * weft's single entry point, shared by the compiled binary and every test.
 *
 * It only picks the mode: kubelet/containerd exec the binary with `CNI_COMMAND` set (CNI plugin mode),
 * everything else is the CLI (`weft agent`, `weft config`, …). Each mode is imported lazily, and the
 * CLI's specifier is computed on purpose: Deno builds the graph of every *literal* dynamic import at
 * start-up, and the CLI's graph holds the npm packages (commander, etcd3, logtape), whose
 * resolution cost every CNI call ~15 ms of CPU before it ran a line (measured; BENCHMARKS.md). The
 * compiled binary embeds the CLI through `deno compile --include` (tools/compile.ts).
 *
 * @module
 */

/** The CLI's module, named by a computed specifier (see above). */
export const CLI_MODULE = "./src/cli/main.ts";

if (import.meta.main) {
  if (Deno.env.get("CNI_COMMAND") !== undefined) {
    const { runCni } = await import("./src/cni/main.ts");
    Deno.exit(await runCni());
  } else {
    // The agent needs V8 flags that only apply at process start: `deno run -A main.ts agent` without
    // them re-executes itself with them (src/cli/v8_flags.ts).
    if (Deno.args[0] === "agent") (await import("./src/cli/v8_flags.ts")).ensureV8Flags();
    const cli: string = CLI_MODULE;
    // Typed by shape, not by `typeof import(…)`, so that even `deno info main.ts` shows the CNI graph only.
    const { runCli } = await import(cli) as { runCli(args: string[]): Promise<number> };
    Deno.exit(await runCli(Deno.args));
  }
}
