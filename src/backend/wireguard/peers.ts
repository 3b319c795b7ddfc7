/**
 * The reconciler's driver of WireGuard peers: one entry per peer, keyed by its public key (base64), its
 * value everything weft sets — endpoint, allowed IPs, keepalive and (as a fingerprint, never the secret)
 * the preshared key — in one canonical line. `list()` renders what the device reports the same way, so
 * a peer whose endpoint, subnet or keepalive drifted differs in value and is repaired, a peer no lease
 * wants is pruned, and a lease whose key changed removes the old key's peer (a new key is a new entry).
 *
 * @module
 */
import { createHash } from "node:crypto";
import type { EntryDriver } from "../../datapath/entries.ts";
import type { WgControl, WgPeerState } from "./control.ts";

/** What weft sets on a peer. */
export interface WgPeerSpec {
  /** `ip:port` or `[ip6]:port`. */
  endpoint: string;
  /** The peer's subnets. */
  allowedIPs: string[];
  /** Persistent keepalive, seconds (0 = off). */
  keepalive: number;
}

/** A short fingerprint of a preshared key (or `none`), so values can be compared and logged safely. */
export function pskFingerprint(psk: Uint8Array | undefined): string {
  if (!psk || psk.every((b) => b === 0)) return "none";
  return createHash("sha256").update(psk).digest("hex").slice(0, 12);
}

/** The canonical entry value of a peer. */
export function peerValue(p: WgPeerSpec, psk: Uint8Array | undefined): string {
  const ips = [...p.allowedIPs].sort().join(",");
  return `endpoint=${p.endpoint} allowed-ips=${ips} keepalive=${p.keepalive} psk=${pskFingerprint(psk)}`;
}

/** Parses {@linkcode peerValue}'s text back. */
export function parsePeerValue(value: string): WgPeerSpec {
  const f = new Map(
    value.split(" ").map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]),
  );
  const endpoint = f.get("endpoint");
  const ips = f.get("allowed-ips");
  if (!endpoint || ips === undefined) throw new Error(`malformed WireGuard peer entry: ${value}`);
  return { endpoint, allowedIPs: ips ? ips.split(",") : [], keepalive: Number(f.get("keepalive") ?? 0) };
}

/** The value the device's state of a peer renders to. */
export function stateValue(p: WgPeerState): string {
  return peerValue(
    { endpoint: p.endpoint ?? "", allowedIPs: p.allowedIPs, keepalive: p.keepalive },
    p.presharedKey,
  );
}

/** Keeps the peers of one WireGuard device. */
export class WireguardPeerDriver implements EntryDriver {
  /** `wireguard-<device>`. */
  readonly name: string;

  /**
   * @param device the device's name
   * @param control the device's control (asked each time: it changes when the device is recreated)
   * @param psk the preshared key every peer gets (Backend.PSK), if any
   */
  constructor(
    device: string,
    private readonly control: () => WgControl,
    private readonly psk?: Uint8Array,
  ) {
    this.name = `wireguard-${device}`;
  }

  /** The entry value for a peer (what {@linkcode list} reports once it is applied). */
  value(p: WgPeerSpec): string {
    return peerValue(p, this.psk);
  }

  apply(key: string, value: string): void {
    const p = parsePeerValue(value);
    this.control().set({
      peers: [{
        publicKey: key,
        endpoint: p.endpoint,
        allowedIPs: p.allowedIPs,
        keepalive: p.keepalive,
        // All zeros clears a preshared key the peer had: the value says there is none.
        presharedKey: this.psk ?? new Uint8Array(32),
      }],
    });
  }

  remove(key: string): void {
    this.control().set({ peers: [{ publicKey: key, remove: true }] });
  }

  list(): Map<string, string> {
    return new Map(this.control().get().peers.map((p) => [p.publicKey, stateValue(p)]));
  }
}
