/**
 * One WireGuard device of the wireguard backend (`flannel-wg`, `flannel-wg-v6`), whichever WireGuard
 * implements it: the kernel's (a `wireguard` link, configured over generic netlink) or, when the kernel
 * has none, userspace `wireguard-go` (a TUN device, configured over its UAPI socket). Either way the same
 * {@linkcode WgControl} reads and changes it, so the peers are reconciled by one driver.
 *
 * {@linkcode WireguardDevice.ensure} keeps it as weft wants it: present, its private key and listen port,
 * MTU, the lease's address, up, and the route for the cluster network through it. A device that answers
 * is adopted as it is (its peers stay: a restarted agent drops nothing); one that is missing is created,
 * and the caller replays every peer.
 *
 * @module
 */
import { type Netlink, NetlinkError } from "../../../ffi/mod.ts";
import type { DeviceChange } from "../../datapath/reconciler.ts";
import { log } from "../../log.ts";
import { ensureDeviceAddress, ensureNetworkRoute } from "../device_setup.ts";
import type { WgControl } from "./control.ts";
import { GenlControl } from "./genl.ts";
import { startWireguardGo, type WireguardGoOptions } from "./wireguard_go.ts";
import { UAPI_SOCKET_DIR, UapiControl, uapiSocketPath } from "./uapi.ts";

const logger = log("backend", "wireguard");

/** Which WireGuard to use: the kernel's when it has one (`auto`), or only one of them. */
export type WgImplChoice = "auto" | "kernel" | "userspace";

/** What the device must look like. */
export interface WgDeviceSpec {
  /** Device name. */
  name: string;
  /** UDP listen port. */
  listenPort: number;
  /** MTU. */
  mtu: number;
  /** The node's private key. */
  privateKey: Uint8Array;
}

/** How to find or run the implementation. */
export interface WgDeviceOptions {
  /** Kernel or userspace WireGuard (default `auto`). */
  impl?: WgImplChoice;
  /** Where userspace WireGuard's UAPI sockets are (default /var/run/wireguard). */
  socketDir?: string;
  /** How to run wireguard-go. */
  wireguardGo?: WireguardGoOptions;
}

function sameKey(a: Uint8Array | undefined, b: Uint8Array): boolean {
  return !!a && a.length === b.length && a.every((x, i) => x === b[i]);
}

/** One WireGuard device kept in shape. */
export class WireguardDevice {
  #control: WgControl | undefined;
  /** ifindex (0 until ensured). */
  index = 0;
  /** pid of the wireguard-go this agent started, if it did. */
  startedPid: number | undefined;

  /**
   * @param nl handle in the node's namespace (a userspace device is started in the calling thread's)
   * @param spec what the device must look like
   * @param opts implementation choice
   */
  constructor(
    private readonly nl: Netlink,
    readonly spec: WgDeviceSpec,
    private readonly opts: WgDeviceOptions = {},
  ) {}

  /** The device's control; throws before the first successful {@linkcode ensure}. */
  get control(): WgControl {
    if (!this.#control) throw new Error(`${this.spec.name} is not set up yet`);
    return this.#control;
  }

  /** `kernel` or `userspace`, once known. */
  get impl(): "kernel" | "userspace" | undefined {
    return this.#control?.impl;
  }

  #uapi(): UapiControl {
    return new UapiControl(
      this.spec.name,
      uapiSocketPath(this.spec.name, this.opts.socketDir ?? UAPI_SOCKET_DIR),
    );
  }

  /** Finds the device, or creates it; "created" when the caller must replay the peers. */
  #findOrCreate(): DeviceChange {
    const { name } = this.spec;
    const choice = this.opts.impl ?? "auto";
    const link = this.nl.linkGet(name);
    if (link?.kind === "wireguard") {
      if (choice === "userspace") {
        throw new Error(`${name} is a kernel WireGuard device but userspace WireGuard was asked for`);
      }
      this.#control = new GenlControl(name);
      return "unchanged";
    }
    if (link) {
      const uapi = this.#uapi();
      if (uapi.alive()) {
        if (choice === "kernel") throw new Error(`${name} is a userspace WireGuard device, not the kernel's`);
        this.#control = uapi;
        return "unchanged";
      }
      // Not WireGuard (or a wireguard-go that no longer answers): only weft creates this name.
      logger.warn("{name} exists (kind {kind}) but no WireGuard answers for it: deleting it", {
        name,
        kind: link.kind || "none",
      });
      if (!this.nl.linkDelete(link.index) && this.nl.linkGet(name)) {
        throw new Error(`${name} exists and cannot be deleted`);
      }
    }
    if (choice !== "userspace") {
      try {
        this.nl.linkAddWireguard({ name, mtu: this.spec.mtu });
        this.#control = new GenlControl(name);
        logger.info("created {name} (kernel WireGuard)", { name });
        return "created";
      } catch (err) {
        const unsupported = err instanceof NetlinkError && (err.errno === 95 || err.errno === 2);
        if (!unsupported || choice === "kernel") throw err;
        logger.info("the kernel has no WireGuard: using userspace wireguard-go for {name}", { name });
      }
    }
    const uapi = this.#uapi();
    this.startedPid = startWireguardGo(name, uapi, this.opts.wireguardGo);
    this.#control = uapi;
    return "created";
  }

  /**
   * Makes the device match: present, key and port, MTU, `addresses` (the lease's, /32 or /128), up, and a
   * route for each of `networks` through it. Returns what that took.
   */
  ensure(addresses: string[], networks: string[]): DeviceChange {
    let change = this.#findOrCreate();
    const repaired = (what: string) => {
      if (change === "unchanged") change = "repaired";
      if (change !== "created") logger.warn("{name}: {what}", { name: this.spec.name, what });
    };
    const ctl = this.control;
    const state = ctl.get();
    if (!sameKey(state.privateKey, this.spec.privateKey) || state.listenPort !== this.spec.listenPort) {
      if (state.privateKey || state.listenPort) repaired("private key or listen port set back");
      ctl.set({ privateKey: this.spec.privateKey, listenPort: this.spec.listenPort });
    }
    const dev = this.nl.linkGet(this.spec.name);
    if (!dev) throw new Error(`${this.spec.name} vanished while being set up`);
    this.index = dev.index;
    if (dev.mtu !== this.spec.mtu) {
      repaired(`MTU ${dev.mtu} set back to ${this.spec.mtu}`);
      this.nl.linkSetMtu(dev.index, this.spec.mtu);
    }
    for (const cidr of addresses) {
      const what = ensureDeviceAddress(this.nl, dev.index, cidr);
      if (what) repaired(what);
    }
    if (!dev.up) {
      repaired("was down, set up");
      this.nl.linkSetUp(dev.index);
    }
    for (const net of networks) {
      const what = ensureNetworkRoute(this.nl, dev.index, net);
      if (what) repaired(what);
    }
    return change;
  }
}
