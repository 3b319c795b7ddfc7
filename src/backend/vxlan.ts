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
import { log } from "../log.ts";
import { formatIP, formatNet, netContains, parseCIDR, parseIP } from "../net/ip.ts";
import type { Lease } from "../subnet/lease.ts";
import type { ExternalInterface } from "../agent/iface.ts";
import { type Backend, randomMac } from "./backend.ts";

const logger = log("backend", "vxlan");
const DEFAULT_PORT = 8472;

/** Whether an existing device can be kept as it is (flannel's compatibility check). */
export function vxlanCompatible(
  dev: LinkInfo,
  want: { vni: number; local: string; port: number; link: number },
): boolean {
  const v = dev.vxlan;
  return dev.kind === "vxlan" && !!v && v.vni === want.vni && v.local === want.local &&
    (v.port || DEFAULT_PORT) === (want.port || DEFAULT_PORT) && v.link === want.link;
}

/** The vxlan backend. */
export class VxlanBackend implements Backend {
  readonly type = "vxlan";
  readonly name: string;
  readonly mtu: number;
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
    return vxlanCompatible(dev, {
      vni: this.opts.vni,
      local: this.ext.ifaceIP,
      port: this.opts.port,
      link: this.ext.index,
    });
  }

  /** `{VNI, VtepMAC}` as flannel publishes it. */
  backendData(): unknown {
    return { VNI: this.opts.vni, VtepMAC: this.mac };
  }

  setLease(lease: Lease): void {
    this.#lease = lease;
  }

  ensureDevice(): boolean {
    let dev = this.nl.linkGet(this.name);
    let created = false;
    if (dev && !this.#compatible(dev)) {
      logger.warn("{name} exists but is incompatible (VNI/local/port/link differ): recreating it", {
        name: this.name,
      });
      this.nl.linkDelete(dev.index);
      dev = undefined;
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
      created = true;
      logger.info("created {name} (VNI {vni}, MAC {mac}, MTU {mtu})", {
        name: this.name,
        vni: this.opts.vni,
        mac: this.mac,
        mtu: this.mtu,
      });
    }
    this.#index = dev.index;
    if (dev.mtu !== this.mtu) this.nl.linkSetMtu(dev.index, this.mtu);
    if (this.#lease?.subnet) {
      const want = `${formatIP(this.#lease.subnet.ip)}/32`;
      const have = this.nl.addrList(dev.index, 4).map((a) => a.cidr);
      if (!have.includes(want)) {
        for (const a of have) this.nl.addrDelete(dev.index, a); // a previous lease's address
        this.nl.addrReplace(dev.index, want);
      }
    }
    if (!dev.up) this.nl.linkSetUp(dev.index);
    return created;
  }

  ownedDevices(): number[] {
    return this.#index ? [this.#index] : [];
  }

  #sameL2(ip: string): boolean {
    const addr = parseIP(ip);
    return this.ext.cidrs.some((c) => netContains(parseCIDR(c).net, addr));
  }

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
