/**
 * Which subnets a network config hands out, and flannel's choice among the free ones: the previous
 * subnet when free, else a random one of the first 100 free subnets from SubnetMin (many nodes starting
 * at once rarely collide). Pure functions over the config and the set of taken subnets.
 *
 * @module
 */
import type { NetworkConfig } from "../../config/net_conf.ts";
import { addIP, formatIP, formatNet, type IPNet, netContainsNet, netSize } from "../../net/ip.ts";
import type { Lease } from "../lease.ts";

/** Thrown when every subnet of the network is taken. */
export class OutOfSubnetsError extends Error {
  /** Creates the error for `network` (text), naming the range that was searched. */
  constructor(readonly network: string, range = "between SubnetMin and SubnetMax") {
    super(`out of subnets: every subnet of ${network} ${range} is leased or reserved`);
    this.name = "OutOfSubnetsError";
  }
}

/** The range one address family hands out. */
export interface FamilyRange {
  /** The family. */
  family: 4 | 6;
  /** The cluster network. */
  network: IPNet;
  /** SubnetLen. */
  len: number;
  /** SubnetMin. */
  min: IPNet;
  /** SubnetMax. */
  max: IPNet;
}

/** The ranges of the families `cfg` enables. */
export function subnetRanges(cfg: NetworkConfig): { v4?: FamilyRange; v6?: FamilyRange } {
  const out: { v4?: FamilyRange; v6?: FamilyRange } = {};
  if (cfg.enableIPv4 && cfg.network && cfg.subnetMin && cfg.subnetMax) {
    out.v4 = { family: 4, network: cfg.network, len: cfg.subnetLen, min: cfg.subnetMin, max: cfg.subnetMax };
  }
  if (cfg.enableIPv6 && cfg.ipv6Network && cfg.ipv6SubnetMin && cfg.ipv6SubnetMax) {
    out.v6 = {
      family: 6,
      network: cfg.ipv6Network,
      len: cfg.ipv6SubnetLen,
      min: cfg.ipv6SubnetMin,
      max: cfg.ipv6SubnetMax,
    };
  }
  return out;
}

function inRange(r: FamilyRange, n: IPNet): boolean {
  return n.prefix === r.len && netContainsNet(r.network, n) && n.ip.value >= r.min.ip.value &&
    n.ip.value <= r.max.ip.value;
}

/** True when a lease's subnets are what `cfg` would hand out now (each enabled family, no other). */
export function leaseFitsConfig(cfg: NetworkConfig, l: Pick<Lease, "subnet" | "ipv6Subnet">): boolean {
  const r = subnetRanges(cfg);
  if (!r.v4 && !r.v6) return false;
  const ok4 = r.v4 ? !!l.subnet && inRange(r.v4, l.subnet) : !l.subnet;
  const ok6 = r.v6 ? !!l.ipv6Subnet && inRange(r.v6, l.ipv6Subnet) : !l.ipv6Subnet;
  return ok4 && ok6;
}

/** Up to `limit` free subnets of `r` in address order, from SubnetMin. */
export function freeSubnets(r: FamilyRange, taken: Set<string>, limit: number): IPNet[] {
  const out: IPNet[] = [];
  const size = netSize({ ip: r.network.ip, prefix: r.len });
  for (let ip = r.min.ip; ip.value <= r.max.ip.value && out.length < limit;) {
    const n = { ip, prefix: r.len };
    if (!taken.has(formatNet(n))) out.push(n);
    if (ip.value + size > r.max.ip.value) break; // also keeps addIP inside the address space
    ip = addIP(ip, size);
  }
  return out;
}

/** "out of subnets" for `r`, naming the range searched. */
export function outOfSubnets(r: FamilyRange): OutOfSubnetsError {
  const p = r.family === 4 ? "" : "IPv6";
  return new OutOfSubnetsError(
    formatNet(r.network),
    `between ${p}SubnetMin ${formatIP(r.min.ip)} and ${p}SubnetMax ${formatIP(r.max.ip)} (/${r.len})`,
  );
}

/** Picks a subnet of one family: the previous one if free, else random among the first 100 free. */
export function pickSubnet(r: FamilyRange, taken: Set<string>, previous?: IPNet): IPNet {
  if (previous && inRange(r, previous) && !taken.has(formatNet(previous))) return previous;
  const free = freeSubnets(r, taken, 100);
  if (!free.length) throw outOfSubnets(r);
  // Random, not the first: many nodes starting at once rarely collide (flannel does the same).
  return free[Math.floor(Math.random() * free.length)]!;
}

/** The subnets of one family that `leases` hold, as `formatNet` text. */
export function takenSubnets(leases: Pick<Lease, "subnet" | "ipv6Subnet">[], family: 4 | 6): Set<string> {
  const out = new Set<string>();
  for (const l of leases) {
    const n = family === 4 ? l.subnet : l.ipv6Subnet;
    if (n) out.add(formatNet(n));
  }
  return out;
}
