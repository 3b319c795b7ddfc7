/**
 * weft's single entry point, shared by the compiled binary and every test.
 *
 * It only picks the mode: kubelet/containerd exec the binary with `CNI_COMMAND` set (CNI plugin mode),
 * everything else is the CLI (`weft agent`, `weft config`, …). Each mode is imported lazily so the CNI
 * path never pays for the CLI framework or the etcd client.
 *
 * @module
 */

if (import.meta.main) {
  if (Deno.env.get("CNI_COMMAND") !== undefined) {
    const { runCni } = await import("./src/cni/main.ts");
    Deno.exit(await runCni());
  } else {
    // The agent needs V8 flags that only apply at process start: `deno run -A main.ts agent` without
    // them re-executes itself with them (src/cli/v8_flags.ts).
    if (Deno.args[0] === "agent") (await import("./src/cli/v8_flags.ts")).ensureV8Flags();
    const { runCli } = await import("./src/cli/main.ts");
    Deno.exit(await runCli(Deno.args));
  }
}
