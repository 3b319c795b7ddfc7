import assert from "node:assert/strict";
import { parseNetworkConfig } from "../config/net_conf.ts";
import { BackendOptionReader } from "../config/net_conf.ts";
import { parseUdpOptions } from "./udp/options.ts";
import { parseWireguardOptions } from "./wireguard/options.ts";
import { generatePrivateKey, keyToBase64 } from "./wireguard/key.ts";

const reader = (backend: Record<string, unknown>) =>
  new BackendOptionReader(parseNetworkConfig({ Network: "10.244.0.0/16", Backend: backend }).backend.options);

Deno.test("udp options: Port defaults to flannel's 8285 (also for 0) and is range-checked", () => {
  assert.deepEqual(parseUdpOptions(reader({ Type: "udp" })), { port: 8285 });
  assert.deepEqual(parseUdpOptions(reader({ Type: "udp", Port: 0 })), { port: 8285 });
  assert.deepEqual(parseUdpOptions(reader({ Type: "UDP", port: 7890 })), { port: 7890 });
  assert.throws(
    () => parseUdpOptions(reader({ Type: "udp", Port: 70000 })),
    /Backend\.Port=70000: must be 0–65535/,
  );
});

Deno.test("wireguard options: flannel's defaults, keys matched case-insensitively", () => {
  assert.deepEqual(parseWireguardOptions(reader({ Type: "wireguard" })), {
    listenPort: 51820,
    listenPortV6: 51821,
    keepalive: 0,
    mode: "separate",
  });
  const psk = generatePrivateKey();
  const o = parseWireguardOptions(reader({
    Type: "wireguard",
    listenport: 4000,
    ListenPortV6: 4001,
    PersistentKeepaliveInterval: 25,
    Mode: "Auto",
    PSK: keyToBase64(psk),
    MTU: 1400,
  }));
  assert.deepEqual(o, { listenPort: 4000, listenPortV6: 4001, keepalive: 25, mode: "auto", psk, mtu: 1400 });
});

Deno.test("wireguard options: a bad Mode, port or PSK names its key, and never prints the PSK", () => {
  assert.throws(
    () => parseWireguardOptions(reader({ Type: "wireguard", Mode: "both" })),
    /Backend\.Mode="both": must be one of separate, auto, ipv4, ipv6/,
  );
  assert.throws(
    () => parseWireguardOptions(reader({ Type: "wireguard", ListenPort: 0 })),
    /Backend\.ListenPort=0/,
  );
  assert.throws(
    () => parseWireguardOptions(reader({ Type: "wireguard", PSK: "c2VjcmV0" })),
    (e: Error) =>
      /Backend\.PSK="\(hidden\)": must be a 32-byte key/.test(e.message) && !e.message.includes("c2VjcmV0"),
  );
});
