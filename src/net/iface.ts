/**
 * External interface selection, like flanneld: `--iface` (names or IPs, first match wins),
 * `--iface-regex`, else the interface of the default route; `--public-ip` overrides the address
 * published in the lease. The interface's first global IPv6 address (or `--public-ipv6`) is what a
 * dual-stack network uses for its IPv6 VTEP.
 *
 * @module
 */
import type { Netlink } from "../../ffi/mod.ts";

/** The chosen external interface. */
export interface ExternalInterface {
  /** ifindex. */
  index: number;
  /** Name. */
  name: string;
  /** MTU. */
  mtu: number;
  /** The interface's own IPv4 address (the VTEP source). */
  ifaceIP: string;
  /** Address published in the lease (`--public-ip` or `ifaceIP`). */
  publicIP: string;
  /** The interface's IPv4 networks (for "same L2" checks). */
  cidrs: string[];
  /** The interface's first global IPv6 address (the IPv6 VTEP source), if it has one. */
  ifaceIPv6?: string;
  /** IPv6 address published in the lease (`--public-ipv6` or `ifaceIPv6`). */
  publicIPv6?: string;
  /** The interface's global IPv6 networks. */
  cidrs6?: string[];
}

/** Options for {@linkcode selectInterface}. */
export interface IfaceOptions {
  /** `--iface` values (names or IPs). */
  iface: string[];
  /** `--iface-regex` values. */
  ifaceRegex: string[];
  /** `--iface-can-reach`: the interface the kernel routes this address through. */
  ifaceCanReach?: string;
  /** `--public-ip`. */
  publicIP?: string;
  /** `--public-ipv6`. */
  publicIPv6?: string;
}

/** Picks the external interface; throws with a clear message when none fits. */
export function selectInterface(nl: Netlink, opts: IfaceOptions): ExternalInterface {
  const links = nl.linkList();
  const addrs = nl.addrList(undefined, 4).filter((a) => a.scope === 0);
  const v4 = (index: number) => addrs.filter((a) => a.index === index);
  // Global IPv6 addresses only: link-local ones (scope 253) cannot be a VTEP other nodes reach.
  const addrs6 = nl.addrList(undefined, 6).filter((a) => a.scope === 0);
  const make = (index: number): ExternalInterface | undefined => {
    const link = links.find((l) => l.index === index);
    const a = v4(index);
    if (!link || !a.length) return undefined;
    const ifaceIP = a[0]!.cidr.split("/")[0]!;
    const a6 = addrs6.filter((x) => x.index === index);
    const ifaceIPv6 = a6[0]?.cidr.split("/")[0];
    const publicIPv6 = opts.publicIPv6 ?? ifaceIPv6;
    return {
      index,
      name: link.name,
      mtu: link.mtu,
      ifaceIP,
      publicIP: opts.publicIP ?? ifaceIP,
      cidrs: a.map((x) => x.cidr),
      ...(ifaceIPv6 ? { ifaceIPv6, cidrs6: a6.map((x) => x.cidr) } : {}),
      ...(publicIPv6 ? { publicIPv6 } : {}),
    };
  };
  for (const want of opts.iface) {
    const byName = links.find((l) => l.name === want);
    const byIP = addrs.find((a) => a.cidr.split("/")[0] === want);
    const found = make(byName?.index ?? byIP?.index ?? -1);
    if (found) {
      // With --iface IP, that IP is the one to use on a multi-address interface.
      if (byIP && !byName) return { ...found, ifaceIP: want, publicIP: opts.publicIP ?? want };
      return found;
    }
  }
  if (opts.iface.length) {
    throw new Error(`--iface ${opts.iface.join(",")}: no such interface with an IPv4 address`);
  }
  for (const re of opts.ifaceRegex) {
    const rx = new RegExp(re);
    for (const l of links) {
      const found = (rx.test(l.name) || v4(l.index).some((a) => rx.test(a.cidr.split("/")[0]!)))
        ? make(l.index)
        : undefined;
      if (found) return found;
    }
  }
  if (opts.ifaceRegex.length) {
    throw new Error(`--iface-regex ${opts.ifaceRegex.join(",")}: no interface matches`);
  }
  const def = nl.routeList({ family: 4 }).find((r) => r.dst === "0.0.0.0/0" && r.index);
  const found = def ? make(def.index) : undefined;
  if (!found) {
    throw new Error("no default route: name the external interface with --iface (or --iface-regex)");
  }
  return found;
}
