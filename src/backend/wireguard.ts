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
 * Kernel or userspace: wireguard_device.ts picks the kernel's WireGuard when it has one, else runs
 * wireguard-go; the reconciler's path is the same (`impl` says which is in use).
 *
 * The private key is generated once and kept in /run/flannel/wgkey (`WIREGUARD_KEY_FILE`), so a restarted
 * agent publishes the same public key.
 *
 * @module
 */
import type { Netlink } from "../../ffi/mod.ts";
import type { ExternalInterface } from "../net/iface.ts";
import type { Entry, EntryDriver } from "../datapath/entries.ts";
import type { DeviceChange } from "../datapath/reconciler.ts";
import { log } from "../log.ts";
import { formatIP, formatNet, type IPNet, parseIP } from "../net/ip.ts";
import type { Lease } from "../subnet/lease.ts";
import { WgImplChoice, WireguardDevice } from "./wireguard_device.ts";
import { keyFilePath, type KeyPair, keyToBase64, loadOrCreateKey } from "./wireguard_key.ts";
import type { Backend } from "./backend.ts";
import type { WireguardBackendOptions } from "./wireguard_options.ts";
import { WireguardPeerDriver } from "./wireguard_peers.ts";

const logger = log("backend", "wireguard");

/** IPv4/IPv6 header (up to 40) + UDP 8 + WireGuard 32 (type, index, nonce, tag): flannel's figure. */
export const WIREGUARD_OVERHEAD = 80;

/** flannel's BackendData of a wireguard lease. */
export interface WireguardLeaseData {
  /** Base64 public key. */
  PublicKey: string;
  /** Listen port. */
  Port: number;
}

function leaseData(data: unknown): Partial<WireguardLeaseData> | undefined {
  if (typeof data !== "object" || data === null) return undefined;
  return data as Partial<WireguardLeaseData>;
}

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
    const previous = leaseData(ctx.previousBackendData)?.PublicKey;
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

  /** Auto mode's endpoint family (flannel's rule): IPv4 unless only IPv6 is public on both sides. */
  #autoFamily(lease: Lease): 4 | 6 {
    const v6 = lease.attrs.PublicIPv6;
    if (!v6) return 4;
    if (!isPrivate(lease.attrs.PublicIP)) return 4;
    if (!isPrivate(v6) && this.ext.publicIPv6 && !isPrivate(this.ext.publicIPv6)) return 6;
    return 4;
  }

  /** The peer (and a route for each of its subnets) on each device, for a wireguard lease. */
  entriesFor(lease: Lease): Entry[] | undefined {
    const d4 = leaseData(lease.attrs.BackendData), d6 = leaseData(lease.attrs.BackendV6Data);
    const out: Entry[] = [];
    for (const d of this.#devs) {
      if (!d.device.index) continue; // not set up yet: the first full pass replays
      const subnets: IPNet[] = [];
      if (d.v4 && lease.subnet) subnets.push(lease.subnet);
      if (d.v6 && lease.ipv6Subnet) subnets.push(lease.ipv6Subnet);
      if (!subnets.length) continue;
      let endpoint: string | undefined, key: string | undefined;
      if (this.opts.mode === "separate") {
        if (d.v4) {
          key = d4?.PublicKey;
          endpoint = `${lease.attrs.PublicIP}:${d4?.Port || this.opts.listenPort}`;
        } else {
          key = d6?.PublicKey;
          endpoint = lease.attrs.PublicIPv6
            ? `[${lease.attrs.PublicIPv6}]:${d6?.Port || this.opts.listenPortV6}`
            : undefined;
        }
      } else {
        // One device per node, listening on ListenPort: the peer's BackendData.Port names it (its
        // BackendV6Data.Port carries ListenPortV6, which no device listens on in these modes).
        key = (this.families.ipv6 ? d6?.PublicKey : undefined) ?? d4?.PublicKey;
        const port = d4?.Port || this.opts.listenPort;
        const family = this.opts.mode === "ipv4"
          ? 4
          : this.opts.mode === "ipv6"
          ? 6
          : this.#autoFamily(lease);
        endpoint = family === 4
          ? `${lease.attrs.PublicIP}:${port}`
          : lease.attrs.PublicIPv6
          ? `[${lease.attrs.PublicIPv6}]:${port}`
          : undefined;
      }
      if (!key || !endpoint) {
        logger.warn("lease {key} has no WireGuard public key or endpoint for {dev}: skipped", {
          key: lease.key,
          dev: d.device.spec.name,
        });
        continue;
      }
      out.push({
        kind: "driver",
        driver: d.driver.name,
        key,
        value: d.driver.value({
          endpoint,
          allowedIPs: subnets.map(formatNet),
          keepalive: this.opts.keepalive,
        }),
      });
      for (const s of subnets) out.push({ kind: "route", spec: { dst: formatNet(s), dev: d.device.index } });
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

/** RFC 1918 / RFC 4193 (what flannel's auto mode treats as private). */
function isPrivate(ip: string): boolean {
  const a = parseIP(ip);
  if (a.family === 6) return (a.value >> 121n) === 0x7en; // fc00::/7
  const v = Number(a.value);
  return (v >>> 24) === 10 || (v >>> 20) === 0xac1 || (v >>> 16) === 0xc0a8;
}
