/**
 * Kernel WireGuard over generic netlink (family `wireguard`, linux/wireguard.h), through libnl-genl:
 * `WG_CMD_SET_DEVICE` with the device's key, port and peer changes, and a `WG_CMD_GET_DEVICE` dump read
 * back into {@linkcode WgDeviceState} (a device with many peers comes in several messages; a peer may
 * continue in the next one).
 *
 * Honest status: this kernel-side path cannot run on weft's test machine, whose kernel has no WireGuard;
 * its message encoding is unit-tested (wireguard_genl_test.ts) and the genl exchange is exercised on
 * nlctrl (tests/ffi_genl_test.ts), but no test has configured a kernel WireGuard device with it.
 *
 * @module
 */
import { genlPayload, GenlSocket } from "../../../ffi/genl.ts";
import { attrU16, attrU64, NlBuilder, parseAttrs } from "../../../ffi/nl_codec.ts";
import { AF, NLA_F_NESTED } from "../../../ffi/nl_consts.ts";
import { formatIP, ipBytes, ipFromBytes, parseCIDR, parseIP } from "../../net/ip.ts";
import type { WgControl, WgDeviceConfig, WgDeviceState, WgPeerConfig, WgPeerState } from "./control.ts";
import { keyToBase64, parseKey } from "./key.ts";

const WG_GENL_NAME = "wireguard";
const WG_GENL_VERSION = 1;
const WG_CMD_GET_DEVICE = 0;
const WG_CMD_SET_DEVICE = 1;

const DEV = { IFNAME: 2, PRIVATE_KEY: 3, LISTEN_PORT: 6, PEERS: 8 } as const;
const PEER = {
  PUBLIC_KEY: 1,
  PRESHARED_KEY: 2,
  FLAGS: 3,
  ENDPOINT: 4,
  KEEPALIVE: 5,
  LAST_HANDSHAKE_TIME: 6,
  RX_BYTES: 7,
  TX_BYTES: 8,
  ALLOWEDIPS: 9,
} as const;
const PEER_F = { REMOVE_ME: 1, REPLACE_ALLOWEDIPS: 2 } as const;
const AIP = { FAMILY: 1, IPADDR: 2, CIDR_MASK: 3 } as const;
const AF_INET = AF.INET;
const AF_INET6 = AF.INET6;

/** `struct sockaddr_in`/`sockaddr_in6` of `ip:port` / `[ip6]:port`. */
export function endpointSockaddr(endpoint: string): Uint8Array<ArrayBuffer> {
  const m = /^\[(.+)\]:(\d+)$/.exec(endpoint) ?? /^([^:]+):(\d+)$/.exec(endpoint);
  if (!m) throw new Error(`endpoint ${endpoint} is not ip:port or [ip6]:port`);
  const ip = parseIP(m[1]!);
  const port = Number(m[2]);
  const sa = new Uint8Array(ip.family === 4 ? 16 : 28);
  const v = new DataView(sa.buffer);
  v.setUint16(0, ip.family === 4 ? AF_INET : AF_INET6, true);
  v.setUint16(2, port, false);
  sa.set(ipBytes(ip), ip.family === 4 ? 4 : 8);
  return sa;
}

/** `ip:port` / `[ip6]:port` of a sockaddr. */
export function sockaddrEndpoint(sa: Uint8Array): string | undefined {
  const v = new DataView(sa.buffer, sa.byteOffset, sa.byteLength);
  if (sa.length < 16) return undefined;
  const family = v.getUint16(0, true), port = v.getUint16(2, false);
  if (family === AF_INET) return `${formatIP(ipFromBytes(sa.subarray(4, 8)))}:${port}`;
  if (family === AF_INET6 && sa.length >= 24) return `[${formatIP(ipFromBytes(sa.subarray(8, 24)))}]:${port}`;
  return undefined;
}

/** Appends one peer of a `WG_CMD_SET_DEVICE` (a nested attribute of WGDEVICE_A_PEERS). */
function encodePeer(b: NlBuilder, p: WgPeerConfig): void {
  const peer = b.nestStart(NLA_F_NESTED);
  b.bytes(PEER.PUBLIC_KEY, parseKey(p.publicKey, "peer public key"));
  if (p.remove) {
    b.u32(PEER.FLAGS, PEER_F.REMOVE_ME).nestEnd(peer);
    return;
  }
  if (p.allowedIPs) b.u32(PEER.FLAGS, PEER_F.REPLACE_ALLOWEDIPS);
  if (p.presharedKey) b.bytes(PEER.PRESHARED_KEY, p.presharedKey);
  if (p.endpoint) b.bytes(PEER.ENDPOINT, endpointSockaddr(p.endpoint));
  if (p.keepalive !== undefined) b.u16(PEER.KEEPALIVE, p.keepalive);
  if (p.allowedIPs) {
    const list = b.nestStart(PEER.ALLOWEDIPS | NLA_F_NESTED);
    for (const cidr of p.allowedIPs) {
      const { net } = parseCIDR(cidr);
      const aip = b.nestStart(NLA_F_NESTED);
      b.u16(AIP.FAMILY, net.ip.family === 4 ? AF_INET : AF_INET6);
      b.bytes(AIP.IPADDR, ipBytes(net.ip));
      b.u8(AIP.CIDR_MASK, net.prefix).nestEnd(aip);
    }
    b.nestEnd(list);
  }
  b.nestEnd(peer);
}

/** The attributes of a `WG_CMD_SET_DEVICE` for device `name`. */
export function encodeSetDevice(name: string, cfg: WgDeviceConfig): Uint8Array<ArrayBuffer> {
  const b = new NlBuilder().str(DEV.IFNAME, name);
  if (cfg.privateKey) b.bytes(DEV.PRIVATE_KEY, cfg.privateKey);
  if (cfg.listenPort !== undefined) b.u16(DEV.LISTEN_PORT, cfg.listenPort);
  if (cfg.peers?.length) {
    const peers = b.nestStart(DEV.PEERS | NLA_F_NESTED);
    for (const p of cfg.peers) encodePeer(b, p);
    b.nestEnd(peers);
  }
  return b.bytesOut().slice();
}

function decodeAllowedIP(data: Uint8Array): string | undefined {
  let addr: Uint8Array | undefined, mask: number | undefined;
  for (const a of parseAttrs(data)) {
    if (a.type === AIP.IPADDR) addr = a.data;
    else if (a.type === AIP.CIDR_MASK) mask = a.data[0];
  }
  return addr && mask !== undefined ? `${formatIP(ipFromBytes(addr))}/${mask}` : undefined;
}

function decodePeer(data: Uint8Array): WgPeerState | undefined {
  const p: WgPeerState = {
    publicKey: "",
    allowedIPs: [],
    keepalive: 0,
    lastHandshake: 0,
    rxBytes: 0,
    txBytes: 0,
  };
  for (const a of parseAttrs(data)) {
    switch (a.type) {
      case PEER.PUBLIC_KEY:
        p.publicKey = keyToBase64(a.data);
        break;
      case PEER.PRESHARED_KEY:
        if (a.data.some((b) => b !== 0)) p.presharedKey = a.data.slice();
        break;
      case PEER.ENDPOINT: {
        const e = sockaddrEndpoint(a.data);
        if (e) p.endpoint = e;
        break;
      }
      case PEER.KEEPALIVE:
        p.keepalive = attrU16(a) ?? 0;
        break;
      case PEER.LAST_HANDSHAKE_TIME:
        p.lastHandshake = attrU64(a) ?? 0; // struct __kernel_timespec: its first 8 bytes are seconds
        break;
      case PEER.RX_BYTES:
        p.rxBytes = attrU64(a) ?? 0;
        break;
      case PEER.TX_BYTES:
        p.txBytes = attrU64(a) ?? 0;
        break;
      case PEER.ALLOWEDIPS:
        for (const aip of parseAttrs(a.data)) {
          const cidr = decodeAllowedIP(aip.data);
          if (cidr) p.allowedIPs.push(cidr);
        }
        break;
    }
  }
  return p.publicKey ? p : undefined;
}

/**
 * Reads a `WG_CMD_GET_DEVICE` dump (each message: genl header, then attributes). A peer split across
 * messages (too many allowed IPs for one) appears again, first in the next message: merged.
 */
export function decodeGetDevice(messages: Uint8Array[]): WgDeviceState {
  const dev: WgDeviceState = { listenPort: 0, peers: [] };
  for (const m of messages) {
    for (const a of parseAttrs(m.subarray(4))) {
      if (a.type === DEV.PRIVATE_KEY && a.data.length === 32) dev.privateKey = a.data.slice();
      else if (a.type === DEV.LISTEN_PORT) dev.listenPort = attrU16(a) ?? 0;
      else if (a.type === DEV.PEERS) {
        for (const pa of parseAttrs(a.data)) {
          const p = decodePeer(pa.data);
          if (!p) continue;
          const last = dev.peers[dev.peers.length - 1];
          if (last && last.publicKey === p.publicKey) last.allowedIPs.push(...p.allowedIPs);
          else dev.peers.push(p);
        }
      }
    }
  }
  return dev;
}

/** A kernel WireGuard device configured over generic netlink (in the calling thread's namespace). */
export class GenlControl implements WgControl {
  readonly impl = "kernel";
  #family: number | undefined;

  /** Controls device `name`. */
  constructor(readonly name: string) {}

  #with<T>(fn: (g: GenlSocket, family: number) => T): T {
    using g = GenlSocket.open();
    this.#family ??= g.resolve(WG_GENL_NAME);
    return fn(g, this.#family);
  }

  get(): WgDeviceState {
    return this.#with((g, family) =>
      decodeGetDevice(
        g.dump(
          family,
          genlPayload(
            WG_CMD_GET_DEVICE,
            WG_GENL_VERSION,
            new NlBuilder().str(DEV.IFNAME, this.name).bytesOut(),
          ),
          `wireguard get ${this.name}`,
        ),
      )
    );
  }

  set(cfg: WgDeviceConfig): void {
    this.#with((g, family) =>
      g.request(
        family,
        genlPayload(WG_CMD_SET_DEVICE, WG_GENL_VERSION, encodeSetDevice(this.name, cfg)),
        `wireguard set ${this.name}`,
      )
    );
  }
}
