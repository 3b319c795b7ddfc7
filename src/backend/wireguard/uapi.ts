/**
 * Userspace WireGuard's configuration protocol (the cross-platform UAPI, as `wg` speaks it to
 * wireguard-go): a unix socket `/var/run/wireguard/<dev>.sock`, a `get=1` or `set=1` request of
 * `key=value` lines ended by an empty line, answered by `errno=N` and an empty line (preceded, for
 * `get`, by the device and its peers). Keys are hex on this protocol.
 *
 * @module
 */
import { UnixStream } from "../../../ffi/unix_socket.ts";
import { keyFromHex, keyToBase64, keyToHex, parseKey } from "./key.ts";
import {
  type WgControl,
  type WgDeviceConfig,
  type WgDeviceState,
  type WgPeerState,
  WireguardError,
} from "./control.ts";

/** Where wireguard-go (and `wg`) put the UAPI sockets. */
export const UAPI_SOCKET_DIR = "/var/run/wireguard";

/** The UAPI socket of device `name`. */
export function uapiSocketPath(name: string, dir = UAPI_SOCKET_DIR): string {
  return `${dir}/${name}.sock`;
}

/** The body of a `set=1` request for `cfg` (without the final empty line). */
export function formatUapiSet(cfg: WgDeviceConfig): string {
  const lines = ["set=1"];
  if (cfg.privateKey) lines.push(`private_key=${keyToHex(cfg.privateKey)}`);
  if (cfg.listenPort !== undefined) lines.push(`listen_port=${cfg.listenPort}`);
  for (const p of cfg.peers ?? []) {
    lines.push(`public_key=${keyToHex(parseKey(p.publicKey, "peer public key"))}`);
    if (p.remove) {
      lines.push("remove=true");
      continue;
    }
    if (p.presharedKey) lines.push(`preshared_key=${keyToHex(p.presharedKey)}`);
    if (p.endpoint) lines.push(`endpoint=${p.endpoint}`);
    if (p.keepalive !== undefined) lines.push(`persistent_keepalive_interval=${p.keepalive}`);
    if (p.allowedIPs) {
      lines.push("replace_allowed_ips=true");
      for (const a of p.allowedIPs) lines.push(`allowed_ip=${a}`);
    }
  }
  return lines.join("\n") + "\n";
}

/** The errno of a UAPI answer (`errno=N`), or throws when there is none. */
function answerErrno(text: string, op: string): number {
  const m = /(?:^|\n)errno=(-?\d+)\n/.exec(text);
  if (!m) throw new WireguardError(op, 0, `no errno in the answer (${JSON.stringify(text.slice(0, 80))})`);
  return Number(m[1]);
}

/** Parses a `get=1` answer. */
export function parseUapiGet(text: string): WgDeviceState {
  const dev: WgDeviceState = { listenPort: 0, peers: [] };
  let peer: WgPeerState | undefined;
  for (const line of text.split("\n")) {
    if (!line) continue;
    const eq = line.indexOf("=");
    const key = line.slice(0, eq), value = line.slice(eq + 1);
    switch (key) {
      case "private_key":
        dev.privateKey = keyFromHex(value);
        break;
      case "listen_port":
        dev.listenPort = Number(value);
        break;
      case "public_key":
        peer = {
          publicKey: keyToBase64(keyFromHex(value)),
          allowedIPs: [],
          keepalive: 0,
          lastHandshake: 0,
          rxBytes: 0,
          txBytes: 0,
        };
        dev.peers.push(peer);
        break;
      case "preshared_key":
        if (peer && !/^0+$/.test(value)) peer.presharedKey = keyFromHex(value);
        break;
      case "endpoint":
        if (peer) peer.endpoint = value;
        break;
      case "allowed_ip":
        peer?.allowedIPs.push(value);
        break;
      case "persistent_keepalive_interval":
        if (peer) peer.keepalive = Number(value);
        break;
      case "last_handshake_time_sec":
        if (peer) peer.lastHandshake = Number(value);
        break;
      case "rx_bytes":
        if (peer) peer.rxBytes = Number(value);
        break;
      case "tx_bytes":
        if (peer) peer.txBytes = Number(value);
        break;
    }
  }
  return dev;
}

/** A device configured over its UAPI socket. */
export class UapiControl implements WgControl {
  readonly impl = "userspace";

  /**
   * @param name the device
   * @param socketPath its UAPI socket
   * @param timeoutMs how long one exchange may take
   */
  constructor(readonly name: string, readonly socketPath = uapiSocketPath(name), readonly timeoutMs = 5000) {}

  #exchange(request: string, op: string): string {
    let conn: UnixStream;
    try {
      conn = UnixStream.connect(this.socketPath, this.timeoutMs);
    } catch (err) {
      throw new WireguardError(op, 0, `cannot reach ${this.socketPath}: ${(err as Error).message}`);
    }
    try {
      conn.writeAll(new TextEncoder().encode(request + "\n"));
      const answer = conn.readUntil("\n\n");
      const errno = answerErrno(answer, op);
      if (errno !== 0) throw new WireguardError(op, errno, `the device answered errno=${errno}`);
      return answer;
    } finally {
      conn.close();
    }
  }

  /** Whether something answers on the socket. */
  alive(): boolean {
    try {
      this.get();
      return true;
    } catch {
      return false;
    }
  }

  get(): WgDeviceState {
    return parseUapiGet(this.#exchange("get=1\n", `get ${this.name}`));
  }

  set(cfg: WgDeviceConfig): void {
    this.#exchange(formatUapiSet(cfg), `set ${this.name}`);
  }
}
