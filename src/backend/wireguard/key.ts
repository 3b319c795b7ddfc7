/**
 * WireGuard keys: Curve25519 private keys generated once and kept in a file (flannel's
 * `/run/flannel/wgkey`, or `WIREGUARD_KEY_FILE`) and public keys derived from them. The two encodings in
 * use (base64 and hex) live in key_codec.ts and are re-exported here.
 *
 * X25519 through node:crypto, which is synchronous (WebCrypto's is not, and the backend is built
 * synchronously); it clamps the scalar itself, and keys are stored clamped, as `wg genkey` does.
 *
 * @module
 */
import { createPrivateKey, createPublicKey } from "node:crypto";
import { dirname } from "node:path";
import { keyToBase64, parseKey } from "./key_codec.ts";

export { keyFromHex, keyToBase64, keyToHex, parseKey } from "./key_codec.ts";

/** Where flannel keeps the node's private key. */
export const DEFAULT_KEY_FILE = "/run/flannel/wgkey";

/** The key file: `WIREGUARD_KEY_FILE` (flannel's variable) or {@linkcode DEFAULT_KEY_FILE}. */
export function keyFilePath(): string {
  return Deno.env.get("WIREGUARD_KEY_FILE") || DEFAULT_KEY_FILE;
}

/** A fresh private key, clamped (RFC 7748), as `wg genkey` makes them. */
export function generatePrivateKey(): Uint8Array<ArrayBuffer> {
  const k = crypto.getRandomValues(new Uint8Array(32));
  k[0]! &= 248;
  k[31] = (k[31]! & 127) | 64;
  return k;
}

// PKCS#8 and SPKI prefixes of an X25519 key (RFC 8410): the raw 32 bytes follow.
const PKCS8_X25519 = [
  0x30,
  0x2e,
  0x02,
  0x01,
  0x00,
  0x30,
  0x05,
  0x06,
  0x03,
  0x2b,
  0x65,
  0x6e,
  0x04,
  0x22,
  0x04,
  0x20,
];

/** The public key of a private key (X25519 with the base point). */
export function publicKeyOf(privateKey: Uint8Array): Uint8Array<ArrayBuffer> {
  const der = new Uint8Array([...PKCS8_X25519, ...privateKey]);
  const pub = createPublicKey(createPrivateKey({ key: Buffer.from(der), format: "der", type: "pkcs8" }));
  const spki = pub.export({ format: "der", type: "spki" });
  return new Uint8Array(spki.subarray(spki.length - 32));
}

/** The node's key pair. */
export interface KeyPair {
  /** Private key (raw). */
  privateKey: Uint8Array<ArrayBuffer>;
  /** Public key (raw). */
  publicKey: Uint8Array<ArrayBuffer>;
  /** True when the key was generated now (no file yet). */
  generated: boolean;
}

/**
 * The private key in `path`, or a new one written there (base64, mode 0400, directory 0755, as flannel
 * does) when the file does not exist. A file that exists but holds no key is an error naming the file:
 * replacing it would silently change the node's identity.
 */
export function loadOrCreateKey(path: string = keyFilePath()): KeyPair {
  let text: string | undefined;
  try {
    text = Deno.readTextFileSync(path);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  if (text !== undefined) {
    const privateKey = parseKey(text, `WireGuard private key file ${path}`);
    return { privateKey, publicKey: publicKeyOf(privateKey), generated: false };
  }
  const privateKey = generatePrivateKey();
  Deno.mkdirSync(dirname(path), { recursive: true, mode: 0o755 });
  // Write to a temporary file and rename: a crash never leaves a half-written key behind.
  const tmp = `${path}.tmp-${Deno.pid}`;
  Deno.writeTextFileSync(tmp, keyToBase64(privateKey), { mode: 0o400 });
  Deno.chmodSync(tmp, 0o400);
  Deno.renameSync(tmp, path);
  return { privateKey, publicKey: publicKeyOf(privateKey), generated: true };
}
