import assert from "node:assert/strict";
import {
  generatePrivateKey,
  keyFromHex,
  keyToBase64,
  keyToHex,
  loadOrCreateKey,
  parseKey,
  publicKeyOf,
} from "./key.ts";
import { hasBinary, skipUnless } from "../../../tests/helpers/topology.ts";

Deno.test("publicKeyOf() matches RFC 7748's X25519 test vector (Alice's key pair)", () => {
  const priv = keyFromHex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
  assert.equal(
    keyToHex(publicKeyOf(priv)),
    "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a",
  );
});

Deno.test({
  name: "publicKeyOf() agrees with `wg pubkey` on a generated key",
  ignore: skipUnless(hasBinary("wg"), "wg (wireguard-tools) is not installed"),
  async fn() {
    const priv = generatePrivateKey();
    const child = new Deno.Command("wg", { args: ["pubkey"], stdin: "piped", stdout: "piped" }).spawn();
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(keyToBase64(priv) + "\n"));
    await w.close();
    const out = new TextDecoder().decode((await child.output()).stdout).trim();
    assert.equal(keyToBase64(publicKeyOf(priv)), out);
  },
});

Deno.test("loadOrCreateKey() writes the key once (base64, 0400) and returns the same key afterwards", () => {
  const dir = Deno.makeTempDirSync();
  try {
    const path = `${dir}/sub/wgkey`;
    const a = loadOrCreateKey(path);
    assert.equal(a.generated, true);
    const text = Deno.readTextFileSync(path);
    assert.match(text, /^[A-Za-z0-9+/]{43}=$/);
    assert.equal(Deno.statSync(path).mode! & 0o777, 0o400);
    const b = loadOrCreateKey(path);
    assert.equal(b.generated, false);
    assert.deepEqual(b.privateKey, a.privateKey);
    assert.deepEqual(b.publicKey, a.publicKey);
    Deno.chmodSync(path, 0o600);
    Deno.writeTextFileSync(path, "not a key");
    assert.throws(
      () => loadOrCreateKey(path),
      /WireGuard private key file .*wgkey is not base64|must be 32 bytes/,
    );
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});

Deno.test("parseKey() accepts a key with a trailing newline and rejects short ones", () => {
  const k = generatePrivateKey();
  assert.deepEqual(parseKey(keyToBase64(k) + "\n"), k);
  assert.throws(() => parseKey("AAAA", "PSK"), /PSK must be 32 bytes/);
  assert.deepEqual(keyFromHex(keyToHex(k)), k);
});
