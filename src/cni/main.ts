/**
 * CNI plugin mode (placeholder until the CNI issue lands): answers VERSION, refuses the rest with the
 * spec's error JSON on stdout.
 *
 * @module
 */

/** Runs one CNI command from the environment and stdin; returns the exit code. */
export function runCni(): Promise<number> {
  const cmd = Deno.env.get("CNI_COMMAND");
  if (cmd === "VERSION") {
    console.log(
      JSON.stringify({
        cniVersion: "1.1.0",
        supportedVersions: ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"],
      }),
    );
    return Promise.resolve(0);
  }
  console.log(
    JSON.stringify({ cniVersion: "1.1.0", code: 4, msg: `CNI_COMMAND ${cmd} is not implemented yet` }),
  );
  return Promise.resolve(1);
}
