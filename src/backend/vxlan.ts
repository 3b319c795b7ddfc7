/**
 * The vxlan backend, wire-compatible with flannel's: device `flannel.<VNI>` bound to the external
 * interface, local = its IP, learning off, MTU = base − 50, address = the lease's network address /32;
 * per remote lease a permanent neighbour (net address → VtepMAC), an FDB entry (VtepMAC → PublicIP) and
 * an onlink route `subnet via net-address dev flannel.<VNI>`; with DirectRouting, peers on the same L2
 * get a plain route via their PublicIP instead.
 *
 * The VTEP MAC stays stable across restarts: the existing device's MAC, else the one in the previous lease.
 *
 * @module
 */
import type { LinkInfo, Netlink } from "../../ffi/mod.ts";
import type { VxlanBackendOptions } from "../config/net_conf.ts";
import type { Entry } from "../datapath/entries.ts";
import type { DeviceChange } from "../datapath/reconciler.ts";
import { log } from "../log.ts";
import { formatIP, formatNet, netContains, parseCIDR, parseIP } from "../net/ip.ts";
import type { Lease } from "../subnet/lease.ts";
import type { ExternalInterface } from "../agent/iface.ts";
import { type Backend, randomMac } from "./backend.ts";

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

/** The vxlan backend. */
export class VxlanBackend implements Backend {
  readonly type = "vxlan";
  /** Device name, `flannel.<VNI>`. */
  readonly name: string;
  readonly mtu: number;
  /** The VTEP MAC published in the lease. */
  readonly mac: string;
  #index = 0;
  #lease: Lease | undefined;
  #ignored = new Set<string>();

  /**
   * @param nl handle in the node's namespace
   * @param opts vxlan options from the network config
   * @param ext the external interface
   * @param previousMac VtepMAC of this node's previous lease, if any
   */
  constructor(
    private readonly nl: Netlink,
    private readonly opts: VxlanBackendOptions,
    private readonly ext: ExternalInterface,
    previousMac?: string,
  ) {
    this.name = `flannel.${opts.vni}`;
    this.mtu = (opts.mtu ?? ext.mtu) - 50;
    const existing = nl.linkGet(this.name);
    this.mac = existing && existing.mac && this.#compatible(existing)
      ? existing.mac
      : previousMac ?? existing?.mac ?? randomMac();
  }

  #compatible(dev: LinkInfo): boolean {
    return this.#incompatibility(dev) === "";
  }

  #incompatibility(dev: LinkInfo): string {
    return vxlanIncompatibility(dev, {
      vni: this.opts.vni,
      local: this.ext.ifaceIP,
      port: this.opts.port,
      link: this.ext.index,
      gbp: this.opts.gbp,
    });
  }

  /** `{VNI, VtepMAC}` as flannel publishes it. */
  backendData(): unknown {
    return { VNI: this.opts.vni, VtepMAC: this.mac };
  }

  /** Binds the device address to the node's lease. */
  setLease(lease: Lease): void {
    this.#lease = lease;
  }

  /**
   * Makes the device match: recreates it when missing or incompatible, and puts back in place what can be
   * changed in place (MTU, MAC, the lease's /32 address, up). Never touches its neighbour/FDB entries.
   */
  ensureDevice(): DeviceChange {
    let dev = this.nl.linkGet(this.name);
    let change: DeviceChange = "unchanged";
    if (dev) {
      const why = this.#incompatibility(dev);
      if (why) {
        logger.warn("{name} exists but is incompatible ({why}): recreating it", { name: this.name, why });
        this.nl.linkDelete(dev.index);
        dev = undefined;
      }
    }
    if (!dev) {
      const opts = {
        name: this.name,
        vni: this.opts.vni,
        local: this.ext.ifaceIP,
        dev: this.ext.index,
        learning: this.opts.learning,
        gbp: this.opts.gbp,
        mtu: this.mtu,
        mac: this.mac,
        ...(this.opts.port ? { port: this.opts.port } : {}),
      };
      dev = this.nl.linkAddVxlan(opts);
      change = "created";
      logger.info("created {name} (VNI {vni}, MAC {mac}, MTU {mtu})", {
        name: this.name,
        vni: this.opts.vni,
        mac: this.mac,
        mtu: this.mtu,
      });
    }
    const repaired = (what: string) => {
      if (change === "unchanged") change = "repaired";
      logger.warn("{name}: {what}", { name: this.name, what });
    };
    this.#index = dev.index;
    if (dev.mtu !== this.mtu) {
      if (change !== "created") repaired(`MTU ${dev.mtu} set back to ${this.mtu}`);
      this.nl.linkSetMtu(dev.index, this.mtu);
    }
    // Peers reach this node through the MAC published in the lease: it must not change.
    if (dev.mac && dev.mac !== this.mac) {
      if (change !== "created") repaired(`MAC ${dev.mac} set back to ${this.mac}`);
      this.nl.linkSetMac(dev.index, this.mac);
    }
    if (this.#lease?.subnet) {
      const want = `${formatIP(this.#lease.subnet.ip)}/32`;
      const have = this.nl.addrList(dev.index, 4).map((a) => a.cidr);
      if (!have.includes(want) || have.length > 1) {
        if (change === "unchanged") {
          repaired(
            have.length ? `address ${have.join(",")} replaced by ${want}` : `address ${want} restored`,
          );
        }
        for (const a of have) if (a !== want) this.nl.addrDelete(dev.index, a); // a previous lease's address
        this.nl.addrReplace(dev.index, want);
      }
    }
    if (!dev.up) {
      if (change === "unchanged") repaired("was down, set up");
      this.nl.linkSetUp(dev.index);
    }
    return change;
  }

  ownedDevices(): number[] {
    return this.#index ? [this.#index] : [];
  }

  #sameL2(ip: string): boolean {
    const addr = parseIP(ip);
    return this.ext.cidrs.some((c) => netContains(parseCIDR(c).net, addr));
  }

  /** Neighbour, FDB entry and onlink route for a vxlan peer (a direct route with DirectRouting on one L2). */
  entriesFor(lease: Lease): Entry[] | undefined {
    if (lease.attrs.BackendType !== "vxlan") {
      if (!this.#ignored.has(lease.key)) {
        this.#ignored.add(lease.key);
        logger.info("ignoring lease {key}: backend {type}, not vxlan", {
          key: lease.key,
          type: lease.attrs.BackendType,
        });
      }
      return undefined;
    }
    if (!lease.subnet || !this.#index) return undefined;
    const data = lease.attrs.BackendData as { VtepMAC?: string } | null;
    const dst = formatNet(lease.subnet);
    if (this.opts.directRouting && this.#sameL2(lease.attrs.PublicIP)) {
      return [{ kind: "route", spec: { dst, gateway: lease.attrs.PublicIP, dev: this.ext.index } }];
    }
    if (!data?.VtepMAC) {
      logger.warn("lease {key} has no VtepMAC: skipped", { key: lease.key });
      return undefined;
    }
    const netAddr = formatIP(lease.subnet.ip);
    return [
      { kind: "neigh", spec: { dev: this.#index, ip: netAddr, mac: data.VtepMAC } },
      { kind: "fdb", spec: { dev: this.#index, mac: data.VtepMAC, dst: lease.attrs.PublicIP } },
      { kind: "route", spec: { dst, gateway: netAddr, dev: this.#index, onlink: true } },
    ];
  }
}
