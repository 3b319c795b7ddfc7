/**
 * The wireguard backend, wire-compatible with flannel's: device `flannel-wg` (and, in the default
 * `separate` mode on a dual-stack network, `flannel-wg-v6`) with the node's key pair, listening on
 * ListenPort (ListenPortV6), MTU = base − 80, the lease's network address, and one route for the cluster
 * network through it. The lease publishes BackendType `wireguard` and BackendData
 * `{"PublicKey":"<base64>","Port":51820}` (BackendV6Data with ListenPortV6), exactly as flannel does.
 *
 * Per peer lease: a WireGuard peer (its public key; endpoint PublicIP:Port; allowed IPs = its subnet;
 * keepalive and PSK as configured), kept by a {@linkcode WireguardPeerDriver}, plus a route for its subnet
 * through the device — so a peer's lease going away takes both away, a changed key replaces the peer
 * (the old key is removed, not left beside the new one), and peers nobody wants are pruned.
 *
 * Kernel or userspace: device.ts picks the kernel's WireGuard when it has one, else runs
 * wireguard-go; the reconciler's path is the same (`impl` says which is in use).
 *
 * The private key is generated once and kept in /run/flannel/wgkey (`WIREGUARD_KEY_FILE`), so a restarted
 * agent publishes the same public key.
 *
 * @module
 */
import type { Netlink } from "../../../ffi/mod.ts";
import type { ExternalInterface } from "../../net/iface.ts";
import type { Entry, EntryDriver } from "../../datapath/entries.ts";
import type { DeviceChange } from "../../datapath/reconciler.ts";
import { log } from "../../log.ts";
import { formatIP, formatNet, type IPNet } from "../../net/ip.ts";
import type { Lease } from "../../lease/lease.ts";
import { WgImplChoice, WireguardDevice } from "./device.ts";
import { keyFilePath, type KeyPair, keyToBase64, loadOrCreateKey } from "./key.ts";
import type { Backend } from "../backend.ts";
import type { WireguardBackendOptions } from "./options.ts";
import { WireguardPeerDriver } from "./peers.ts";
import { allowedIPsText, wireguardLeaseData, wireguardPeerFor } from "./peer_spec.ts";

const logger = log("backend", "wireguard");

/** IPv4/IPv6 header (up to 40) + UDP 8 + WireGuard 32 (type, index, nonce, tag): flannel's figure. */
export const WIREGUARD_OVERHEAD = 80;

/** One device and the families it carries. */
interface Dev {
  device: WireguardDevice;
  driver: WireguardPeerDriver;
  v4: boolean;
  v6: boolean;
}

/** Where the cluster's networks are, and how to find WireGuard. */
export interface WireguardBackendContext {
  /** The IPv4 cluster network, when IPv4 is served. */
  network?: IPNet;
  /** The IPv6 cluster network, when IPv6 is served. */
  ipv6Network?: IPNet;
  /** This node's previous lease attributes (to say when the key changed). */
  previousBackendData?: unknown;
  /** Key file; default `WIREGUARD_KEY_FILE` or /run/flannel/wgkey. */
  keyFile?: string;
  /** Kernel or userspace WireGuard; default `WEFT_WIREGUARD_IMPL` or auto. */
  impl?: WgImplChoice;
  /** Where wireguard-go's UAPI sockets are (default /var/run/wireguard). */
  socketDir?: string;
}

/** The wireguard backend. */
export class WireguardBackend implements Backend {
  readonly type = "wireguard";
  /** Pod MTU: base − 80. */
  readonly mtu: number;
  readonly #keys: KeyPair;
  readonly #devs: Dev[] = [];

  /**
   * @param nl handle in the node's namespace
   * @param opts wireguard options
   * @param ext the external interface
   * @param families the network's families
   * @param ctx networks, key file, implementation
   */
  constructor(
    nl: Netlink,
    private readonly opts: WireguardBackendOptions,
    private readonly ext: ExternalInterface,
    private readonly families: { ipv4: boolean; ipv6: boolean },
    private readonly ctx: WireguardBackendContext,
  ) {
    if (families.ipv6 && !ext.publicIPv6) {
      throw new Error(
        `EnableIPv6 is set but ${ext.name} has no global IPv6 address for WireGuard's endpoint`,
      );
    }
    const keyFile = ctx.keyFile ?? keyFilePath();
    this.#keys = loadOrCreateKey(keyFile);
    const pub = keyToBase64(this.#keys.publicKey);
    const previous = wireguardLeaseData(ctx.previousBackendData)?.PublicKey;
    if (this.#keys.generated) {
      logger.info("generated a WireGuard key pair (public key {pub}), kept in {file}", {
        pub,
        file: keyFile,
      });
    }
    if (previous && previous !== pub) {
      logger.warn("the WireGuard public key changed ({old} → {pub}; was {file} lost?): peers update to it", {
        old: previous,
        pub,
        file: keyFile,
      });
    }
    const base = opts.mtu ?? ext.mtu;
    this.mtu = base - WIREGUARD_OVERHEAD;
    const env = Deno.env.get("WEFT_WIREGUARD_IMPL");
    const impl = ctx.impl ?? (env === "kernel" || env === "userspace" ? env : "auto");
    const make = (name: string, listenPort: number, v4: boolean, v6: boolean) => {
      const device = new WireguardDevice(nl, {
        name,
        listenPort,
        mtu: this.mtu,
        privateKey: this.#keys.privateKey,
      }, {
        impl,
        ...(ctx.socketDir ? { socketDir: ctx.socketDir } : {}),
      });
      const driver = new WireguardPeerDriver(name, () => device.control, opts.psk);
      this.#devs.push({ device, driver, v4, v6 });
    };
    if (opts.mode === "separate") {
      if (families.ipv4) make("flannel-wg", opts.listenPort, true, false);
      if (families.ipv6) make("flannel-wg-v6", opts.listenPortV6, false, true);
    } else make("flannel-wg", opts.listenPort, families.ipv4, families.ipv6);
    if (!this.#devs.length) throw new Error("wireguard: neither IPv4 nor IPv6 is enabled");
  }

  /** This node's public key (base64). */
  get publicKey(): string {
    return keyToBase64(this.#keys.publicKey);
  }

  /** `kernel` or `userspace` (of the first device), once set up. */
  get impl(): "kernel" | "userspace" | undefined {
    return this.#devs[0]?.device.impl;
  }

  /** `{"PublicKey","Port"}` with ListenPort, when IPv4 is served (flannel's field order). */
  backendData(): unknown {
    return this.families.ipv4 ? { PublicKey: this.publicKey, Port: this.opts.listenPort } : undefined;
  }

  /** `{"PublicKey","Port"}` with ListenPortV6, when IPv6 is served. */
  backendV6Data(): unknown {
    return this.families.ipv6 ? { PublicKey: this.publicKey, Port: this.opts.listenPortV6 } : undefined;
  }

  /** Makes every device match (see {@linkcode WireguardDevice.ensure}); "created" when any was created. */
  ensureDevice(l: Lease): DeviceChange {
    const changes = this.#devs.map((d) => {
      const addrs: string[] = [], nets: string[] = [];
      if (d.v4 && l.subnet && this.ctx.network) {
        addrs.push(`${formatIP(l.subnet.ip)}/32`);
        nets.push(formatNet(this.ctx.network));
      }
      if (d.v6 && l.ipv6Subnet && this.ctx.ipv6Network) {
        addrs.push(`${formatIP(l.ipv6Subnet.ip)}/128`);
        nets.push(formatNet(this.ctx.ipv6Network));
      }
      return d.device.ensure(addrs, nets);
    });
    return changes.includes("created") ? "created" : changes.includes("repaired") ? "repaired" : "unchanged";
  }

  /** The peer (and a route for each of its subnets) on each device, for a wireguard lease. */
  entriesFor(lease: Lease): Entry[] | undefined {
    const ctx = {
      mode: this.opts.mode,
      listenPort: this.opts.listenPort,
      listenPortV6: this.opts.listenPortV6,
      ipv6: this.families.ipv6,
      ...(this.ext.publicIPv6 ? { ownPublicIPv6: this.ext.publicIPv6 } : {}),
    };
    const out: Entry[] = [];
    for (const d of this.#devs) {
      if (!d.device.index) continue; // not set up yet: the first full pass replays
      if (!(d.v4 && lease.subnet) && !(d.v6 && lease.ipv6Subnet)) continue;
      const peer = wireguardPeerFor(lease, d, ctx);
      if (!peer) {
        logger.warn("lease {key} has no WireGuard public key or endpoint for {dev}: skipped", {
          key: lease.key,
          dev: d.device.spec.name,
        });
        continue;
      }
      const allowedIPs = allowedIPsText(peer);
      const value = d.driver.value({ endpoint: peer.endpoint, allowedIPs, keepalive: this.opts.keepalive });
      out.push({ kind: "driver", driver: d.driver.name, key: peer.publicKey, value });
      for (const dst of allowedIPs) out.push({ kind: "route", spec: { dst, dev: d.device.index } });
    }
    return out.length ? out : undefined;
  }

  /** No neighbour or FDB entries. */
  ownedDevices(): number[] {
    return [];
  }

  /** One peer driver per device. */
  drivers(): EntryDriver[] {
    return this.#devs.map((d) => d.driver);
  }

  /** Nothing to stop: the devices (and a userspace wireguard-go) stay for the next agent. */
  close(): Promise<void> {
    return Promise.resolve();
  }
}
