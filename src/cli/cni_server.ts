/**
 * The agent's side of the thin CNI call (src/cni/agent_server.ts), started by `weft agent` beside its
 * subnet.env, where the plugin looks for it. Optional by nature: when it cannot start, the agent logs
 * why and runs on, and the plugin runs every call itself, as it would without an agent.
 *
 * @module
 */
import { log } from "../log.ts";
import type { CniServerOptions } from "../cni/agent_server.ts";

/** A started server, or nothing to stop. */
export interface CniServerHandle {
  /** Stops serving and removes the socket. */
  close(): Promise<void>;
}

/**
 * Starts serving CNI calls (and the request kinds in `opts.kinds`) beside `subnetFile`; never throws.
 */
export async function startCniServer(
  subnetFile: string,
  opts: CniServerOptions = {},
): Promise<CniServerHandle> {
  const logger = log("cni-server");
  try {
    const { agentSocketBeside } = await import("../cni/agent_protocol.ts");
    const { serveCni } = await import("../cni/agent_server.ts");
    const path = agentSocketBeside(subnetFile);
    Deno.mkdirSync(path.slice(0, path.lastIndexOf("/")) || "/", { recursive: true });
    const server = serveCni(path, opts);
    logger.info("serving CNI calls on {path}", { path });
    return {
      close: async () => {
        await server.close();
        logger.info(
          "CNI calls: {served} served, {fallback} sent back to the plugin, {unsupported} of kinds not served, " +
            "{errors} failed connections; requests by plugin protocol version: {versions}",
          { ...server.counts, versions: JSON.stringify(server.counts.byVersion) },
        );
      },
    };
  } catch (err) {
    logger.warn("not serving CNI calls (the plugin runs them itself): {error}", {
      error: (err as Error).message,
    });
    return { close: () => Promise.resolve() };
  }
}
