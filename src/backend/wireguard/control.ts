/**
 * Configuring a WireGuard device, whoever implements it: the device's state as weft reads it, the
 * changes weft makes, and the {@linkcode WgControl} interface with its two implementations — the UAPI
 * text protocol of userspace WireGuard (uapi.ts) and the kernel's generic netlink family
 * (genl.ts).
 *
 * Keys are raw 32-byte arrays here; each implementation encodes them as its protocol wants.
 *
 * @module
 */

/** One peer as the device reports it. */
export interface WgPeerState {
  /** Public key (base64). */
  publicKey: string;
  /** Preshared key (raw), when one is set. */
  presharedKey?: Uint8Array;
  /** `ip:port` or `[ip6]:port`, when known. */
  endpoint?: string;
  /** Allowed IPs (CIDRs). */
  allowedIPs: string[];
  /** Persistent keepalive interval, seconds (0 = off). */
  keepalive: number;
  /** Last handshake, seconds since the epoch (0 = never). */
  lastHandshake: number;
  /** Bytes received from the peer. */
  rxBytes: number;
  /** Bytes sent to the peer. */
  txBytes: number;
}

/** A device as read. */
export interface WgDeviceState {
  /** Private key (raw), when set. */
  privateKey?: Uint8Array;
  /** UDP listen port (0 = none yet). */
  listenPort: number;
  /** Its peers. */
  peers: WgPeerState[];
}

/** A change to one peer. */
export interface WgPeerConfig {
  /** Public key (base64) naming the peer. */
  publicKey: string;
  /** Remove the peer (every other field is ignored). */
  remove?: boolean;
  /** Endpoint `ip:port` / `[ip6]:port`. */
  endpoint?: string;
  /** Replace the peer's allowed IPs with these. */
  allowedIPs?: string[];
  /** Persistent keepalive interval, seconds (0 = off). */
  keepalive?: number;
  /** Preshared key (raw); all zeros removes it. */
  presharedKey?: Uint8Array;
}

/** A change to a device. */
export interface WgDeviceConfig {
  /** Private key (raw). */
  privateKey?: Uint8Array;
  /** UDP listen port. */
  listenPort?: number;
  /** Peer changes, in order. */
  peers?: WgPeerConfig[];
}

/** Reads and changes one WireGuard device. */
export interface WgControl {
  /** `kernel` (generic netlink) or `userspace` (UAPI socket). */
  readonly impl: "kernel" | "userspace";
  /** The device's configuration and peers. */
  get(): WgDeviceState;
  /** Applies `cfg` (peers not named are left alone). */
  set(cfg: WgDeviceConfig): void;
}

/** A WireGuard protocol or transport failure. */
export class WireguardError extends Error {
  /**
   * @param op what was being done, e.g. `"set flannel-wg"`
   * @param errno the errno the implementation reported (0 when none)
   * @param detail what went wrong
   */
  constructor(readonly op: string, readonly errno: number, detail: string) {
    super(`${op}: ${detail}`);
    this.name = "WireguardError";
  }
}
