/**
 * flanneld's `--ip-blackhole-route`: a blackhole route for the node's own pod subnet, so traffic to a
 * pod address nobody holds is dropped here instead of leaving by the default route (flanneld adds it
 * "in case the bridge plugin is not enabled (e.g. Canal)", where pods have /32 routes and nothing else
 * covers the subnet).
 *
 * weft installs it at the highest metric (2^32 − 1), where flanneld uses metric 0: any other route to
 * the subnet — the `cni0` bridge's connected route above all — then always wins, and the blackhole only
 * catches what nothing else routes. At metric 0 the blackhole is either refused (EEXIST, flanneld logs
 * it every resync) when `cni0` holds its address first, or, added first, sits in front of the connected
 * route the kernel adds later (same metric, appended behind it) and drops every packet to the node's
 * pods (measured: `ip route get` of a pod address answers EINVAL).
 *
 * @module
 */
import type { Lease } from "../lease/lease.ts";
import { formatNet } from "../net/ip.ts";
import type { Entry } from "./entries.ts";

/** The metric of a route that must never take traffic from another route to the same destination. */
export const LAST_RESORT_METRIC = 0xffffffff;

/** The blackhole routes of `lease`'s subnets (IPv4 and, dual-stack, IPv6), for the reconciler. */
export function blackholeRoutes(lease: Pick<Lease, "subnet" | "ipv6Subnet">): Entry[] {
  return [lease.subnet, lease.ipv6Subnet].filter((n) => !!n).map((n) => ({
    kind: "route",
    spec: { dst: formatNet(n!), type: "blackhole", metric: LAST_RESORT_METRIC, dev: 0 },
  }));
}

/**
 * What the reconciler keeps for the node itself: with `ipBlackholeRoute`, the blackhole routes of the
 * current lease (a changed lease's old ones are then pruned), else none.
 */
export function blackholes(
  opts: { ipBlackholeRoute: boolean },
  lease: () => Pick<Lease, "subnet" | "ipv6Subnet"> | undefined,
): () => Entry[] {
  return () => {
    const l = opts.ipBlackholeRoute ? lease() : undefined;
    return l ? blackholeRoutes(l) : [];
  };
}
