/**
 * WireGuard key encodings, without any cryptography: base64 (leases, config files, `wg`) and hex (the
 * UAPI protocol). Apart from key.ts, which derives keys through node:crypto, so that checking a config's
 * `PSK` (options.ts) does not load Node's crypto into every agent (a few MB; BENCHMARKS.md).
 *
 * @module
 */

/** A 32-byte key from base64; throws naming `what` when it is not one. */
export function parseKey(text: string, what = "key"): Uint8Array<ArrayBuffer> {
  const s = text.trim();
  let bytes: Uint8Array<ArrayBuffer>;
  try {
    bytes = Uint8Array.from(atob(s), (ch) => ch.charCodeAt(0));
  } catch {
    throw new Error(`${what} is not base64`);
  }
  if (bytes.length !== 32 || s.length !== 44) {
    throw new Error(`${what} must be 32 bytes in base64 (44 characters)`);
  }
  return bytes;
}

/** Base64 of a key. */
export function keyToBase64(key: Uint8Array): string {
  return btoa(String.fromCharCode(...key));
}

/** Hex of a key (the UAPI encoding). */
export function keyToHex(key: Uint8Array): string {
  return Array.from(key, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** A key from hex (the UAPI encoding). */
export function keyFromHex(hex: string): Uint8Array<ArrayBuffer> {
  if (!/^[0-9a-f]{64}$/i.test(hex)) throw new Error(`not a 32-byte hex key: ${hex.slice(0, 8)}…`);
  return Uint8Array.from({ length: 32 }, (_, i) => parseInt(hex.slice(2 * i, 2 * i + 2), 16));
}
