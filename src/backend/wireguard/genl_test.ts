import assert from "node:assert/strict";
import { attrU32, parseAttrs } from "../../../ffi/nl_codec.ts";
import { genlPayload } from "../../../ffi/genl.ts";
import { decodeGetDevice, encodeSetDevice, endpointSockaddr, sockaddrEndpoint } from "./genl.ts";
import { generatePrivateKey, keyToBase64, publicKeyOf } from "./key.ts";

Deno.test("endpointSockaddr() builds sockaddr_in and sockaddr_in6 (port in network order)", () => {
  const v4 = endpointSockaddr("192.168.77.12:51820");
  assert.deepEqual([...v4.subarray(0, 8)], [2, 0, 0xca, 0x6c, 192, 168, 77, 12]);
  assert.equal(v4.length, 16);
  const v6 = endpointSockaddr("[fd00::12]:51821");
  assert.equal(v6.length, 28);
  assert.deepEqual([...v6.subarray(0, 4)], [10, 0, 0xca, 0x6d]);
  assert.equal(sockaddrEndpoint(v6), "[fd00::12]:51821");
  assert.equal(sockaddrEndpoint(v4), "192.168.77.12:51820");
  assert.throws(() => endpointSockaddr("fd00::1:5"), /not an IPv4 address|ip:port|invalid/i);
});

Deno.test("a WG_CMD_SET_DEVICE's peer reads back through the GET_DEVICE decoder (shared attribute layout)", () => {
  const priv = generatePrivateKey();
  const psk = crypto.getRandomValues(new Uint8Array(32));
  const peer = keyToBase64(publicKeyOf(generatePrivateKey()));
  const attrs = encodeSetDevice("flannel-wg", {
    privateKey: priv,
    listenPort: 51820,
    peers: [{
      publicKey: peer,
      endpoint: "192.168.77.12:51820",
      allowedIPs: ["10.244.1.0/24", "fd00:10:244:1::/64"],
      keepalive: 25,
      presharedKey: psk,
    }],
  });
  const dev = decodeGetDevice([genlPayload(0, 1, attrs)]);
  assert.deepEqual(dev.privateKey, priv);
  assert.equal(dev.listenPort, 51820);
  assert.equal(dev.peers.length, 1);
  const p = dev.peers[0]!;
  assert.equal(p.publicKey, peer);
  assert.equal(p.endpoint, "192.168.77.12:51820");
  assert.deepEqual(p.allowedIPs, ["10.244.1.0/24", "fd00:10:244:1::/64"]);
  assert.equal(p.keepalive, 25);
  assert.deepEqual(p.presharedKey, psk);
  // The peer asks the kernel to replace (not add to) its allowed IPs.
  const peerAttrs = parseAttrs(parseAttrs(parseAttrs(attrs).find((a) => a.type === 8)!.data)[0]!.data);
  assert.equal(attrU32(peerAttrs.find((a) => a.type === 3)!), 2);
});

Deno.test("a removal carries only the key and WGPEER_F_REMOVE_ME", () => {
  const peer = keyToBase64(publicKeyOf(generatePrivateKey()));
  const attrs = encodeSetDevice("flannel-wg", { peers: [{ publicKey: peer, remove: true }] });
  const peerAttrs = parseAttrs(parseAttrs(parseAttrs(attrs).find((a) => a.type === 8)!.data)[0]!.data);
  assert.deepEqual(peerAttrs.map((a) => a.type), [1, 3]);
  assert.equal(attrU32(peerAttrs[1]!), 1);
});

Deno.test("decodeGetDevice() merges a peer that continues in the next dump message", () => {
  const peer = keyToBase64(publicKeyOf(generatePrivateKey()));
  const part = (ips: string[]) =>
    genlPayload(0, 1, encodeSetDevice("flannel-wg", { peers: [{ publicKey: peer, allowedIPs: ips }] }));
  const dev = decodeGetDevice([part(["10.244.1.0/24"]), part(["10.244.9.0/24"])]);
  assert.equal(dev.peers.length, 1);
  assert.deepEqual(dev.peers[0]!.allowedIPs, ["10.244.1.0/24", "10.244.9.0/24"]);
});
