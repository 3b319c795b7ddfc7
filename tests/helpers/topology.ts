/**
 * Test topologies: N "nodes" as network namespaces on an underlay bridge that lives in its own namespace
 * (never the root namespace), built with the same lab code `weft demo` uses (src/lab/lab.ts).
 *
 * ```ts
 * Deno.test({ name: "…", ignore: requireRoot(), async fn() {
 *   await using topo = await createTopology({ nodes: 3 });
 *   topo.nodes[0].netns; topo.nodes[0].ip;        // "wtst-ab12-n01", "192.168.77.11"
 *   await topo.ping(topo.nodes[0].netns, topo.nodes[1].ip);
 *   const pod = await topo.addPod(topo.nodes[0], { cidr: "10.244.1.2/24", gateway: "10.244.1.1" });
 * }});
 * ```
 *
 * Layout: the underlay namespace holds bridge `br0` with the network's first address (`.1`, e.g. for
 * etcd); node i holds `eth0` (a veth whose other end is a port of br0) with the address `.11+i`, `lo` up and
 * `net.ipv4.ip_forward=1`. Every namespace is named `wtst-<run>-…` and removed by `cleanup()`, by
 * `await using`, and — should a test crash before that — by an `unload` handler at process exit.
 *
 * @module
 */
import { Netlink, netnsCreate, netnsList, netnsPath } from "../../ffi/mod.ts";
import {
  addNode,
  createUnderlay,
  deleteNamespaces,
  type LabNode,
  runIn,
  type RunResult,
  setSysctl,
} from "../../src/lab/lab.ts";
import { addIP, formatIP, parseCIDR, parseNet } from "../../src/net/ip.ts";
import { RUN_ID, TEST_PREFIX_ROOT, uniqueIfName, uniqueNetnsName } from "./names.ts";

export type { RunResult } from "../../src/lab/lab.ts";

export { hasBinary, requireRoot, ROOT, skipUnless } from "./skip.ts";

/** One node of a topology. */
export interface TopologyNode extends LabNode {
  /** Namespace name (same as `netns`). */
  name: string;
  /** Position in `Topology.nodes` (0-based). */
  index: number;
}

/** A pod namespace made by {@linkcode Topology.addPod}. */
export interface TopologyPod {
  /** The pod's namespace name. */
  netns: string;
  /** Its address (no prefix). */
  ip: string;
  /** Its interface, `"eth0"`. */
  iface: string;
  /** The veth end left in the node's namespace. */
  hostIface: string;
}

/** Options of {@linkcode createTopology}. */
export interface TopologyOptions {
  /** Number of nodes. */
  nodes: number;
  /** Underlay network; default `192.168.77.0/24`. The underlay takes `.1`, node i `.11+i`. */
  underlay?: string;
  /** MTU of the nodes' eth0; default 1500. */
  mtu?: number;
}

/** A built topology. Dispose it with `await using`, or call `cleanup()` in a `finally`. */
export interface Topology extends AsyncDisposable {
  /** The underlay namespace (bridge br0, gateway address `.1`). */
  underlay: string;
  /** The underlay gateway address (reachable from every node; e.g. for etcd). */
  underlayIP: string;
  /** Nodes. */
  nodes: TopologyNode[];
  /** Runs a command in a namespace (a node, a pod or the underlay) to completion. */
  exec(
    netns: string | { netns: string },
    cmd: string[],
    opts?: { env?: Record<string, string>; stdin?: string },
  ): Promise<RunResult>;
  /**
   * Pings `ip` from a namespace; true when at least one reply came. `source` is ping's `-I`, `intervalS`
   * its `-i` (default 1 s; as root down to 0.002), `timeoutS` its `-W` (per reply).
   */
  ping(
    netns: string | { netns: string },
    ip: string,
    opts?: { count?: number; timeoutS?: number; source?: string; intervalS?: number },
  ): Promise<boolean>;
  /** Writes a sysctl inside a namespace: `sysctl(ns, "net.ipv4.ip_forward", "1")`. */
  sysctl(netns: string | { netns: string }, key: string, value: string): void;
  /**
   * Creates a pod namespace with `eth0` holding `cidr`, joined by a veth to the node's namespace
   * (`hostIface`, up, no address unless `hostCidr`, enslaved to `bridge` when given), lo up, and a default
   * route via `gateway` when given. The caller chooses every address.
   */
  addPod(
    node: { netns: string },
    opts: { name?: string; cidr: string; gateway?: string; bridge?: string; hostCidr?: string; mtu?: number },
  ): Promise<TopologyPod>;
  /** Creates an extra empty namespace that `cleanup()` removes too. */
  addNamespace(tag: string): Promise<string>;
  /** Removes every namespace of the topology (idempotent). */
  cleanup(): Promise<void>;
}

const made = new Set<string>();

// A crashed test must not leave namespaces behind. Only this run's prefix is swept, so concurrent runs
// (another engineer's suite) keep theirs.
globalThis.addEventListener("unload", () => {
  deleteNamespaces(made);
  deleteNamespaces(netnsList().filter((n) => n.startsWith(`${TEST_PREFIX_ROOT}${RUN_ID}-`)));
});

const nsOf = (x: string | { netns: string }) => typeof x === "string" ? x : x.netns;

/** Builds `nodes` nodes on the underlay network (see the module doc for the layout). */
export async function createTopology(opts: TopologyOptions): Promise<Topology> {
  const net = parseNet(opts.underlay ?? "192.168.77.0/24");
  if (net.ip.family !== 4) throw new Error("createTopology: the underlay must be an IPv4 network");
  const prefix = net.prefix;
  const host = (n: number) => formatIP(addIP(net.ip, n));
  const underlay = uniqueNetnsName("ul");
  const mine: string[] = [underlay];
  made.add(underlay);
  const own = (ns: string) => {
    mine.push(ns);
    made.add(ns);
    return ns;
  };
  const cleanup = async () => {
    deleteNamespaces(mine);
    for (const n of mine) made.delete(n);
    await Promise.resolve();
  };
  try {
    createUnderlay(underlay, `${host(1)}/${prefix}`);
    const nodes: TopologyNode[] = [];
    for (let i = 0; i < opts.nodes; i++) {
      const ns = own(uniqueNetnsName(`n${i}`));
      const node = addNode(underlay, ns, `p${RUN_ID}${i}`, `${host(11 + i)}/${prefix}`, opts.mtu ?? 1500);
      nodes.push({ ...node, name: ns, index: i });
    }
    const exec: Topology["exec"] = (ns, cmd, o) => runIn(nsOf(ns), cmd, o ?? {});
    return {
      underlay,
      underlayIP: host(1),
      nodes,
      exec,
      async ping(ns, ip, o = {}) {
        const args = ["ping", "-n", "-q", "-c", String(o.count ?? 1), "-W", String(o.timeoutS ?? 1)];
        if (o.source) args.push("-I", o.source);
        if (o.intervalS !== undefined) args.push("-i", String(o.intervalS));
        const r = await exec(ns, [...args, ip]);
        return r.code === 0;
      },
      sysctl(ns, key, value) {
        setSysctl(nsOf(ns), key, value);
      },
      async addPod(node, p) {
        const pod = own(uniqueNetnsName(p.name ?? "pod"));
        netnsCreate(pod);
        const hostIface = uniqueIfName("vp");
        const { ip } = parseCIDR(p.cidr);
        {
          using nl = Netlink.open({ netns: node.netns });
          const v = nl.linkAddVeth({
            name: hostIface,
            peerName: "eth0",
            peerNetns: netnsPath(pod),
            ...(p.mtu ? { mtu: p.mtu } : {}),
          });
          if (p.bridge) nl.linkSetMaster(v.index, p.bridge);
          if (p.hostCidr) nl.addrReplace(v.index, p.hostCidr);
          nl.linkSetUp(v.index);
        }
        using pl = Netlink.open({ netns: pod });
        pl.linkSetUp("lo");
        pl.addrReplace("eth0", p.cidr);
        pl.linkSetUp("eth0");
        if (p.gateway) {
          const v6 = p.gateway.includes(":");
          pl.routeReplace({ dst: v6 ? "::/0" : "0.0.0.0/0", gateway: p.gateway, dev: "eth0", protocol: 3 });
        }
        await Promise.resolve();
        return { netns: pod, ip: formatIP(ip), iface: "eth0", hostIface };
      },
      addNamespace(tag: string) {
        const ns = own(uniqueNetnsName(tag));
        netnsCreate(ns);
        return Promise.resolve(ns);
      },
      cleanup,
      [Symbol.asyncDispose]: cleanup,
    };
  } catch (err) {
    await cleanup();
    throw err;
  }
}
