/**
 * The vxlan backend, wire-compatible with flannel's: device `flannel.<VNI>` bound to the external
 * interface, local = its IP, learning off, MTU = base − 50, address = the lease's network address /32;
 * per remote lease a permanent neighbour (net address → VtepMAC), an FDB entry (VtepMAC → PublicIP) and
 * an onlink route `subnet via net-address dev flannel.<VNI>`; with DirectRouting, peers on the same L2
 * get a plain route via their PublicIP instead.
 *
 * Dual-stack (EnableIPv6), as flannel: a second device `flannel-v6.<VNI>` with the interface's global
 * IPv6 address as local, MTU = base − 70 (the IPv6 outer header is 20 bytes longer), the lease's IPv6
 * network address /128, its own MAC published as `BackendV6Data.VtepMAC`, and the same three entries per
 * peer from the peer's `PublicIPv6` and `BackendV6Data`. An IPv6-only network has only that device.
 *
 * The VTEP MACs stay stable across restarts: the existing device's MAC, else the one in the previous lease.
 *
 * @module
 */
import { type LinkInfo, type Netlink, setTxChecksumOffload, txChecksumOffload } from "../../../ffi/mod.ts";
import type { Entry } from "../../datapath/entries.ts";
import type { DeviceChange } from "../../datapath/reconciler.ts";
import { log } from "../../log.ts";
import type { ExternalInterface } from "../../net/iface.ts";
import { formatIP, formatNet, type IPNet, netContains, parseCIDR, parseIP } from "../../net/ip.ts";
import { type Lease, vtepMac } from "../../lease/lease.ts";
import { randomMac } from "../../net/mac.ts";
import type { Backend } from "../backend.ts";
import { refreshUnderlay } from "../device_setup.ts";
import { routeViaPeer } from "../route_via.ts";
import type { VxlanBackendOptions } from "./options.ts";

const logger = log("backend", "vxlan");
const DEFAULT_PORT = 8472;

/**
 * Why an existing device cannot be kept as it is, or `""` when it can (flannel's compatibility check:
 * kind, VNI, local address, port, underlying link, GBP). MTU, MAC, address and up/down are not in the
 * list: those are changed in place.
 */
export function vxlanIncompatibility(
  dev: LinkInfo,
  want: { vni: number; local: string; port: number; link: number; gbp: boolean },
): string {
  const v = dev.vxlan;
  if (dev.kind !== "vxlan" || !v) return `kind ${dev.kind || "none"}, not vxlan`;
  if (v.vni !== want.vni) return `VNI ${v.vni}, want ${want.vni}`;
  if (v.local !== want.local) return `local ${v.local ?? "unset"}, want ${want.local}`;
  if ((v.port || DEFAULT_PORT) !== (want.port || DEFAULT_PORT)) return `port ${v.port}, want ${want.port}`;
  if (v.link !== want.link) return `underlying link ${v.link ?? "unset"}, want ${want.link}`;
  if (v.gbp !== want.gbp) return `GBP ${v.gbp}, want ${want.gbp}`;
  return "";
}

/** Which families the backend serves (from the network config). */
export interface VxlanFamilies {
  /** Program the IPv4 overlay (`flannel.<VNI>`); default true. */
  ipv4?: boolean;
  /** Program the IPv6 overlay (`flannel-v6.<VNI>`); needs the interface's IPv6 address. */
  ipv6?: boolean;
  /** BackendV6Data.VtepMAC of this node's previous lease, if any. */
  previousMac6?: string;
}

/** One VTEP device (per family) and what it must look like. */
interface Vtep {
  family: 4 | 6;
  name: string;
  local: string;
  mtu: number;
  mac: string;
  index: number;
}

/** The vxlan backend. */
export class VxlanBackend implements Backend {
  readonly type = "vxlan";
  /** IPv4 device name, `flannel.<VNI>`. */
  readonly name: string;
  /** Pod MTU: the smallest of the devices' (so pods fit through either overlay). */
  readonly mtu: number;
  /** The IPv4 VTEP MAC published in the lease (BackendData). */
  readonly mac: string;
  /** The IPv6 VTEP MAC published in the lease (BackendV6Data), when IPv6 is served. */
  readonly mac6: string | undefined;
  #v4: Vtep | undefined;
  #v6: Vtep | undefined;
  /** The last underlay address change reported (logged once per change). */
  #readdressed = "";

  /**
   * @param nl handle in the node's namespace
   * @param opts vxlan options from the network config
   * @param ext the external interface
   * @param previousMac VtepMAC of this node's previous lease, if any
   * @param families IPv4 and/or IPv6 (IPv4 only by default)
   */
  constructor(
    private readonly nl: Netlink,
    private readonly opts: VxlanBackendOptions,
    private readonly ext: ExternalInterface,
    previousMac?: string,
    families: VxlanFamilies = {},
  ) {
    this.name = `flannel.${opts.vni}`;
    const base = opts.mtu ?? ext.mtu;
    if (families.ipv4 ?? true) {
      this.#v4 = this.#vtep(4, this.name, ext.ifaceIP, base - 50, previousMac);
    }
    if (families.ipv6) {
      if (!ext.ifaceIPv6) {
        throw new Error(
          `EnableIPv6 is set but ${ext.name} has no global IPv6 address for the IPv6 VTEP ` +
            "(add one, or pick another interface with --iface)",
        );
      }
      this.#v6 = this.#vtep(6, `flannel-v6.${opts.vni}`, ext.ifaceIPv6, base - 70, families.previousMac6);
    }
    const vteps = [this.#v4, this.#v6].filter((v): v is Vtep => !!v);
    if (!vteps.length) throw new Error("vxlan: neither IPv4 nor IPv6 is enabled");
    this.mtu = Math.min(...vteps.map((v) => v.mtu));
    this.mac = this.#v4?.mac ?? this.#v6!.mac;
    this.mac6 = this.#v6?.mac;
  }

  #vtep(family: 4 | 6, name: string, local: string, mtu: number, previousMac?: string): Vtep {
    const v: Vtep = { family, name, local, mtu, mac: "", index: 0 };
    const existing = this.nl.linkGet(name);
    v.mac = existing && existing.mac && this.#incompatibility(v, existing) === ""
      ? existing.mac
      : previousMac ?? existing?.mac ?? randomMac();
    return v;
  }

  #incompatibility(v: Vtep, dev: LinkInfo): string {
    return vxlanIncompatibility(dev, {
      vni: this.opts.vni,
      local: v.local,
      port: this.opts.port,
      link: this.ext.index,
      gbp: this.opts.gbp,
    });
  }

  /**
   * `{VNI, VtepMAC}` of the IPv4 device, as flannel publishes it; null on an IPv6-only network, where
   * flannel leaves BackendData out (the IPv6 device's MAC is in BackendV6Data only).
   */
  backendData(): unknown {
    return this.#v4 ? { VNI: this.opts.vni, VtepMAC: this.#v4.mac } : null;
  }

  /** `BackendV6Data` of a dual-stack lease, or undefined when IPv6 is not served. */
  backendV6Data(): unknown {
    return this.mac6 ? { VNI: this.opts.vni, VtepMAC: this.mac6 } : undefined;
  }

  /**
   * Makes the devices match: recreates one when missing or incompatible, and puts back in place what can
   * be changed in place (MTU, MAC, the lease's /32 or /128 address, up). Never touches their neighbour/FDB
   * entries. "created" when any device was created (its peers must be replayed). The devices' addresses
   * follow `lease`.
   */
  ensureDevice(lease: Lease): DeviceChange {
    this.#underlay();
    const changes = [this.#v4, this.#v6].filter((v): v is Vtep => !!v).map((v) => this.#ensure(v, lease));
    return changes.includes("created") ? "created" : changes.includes("repaired") ? "repaired" : "unchanged";
  }

  /**
   * The external interface as it is now: deleted and re-added, it has a new ifindex (the kernel deleted
   * the VXLAN devices bound to the old one; #ensure makes them again on the new one). Re-added with
   * another address, the lease still publishes the old one: said once, clearly. Gone: nothing can be made.
   */
  #underlay(): void {
    const u = refreshUnderlay(this.nl, this.ext);
    if (u.kind === "missing") {
      throw new Error(
        `the external interface ${this.ext.name} is gone: ${this.name} cannot be bound to it until it is back`,
      );
    }
    if (u.kind === "reindexed") {
      logger.warn(
        "{iface} was deleted and re-added (ifindex {from} → {to}): binding the VXLAN devices to it",
        {
          iface: this.ext.name,
          from: u.from,
          to: u.to,
        },
      );
    }
    const key = u.kind === "readdressed" ? `${u.from}>${u.to}` : "";
    if (u.kind === "readdressed" && key !== this.#readdressed) {
      logger.error(
        "{iface} no longer has {from} (it has {to}): this node's lease publishes {from} as its " +
          "{field} and its VTEP sends from it, so peers cannot reach it. Put {from} back, or restart the " +
          "agent to publish the new address (Kubernetes: the node keeps its podCIDR; etcd: the subnet in " +
          "subnet.env is taken again when free)",
        { iface: this.ext.name, from: u.from, to: u.to, field: u.family === 4 ? "PublicIP" : "PublicIPv6" },
      );
    }
    this.#readdressed = key;
  }

  #ensure(v: Vtep, lease: Lease): DeviceChange {
    let dev = this.nl.linkGet(v.name);
    let change: DeviceChange = "unchanged";
    if (dev) {
      const why = this.#incompatibility(v, dev);
      if (why) {
        logger.warn("{name} exists but is incompatible ({why}): recreating it", { name: v.name, why });
        this.nl.linkDelete(dev.index);
        dev = undefined;
      }
    }
    if (!dev) {
      const opts = {
        name: v.name,
        vni: this.opts.vni,
        local: v.local,
        dev: this.ext.index,
        learning: this.opts.learning,
        gbp: this.opts.gbp,
        mtu: v.mtu,
        mac: v.mac,
        ...(this.opts.port ? { port: this.opts.port } : {}),
      };
      dev = this.nl.linkAddVxlan(opts);
      change = "created";
      logger.info("created {name} (VNI {vni}, MAC {mac}, MTU {mtu})", {
        name: v.name,
        vni: this.opts.vni,
        mac: v.mac,
        mtu: v.mtu,
      });
    }
    const repaired = (what: string) => {
      if (change === "unchanged") change = "repaired";
      logger.warn("{name}: {what}", { name: v.name, what });
    };
    v.index = dev.index;
    if (dev.mtu !== v.mtu) {
      if (change !== "created") repaired(`MTU ${dev.mtu} set back to ${v.mtu}`);
      this.nl.linkSetMtu(dev.index, v.mtu);
    }
    // Peers reach this node through the MAC published in the lease: it must not change.
    if (dev.mac && dev.mac !== v.mac) {
      if (change !== "created") repaired(`MAC ${dev.mac} set back to ${v.mac}`);
      this.nl.linkSetMac(dev.index, v.mac);
    }
    const net = v.family === 4 ? lease.subnet : lease.ipv6Subnet;
    if (net) {
      const want = `${formatIP(net.ip)}/${v.family === 4 ? 32 : 128}`;
      // IPv6 devices also carry a kernel-made link-local fe80:: address: not ours to judge.
      const have = this.nl.addrList(dev.index, v.family).filter((a) => a.scope === 0).map((a) => a.cidr);
      if (!have.includes(want) || have.length > 1) {
        if (change === "unchanged") {
          repaired(
            have.length ? `address ${have.join(",")} replaced by ${want}` : `address ${want} restored`,
          );
        }
        for (const a of have) if (a !== want) this.nl.addrDelete(dev.index, a); // a previous lease's address
        // nodad: the /128 is usable at once instead of "tentative" for a second (a VTEP has no
        // duplicate on its own overlay).
        this.nl.addrReplace(dev.index, want, { nodad: v.family === 6 });
      }
    }
    if (!dev.up) {
      if (change === "unchanged") repaired("was down, set up");
      this.nl.linkSetUp(dev.index);
    }
    if (!this.opts.txChecksumOffload && this.#txChecksumOff(v.name) && change === "unchanged") {
      repaired("tx checksum offload was on again: switched off");
    }
    return change;
  }

  /**
   * Switches TX checksum offload off on a VTEP when it is on (Calico's rule; `TxChecksumOffload: true`
   * keeps the kernel's setting); true when it had to. A driver that cannot switch it is told once.
   */
  #txChecksumOff(name: string): boolean {
    try {
      if (txChecksumOffload(name, this.nl.netns) !== true) return false;
      if (setTxChecksumOffload(name, false, this.nl.netns)) return true;
    } catch (err) {
      logger.debug("{name}: tx checksum offload: {error}", { name, error: (err as Error).message });
    }
    return false;
  }

  ownedDevices(): number[] {
    return [this.#v4?.index, this.#v6?.index].filter((i): i is number => !!i);
  }

  #sameL2(ip: string, cidrs: string[]): boolean {
    const addr = parseIP(ip);
    return cidrs.some((c) => netContains(parseCIDR(c).net, addr));
  }

  /**
   * Per family served: neighbour, FDB entry and onlink route for a vxlan peer (a direct route with
   * DirectRouting on one L2).
   */
  entriesFor(lease: Lease): Entry[] | undefined {
    const out: Entry[] = [];
    const { attrs } = lease;
    if (this.#v4?.index && lease.subnet) {
      out.push(
        ...this.#peer(
          lease,
          this.#v4,
          lease.subnet,
          attrs.PublicIP,
          vtepMac(attrs.BackendData),
          this.ext.cidrs,
        ),
      );
    }
    if (this.#v6?.index && lease.ipv6Subnet && attrs.PublicIPv6) {
      const mac = vtepMac(attrs.BackendV6Data);
      out.push(
        ...this.#peer(lease, this.#v6, lease.ipv6Subnet, attrs.PublicIPv6, mac, this.ext.cidrs6 ?? []),
      );
    }
    return out.length ? out : undefined;
  }

  #peer(
    lease: Lease,
    v: Vtep,
    subnet: IPNet,
    publicIP: string,
    mac: string | undefined,
    cidrs: string[],
  ): Entry[] {
    if (this.opts.directRouting && this.#sameL2(publicIP, cidrs)) {
      return [routeViaPeer(subnet, publicIP, this.ext.index)];
    }
    if (!mac) {
      logger.warn("lease {key} has no IPv{family} VtepMAC: skipped", { key: lease.key, family: v.family });
      return [];
    }
    const netAddr = formatIP(subnet.ip);
    return [
      { kind: "neigh", spec: { dev: v.index, ip: netAddr, mac } },
      { kind: "fdb", spec: { dev: v.index, mac, dst: publicIP } },
      { kind: "route", spec: { dst: formatNet(subnet), gateway: netAddr, dev: v.index, onlink: true } },
    ];
  }
}
