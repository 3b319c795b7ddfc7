/**
 * `weft demo`: a local multi-node weft cluster in network namespaces.
 *
 * @module
 */
import type { Command } from "@commander-js/extra-typings";

/** Registers `weft demo up|down`. */
export function registerDemo(program: Command): void {
  const demo = program.command("demo").description("a local multi-node weft cluster in namespaces");
  demo.command("up").description("build the demo cluster").action(() => {
    console.error("weft demo: not yet available in this build (the demo lands with the agent and CNI modes)");
    Deno.exit(2);
  });
  demo.command("down").description("remove the demo cluster").action(() => {
    console.error("weft demo: not yet available in this build");
    Deno.exit(2);
  });
}
