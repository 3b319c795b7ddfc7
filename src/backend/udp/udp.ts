/**
 * The udp backend, wire-compatible with flannel's: a TUN device `flannel0` holding the lease's network
 * address (/32), MTU = interface MTU − 28 (IPv4 + UDP headers), one route for the whole cluster network
 * through it, and a packet loop (forwarder.ts) that sends every inner IPv4 packet as the whole payload
 * of one UDP datagram from the interface address:Port to the peer's PublicIP:Port (8285). Leases carry
 * only `PublicIP` — no BackendType, no BackendData — and every node uses the same Port.
 *
 * Peers live in the loop's table, filled by the reconciler through the `udp-peer` driver, so they are
 * added, changed, pruned and re-listed like any other datapath entry.
 *
 * Restarts: weft marks `flannel0` persistent (TUNSETPERSIST), so its address and route survive the agent
 * and the next agent attaches to it again; but nothing forwards while no agent runs — packets to and from
 * other nodes are dropped from the moment the agent exits until the new one has its peers (flannel's
 * udp backend loses the same, and also loses the device). IPv4 only, as flannel's.
 *
 * @module
 */
import type { Netlink } from "../../../ffi/mod.ts";
import { Tun } from "../../../ffi/tun.ts";
import { UdpSocket } from "../../../ffi/udp_socket.ts";
import type { ExternalInterface } from "../../net/iface.ts";
import type { Entry, EntryDriver } from "../../datapath/entries.ts";
import type { DeviceChange } from "../../datapath/reconciler.ts";
import { log } from "../../log.ts";
import { formatIP, formatNet, type IPNet } from "../../net/ip.ts";
import type { Lease } from "../../lease/lease.ts";
import { ensureDeviceAddress, ensureNetworkRoute } from "../device_setup.ts";
import { UdpForwarder } from "./forwarder.ts";
import type { ForwarderStats } from "../backend.ts";
import type { Backend } from "../backend.ts";
import type { UdpBackendOptions } from "./options.ts";
import { UdpPeerDriver, UdpPeerTable } from "./peers.ts";

const logger = log("backend", "udp");

/** IPv4 header + UDP header. */
export const UDP_OVERHEAD = 28;
/** The TUN device's name (flannel's pattern `flannel%d` gives this on a node with no other). */
export const UDP_DEVICE = "flannel0";

/** The udp backend. */
export class UdpBackend implements Backend {
  readonly type = "udp";
  /** flannel's udp leases carry no BackendType. */
  readonly leaseType = "";
  /** Pod MTU: the interface's − 28. */
  readonly mtu: number;
  readonly #table = new UdpPeerTable();
  readonly #driver = new UdpPeerDriver(this.#table);
  #tun: Tun | undefined;
  #sock: UdpSocket | undefined;
  #forwarder: UdpForwarder | undefined;
  #running: Promise<void> | undefined;

  /**
   * @param nl handle in the node's namespace (the agent's own: the TUN device and the socket are made in
   *   the calling thread's namespace)
   * @param opts udp options
   * @param ext the external interface
   * @param network the cluster network (routed through the device)
   * @param families the network's families: IPv6 is refused
   */
  constructor(
    private readonly nl: Netlink,
    private readonly opts: UdpBackendOptions,
    private readonly ext: ExternalInterface,
    private readonly network: IPNet,
    families: { ipv4?: boolean; ipv6?: boolean } = {},
  ) {
    if (families.ipv6) {
      throw new Error("the udp backend carries IPv4 only (as flannel's): unset EnableIPv6 or use vxlan");
    }
    this.mtu = ext.mtu - UDP_OVERHEAD;
  }

  /** No BackendData: flannel's udp leases hold only PublicIP. */
  backendData(): unknown {
    return undefined;
  }

  /** The loop's counters (undefined before the device is set up). */
  forwarderStats(): ForwarderStats | undefined {
    return this.#forwarder?.stats;
  }

  /** Attaches (or creates) flannel0, recreating it when it was deleted under the loop. */
  #attach(): DeviceChange {
    const link = this.nl.linkGet(UDP_DEVICE);
    if (this.#tun && link) return "unchanged";
    let change: DeviceChange = link ? "unchanged" : "created";
    if (this.#tun) {
      logger.warn("{dev} was deleted: creating it again", { dev: UDP_DEVICE });
      this.#tun.close();
      this.#tun = undefined;
      change = "created";
    }
    // An existing persistent flannel0 (left by the previous agent) is attached to as it is.
    this.#tun = Tun.open({ name: UDP_DEVICE, persist: true });
    if (change === "created") logger.info("created {dev} (TUN)", { dev: UDP_DEVICE });
    else logger.info("attached to the existing {dev}", { dev: UDP_DEVICE });
    this.#forwarder?.setTun(this.#tun);
    return change;
  }

  /**
   * Makes flannel0 match: attached, MTU, the lease's network address /32, up, the route for the cluster
   * network; and starts the packet loop on its first call.
   */
  ensureDevice(lease: Lease): DeviceChange {
    let change = this.#attach();
    const repaired = (what: string) => {
      if (change === "unchanged") change = "repaired";
      if (change !== "created") logger.warn("{dev}: {what}", { dev: UDP_DEVICE, what });
    };
    const dev = this.nl.linkGet(UDP_DEVICE);
    if (!dev) throw new Error(`${UDP_DEVICE} vanished while being set up`);
    if (dev.mtu !== this.mtu) {
      repaired(`MTU ${dev.mtu} set back to ${this.mtu}`);
      this.nl.linkSetMtu(dev.index, this.mtu);
    }
    const local = lease.subnet ? formatIP(lease.subnet.ip) : undefined;
    if (local) {
      // A /32: no broadcast routes; the source address for traffic from the node itself to pods.
      const what = ensureDeviceAddress(this.nl, dev.index, `${local}/32`);
      if (what) repaired(what);
    }
    if (!dev.up) {
      repaired("was down, set up");
      this.nl.linkSetUp(dev.index);
    }
    const what = ensureNetworkRoute(this.nl, dev.index, formatNet(this.network));
    if (what) repaired(what);
    if (!this.#sock) {
      this.#sock = UdpSocket.bind(this.ext.ifaceIP, this.opts.port);
      this.#forwarder = new UdpForwarder(this.#tun!, this.#sock, this.#table);
      this.#running = this.#forwarder.start();
      logger.info("forwarding between {dev} and udp {addr}", { dev: UDP_DEVICE, addr: this.#sock.address });
    }
    if (local) this.#forwarder!.setLocalAddress(local);
    return change;
  }

  /** The peer table row for a (udp) lease: its subnet → its PublicIP:Port. */
  entriesFor(lease: Lease): Entry[] | undefined {
    if (!lease.subnet) return undefined;
    return [{
      kind: "driver",
      driver: this.#driver.name,
      key: formatNet(lease.subnet),
      value: UdpPeerDriver.value(lease.attrs.PublicIP, this.opts.port),
    }];
  }

  /** No neighbour or FDB entries. */
  ownedDevices(): number[] {
    return [];
  }

  /** The peer table's driver. */
  drivers(): EntryDriver[] {
    return [this.#driver];
  }

  /** Stops the loop and closes the socket; flannel0 stays (persistent) for the next agent. */
  async close(): Promise<void> {
    await this.#forwarder?.stop();
    await this.#running;
    this.#sock?.close();
    this.#tun?.close();
    this.#sock = this.#tun = this.#forwarder = undefined;
  }
}
