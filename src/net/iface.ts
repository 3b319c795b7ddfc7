/**
 * External interface selection, in flanneld's order of precedence (v0.28.9 main.go and
 * pkg/ipmatch.LookupExtIface):
 *
 * 1. When `--iface`, `--iface-regex` and `--iface-can-reach` are all unset: the interface holding
 *    `--public-ip`, if one does (flanneld: always; it exits when none does — weft then goes on to 2,
 *    so a node behind NAT can publish an address it does not hold), else the default route's.
 * 2. Otherwise, the first that finds one: each `--iface` in order (a name, or an IP address one of the
 *    interfaces holds); each `--iface-regex` in order (first against every interface's IPv4 addresses,
 *    then against the names); `--iface-can-reach` (the interface and source address the kernel's route
 *    lookup picks, as `ip route get <ip>` prints them). None found is an error.
 *
 * `--public-ip` overrides the address published in the lease. The interface's first global IPv6
 * address (or `--public-ipv6`) is what a dual-stack network uses for its IPv6 VTEP.
 *
 * An IPv6-only network (`EnableIPv4: false`) looks for IPv6 addresses and the IPv6 default route
 * instead, as flanneld's `LookupExtIface` does for its ipv6 stack: the node needs no IPv4 address.
 *
 * @module
 */
import type { AddrInfo, LinkInfo, Netlink } from "../../ffi/mod.ts";

/** The chosen external interface. */
export interface ExternalInterface {
  /** ifindex. */
  index: number;
  /** Name. */
  name: string;
  /** MTU. */
  mtu: number;
  /** The interface's own IPv4 address (the VTEP source); `""` when it has none (IPv6-only). */
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

const addressOf = (a: AddrInfo) => a.cidr.split("/")[0]!;

/** The address family interfaces are chosen by: 4, or 6 for an IPv6-only network. */
export type IfaceFamily = 4 | 6;

/** The node's interfaces and global addresses, read once. */
class Interfaces {
  readonly links: LinkInfo[];
  readonly #v4: AddrInfo[];
  readonly #v6: AddrInfo[];

  constructor(nl: Netlink, private readonly opts: IfaceOptions, readonly family: IfaceFamily) {
    this.links = nl.linkList();
    // Global addresses only: a link-local one (scope 253) cannot be a VTEP other nodes reach.
    this.#v4 = nl.addrList(undefined, 4).filter((a) => a.scope === 0);
    this.#v6 = nl.addrList(undefined, 6).filter((a) => a.scope === 0);
  }

  /** The addresses of `index` in the family interfaces are chosen by. */
  v4(index: number): AddrInfo[] {
    return (this.family === 4 ? this.#v4 : this.#v6).filter((a) => a.index === index);
  }

  /** The link holding address `ip` (of the family interfaces are chosen by). */
  holding(ip: string): number | undefined {
    return (this.family === 4 ? this.#v4 : this.#v6).find((a) => addressOf(a) === ip)?.index;
  }

  /** The interface `index` with `ip` (default: its first address of the family) as its own address. */
  make(index: number | undefined, ip?: string): ExternalInterface | undefined {
    const link = this.links.find((l) => l.index === index);
    if (!link || !this.v4(link.index).length) return undefined;
    const a = this.#v4.filter((x) => x.index === link.index);
    const a6 = this.#v6.filter((x) => x.index === link.index);
    const ifaceIP = this.family === 4 ? ip ?? addressOf(a[0]!) : a[0] ? addressOf(a[0]) : "";
    const ifaceIPv6 = this.family === 6 ? ip ?? addressOf(a6[0]!) : a6[0] && addressOf(a6[0]);
    const publicIPv6 = this.opts.publicIPv6 ?? ifaceIPv6;
    return {
      index: link.index,
      name: link.name,
      mtu: link.mtu,
      ifaceIP,
      publicIP: this.opts.publicIP ?? ifaceIP,
      cidrs: a.map((x) => x.cidr),
      ...(ifaceIPv6 ? { ifaceIPv6, cidrs6: a6.map((x) => x.cidr) } : {}),
      ...(publicIPv6 ? { publicIPv6 } : {}),
    };
  }

  /** `--iface`: a name, or an address one of the interfaces holds (then that address is used). */
  byIface(want: string): ExternalInterface | undefined {
    const byName = this.links.find((l) => l.name === want);
    if (byName) return this.make(byName.index);
    const holder = this.holding(want);
    return holder === undefined ? undefined : this.make(holder, want);
  }

  /** `--iface-regex`: the first interface with a matching IPv4 address (that address), else by name. */
  byRegex(re: string): ExternalInterface | undefined {
    const rx = new RegExp(re);
    for (const l of this.links) {
      const hit = this.v4(l.index).find((a) => rx.test(addressOf(a)));
      const found = hit && this.make(l.index, addressOf(hit));
      if (found) return found;
    }
    for (const l of this.links) {
      const found = rx.test(l.name) ? this.make(l.index) : undefined;
      if (found) return found;
    }
    return undefined;
  }
}

/** `--iface-can-reach`: the interface and source address of the kernel's route to `target`. */
function byRoute(nl: Netlink, ifs: Interfaces, target: string): ExternalInterface {
  let r;
  try {
    r = nl.routeGet(target);
  } catch (err) {
    throw new Error(`--iface-can-reach ${target}: no route to it (${(err as Error).message})`);
  }
  const found = ifs.make(r.index, r.src);
  if (!found) {
    const name = ifs.links.find((l) => l.index === r.index)?.name ?? `ifindex ${r.index}`;
    throw new Error(
      `--iface-can-reach ${target}: the route to it goes through ${name}, which has no IPv${ifs.family} address`,
    );
  }
  return found;
}

/**
 * Picks the external interface; throws with a clear message when none fits. `family` 6 (an IPv6-only
 * network) chooses by IPv6 addresses and the IPv6 default route, `--public-ipv6` standing for
 * `--public-ip`.
 */
export function selectInterface(nl: Netlink, opts: IfaceOptions, family: IfaceFamily = 4): ExternalInterface {
  const ifs = new Interfaces(nl, opts, family);
  if (!opts.iface.length && !opts.ifaceRegex.length && !opts.ifaceCanReach) {
    const pub = family === 4 ? opts.publicIP : opts.publicIPv6;
    const holder = pub === undefined ? undefined : ifs.make(ifs.holding(pub), pub);
    if (holder) return holder;
    const any = family === 4 ? "0.0.0.0/0" : "::/0";
    const def = nl.routeList({ family }).find((r) => r.dst === any && r.index);
    const found = def ? ifs.make(def.index) : undefined;
    if (!found) {
      throw new Error(
        "no default route: name the external interface with --iface (or --iface-regex, --iface-can-reach)",
      );
    }
    return found;
  }
  for (const want of opts.iface) {
    const found = ifs.byIface(want);
    if (found) return found;
  }
  for (const re of opts.ifaceRegex) {
    const found = ifs.byRegex(re);
    if (found) return found;
  }
  if (opts.ifaceCanReach) return byRoute(nl, ifs, opts.ifaceCanReach);
  const tried = [
    ...opts.iface.map((i) => `--iface ${i}: no such interface with an IPv${family} address`),
    ...(opts.ifaceRegex.length ? [`--iface-regex ${opts.ifaceRegex.join(",")}: no interface matches`] : []),
  ];
  throw new Error(tried.join("; "));
}
