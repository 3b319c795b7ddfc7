/**
 * The wireguard backend's net-conf options, with flannel's defaults:
 * `{"Type": "wireguard", "ListenPort": 51820, "ListenPortV6": 51821, "PSK": "<base64>",
 * "PersistentKeepaliveInterval": 0, "Mode": "separate", "MTU": <interface MTU>}`.
 *
 * @module
 */
import { ConfigError } from "../../config/net_conf.ts";
import type { BackendOptionReader } from "../../config/net_conf.ts";
import { parseKey } from "./key_codec.ts";

/** How IPv4 and IPv6 share devices: `separate` (flannel-wg and flannel-wg-v6) or one device. */
export type WireguardMode = "separate" | "auto" | "ipv4" | "ipv6";

/** Options of the wireguard backend. */
export interface WireguardBackendOptions {
  /** Listen port of `flannel-wg` (and of the single device in auto/ipv4/ipv6 mode). */
  listenPort: number;
  /** Listen port of `flannel-wg-v6` (separate mode). */
  listenPortV6: number;
  /** Preshared key for every peer (raw), if any. */
  psk?: Uint8Array;
  /** Persistent keepalive, seconds (0 = off). */
  keepalive: number;
  /** Device layout. */
  mode: WireguardMode;
  /** Base MTU; undefined = the interface's. Devices and pods get MTU − 80. */
  mtu?: number;
}

/**
 * Reads `ListenPort`, `ListenPortV6`, `PSK`, `PersistentKeepaliveInterval`, `Mode`, `MTU`; throws
 * ConfigError naming the key (never echoing the PSK).
 */
export function parseWireguardOptions(o: BackendOptionReader): WireguardBackendOptions {
  const out: WireguardBackendOptions = {
    listenPort: o.int("ListenPort", 51820, 1, 65535),
    listenPortV6: o.int("ListenPortV6", 51821, 1, 65535),
    keepalive: o.int("PersistentKeepaliveInterval", 0, 0, 65535),
    mode: o.oneOf("Mode", ["separate", "auto", "ipv4", "ipv6"] as const, "separate"),
  };
  const psk = o.string("PSK");
  if (psk !== undefined) {
    try {
      out.psk = parseKey(psk);
    } catch {
      throw new ConfigError(
        "Backend.PSK",
        "(hidden)",
        "must be a 32-byte key in base64, as `wg genpsk` prints",
      );
    }
  }
  const mtu = o.int("MTU", undefined, 576, 65535);
  if (mtu !== undefined) out.mtu = mtu;
  return out;
}
