/**
 * Test topologies: N "nodes" as network namespaces on an underlay bridge that lives in its own namespace
 * (never the root namespace), built with the same lab code `weft demo` uses (src/cli/lab.ts).
 *
 * ```ts
 * await using topo = await createTopology({ nodes: 3 });
 * topo.nodes[0].netns; topo.nodes[0].ip;  // "192.168.77.11"
 * await topo.ping(topo.nodes[0].netns, topo.nodes[1].ip);
 * ```
 *
 * Every namespace is named `wtst-<run>-…` and removed by `cleanup()` (also at process exit).
 *
 * @module
 */
import { netnsList } from "../../ffi/mod.ts";
import {
  addNode,
  createUnderlay,
  deleteNamespaces,
  type LabNode,
  runIn,
  type RunResult,
} from "../../src/cli/lab.ts";
import { RUN_ID, TEST_PREFIX_ROOT, uniqueNetnsName } from "./names.ts";

/** True when the tests may build namespaces. */
export const ROOT = Deno.uid() === 0;

/** A built topology. */
export interface Topology extends AsyncDisposable {
  /** The underlay namespace (bridge br0, gateway address `.1`). */
  underlay: string;
  /** The underlay gateway address (reachable from every node; e.g. for etcd). */
  underlayIP: string;
  /** Nodes. */
  nodes: LabNode[];
  /** Runs a command in a namespace. */
  exec(
    netns: string,
    cmd: string[],
    opts?: { env?: Record<string, string>; stdin?: string },
  ): Promise<RunResult>;
  /** Pings `ip` from `netns`; true when a reply came. */
  ping(
    netns: string,
    ip: string,
    opts?: { count?: number; timeoutS?: number; source?: string },
  ): Promise<boolean>;
  /** Creates an extra namespace that `cleanup()` removes too. */
  addNamespace(tag: string): Promise<string>;
  /** Removes every namespace of the topology (idempotent). */
  cleanup(): Promise<void>;
}

const made = new Set<string>();

// A crashed test must not leave namespaces behind.
globalThis.addEventListener("unload", () => {
  deleteNamespaces(made);
  deleteNamespaces(netnsList().filter((n) => n.startsWith(`${TEST_PREFIX_ROOT}${RUN_ID}-`)));
});

/** Builds `nodes` nodes on `192.168.77.0/24` (node i at .11+i, the underlay at .1). */
export async function createTopology(opts: { nodes: number; mtu?: number }): Promise<Topology> {
  const underlay = uniqueNetnsName("ul");
  const mine: string[] = [underlay];
  made.add(underlay);
  const cleanup = async () => {
    deleteNamespaces(mine);
    for (const n of mine) made.delete(n);
    await Promise.resolve();
  };
  try {
    createUnderlay(underlay, "192.168.77.1/24");
    const nodes: LabNode[] = [];
    for (let i = 0; i < opts.nodes; i++) {
      const ns = uniqueNetnsName(`n${i}`);
      mine.push(ns);
      made.add(ns);
      nodes.push(addNode(underlay, ns, `p${RUN_ID}${i}`, `192.168.77.${11 + i}/24`, opts.mtu ?? 1500));
    }
    return {
      underlay,
      underlayIP: "192.168.77.1",
      nodes,
      exec: (netns, cmd, o) => runIn(netns, cmd, o ?? {}),
      async ping(netns, ip, o = {}) {
        const args = ["ping", "-c", String(o.count ?? 1), "-W", String(o.timeoutS ?? 1)];
        if (o.source) args.push("-I", o.source);
        const r = await runIn(netns, [...args, ip]);
        return r.code === 0;
      },
      addNamespace(tag: string) {
        const ns = uniqueNetnsName(tag);
        mine.push(ns);
        made.add(ns);
        return import("../../ffi/mod.ts").then((m) => {
          m.netnsCreate(ns);
          return ns;
        });
      },
      cleanup,
      [Symbol.asyncDispose]: cleanup,
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
