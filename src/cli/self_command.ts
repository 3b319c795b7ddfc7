/**
 * How to run this same weft program again as a child (an agent, a CNI call): the compiled binary runs
 * itself; under `deno run` the child is `deno run -A <main.ts>`. Either way the child enters through
 * main.ts, the entry point the binary has.
 *
 * @module
 */

/** Returns `[executable, ...leading args]` for running weft with further arguments. */
export function selfCommand(): [string, ...string[]] {
  const exe = Deno.execPath();
  const main = new URL("../../main.ts", import.meta.url);
  // A compiled binary's modules live inside it; its execPath is weft itself.
  const compiled = !main.protocol.startsWith("file") || !/\/deno$/.test(exe);
  if (compiled) return [exe];
  return [exe, "run", "-A", "--no-check", main.pathname];
}
