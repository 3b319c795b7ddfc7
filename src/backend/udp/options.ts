/**
 * The udp backend's net-conf options (`"Backend": {"Type": "udp", "Port": 8285}`), flannel's default.
 *
 * @module
 */
import type { BackendOptionReader } from "../../config/net_conf.ts";

/** flannel's udp port. */
export const UDP_DEFAULT_PORT = 8285;

/** Options of the udp backend. */
export interface UdpBackendOptions {
  /** UDP port every node listens on and sends to (the lease does not carry it: all nodes share it). */
  port: number;
}

/** Reads `Port` (0 or absent: 8285); throws ConfigError naming the key. */
export function parseUdpOptions(o: BackendOptionReader): UdpBackendOptions {
  return { port: o.int("Port", 0, 0, 65535) || UDP_DEFAULT_PORT };
}
