import assert from "node:assert/strict";
import { formatNet, parseNet } from "../../net/ip.ts";
import type { Lease } from "../../lease/lease.ts";
import { isPrivateIP, type PeerContext, wireguardPeerFor } from "./peer_spec.ts";

const K4 = "ydz5Ryw6jQ5QIE1JgpvDd9Oqr3ZpmhrEuChsN6HpNVU=";

function lease(attrs: Partial<Lease["attrs"]>, v6 = false): Lease {
  return {
    key: v6 ? "10.244.1.0-24&fd00:10:244:1::-64" : "10.244.1.0-24",
    subnet: parseNet("10.244.1.0/24"),
    ...(v6 ? { ipv6Subnet: parseNet("fd00:10:244:1::/64") } : {}),
    attrs: { PublicIP: "192.168.77.12", BackendType: "wireguard", ...attrs },
  };
}

const ctx = (c: Partial<PeerContext>): PeerContext => ({
  mode: "separate",
  listenPort: 51820,
  listenPortV6: 51821,
  ipv6: false,
  ...c,
});

const text = (p: ReturnType<typeof wireguardPeerFor>) =>
  p && { publicKey: p.publicKey, endpoint: p.endpoint, allowedIPs: p.allowedIPs.map(formatNet) };

Deno.test("separate mode: the IPv4 device's peer is PublicIP:Port from BackendData, allowed its subnet", () => {
  const l = lease({ BackendData: { PublicKey: K4, Port: 4000 } });
  assert.deepEqual(text(wireguardPeerFor(l, { v4: true, v6: false }, ctx({}))), {
    publicKey: K4,
    endpoint: "192.168.77.12:4000",
    allowedIPs: ["10.244.1.0/24"],
  });
});

Deno.test("a lease of a flannel without Port (before v0.26.6) gets this node's own ListenPort", () => {
  const l = lease({ BackendData: { PublicKey: K4 } });
  assert.equal(wireguardPeerFor(l, { v4: true, v6: false }, ctx({}))?.endpoint, "192.168.77.12:51820");
});

Deno.test("separate mode, dual-stack: the IPv6 device's peer is [PublicIPv6]:BackendV6Data.Port", () => {
  const l = lease({
    PublicIPv6: "fd00::12",
    BackendData: { PublicKey: K4, Port: 51820 },
    BackendV6Data: { PublicKey: K4, Port: 51821 },
  }, true);
  assert.deepEqual(text(wireguardPeerFor(l, { v4: false, v6: true }, ctx({ ipv6: true }))), {
    publicKey: K4,
    endpoint: "[fd00::12]:51821",
    allowedIPs: ["fd00:10:244:1::/64"],
  });
});

Deno.test("one-device modes: both subnets on one peer; ipv6 mode uses BackendData.Port, the device's", () => {
  const l = lease({
    PublicIPv6: "fd00::12",
    BackendData: { PublicKey: K4, Port: 51820 },
    BackendV6Data: { PublicKey: K4, Port: 51821 },
  }, true);
  const both = { v4: true, v6: true };
  assert.deepEqual(text(wireguardPeerFor(l, both, ctx({ mode: "ipv4", ipv6: true }))), {
    publicKey: K4,
    endpoint: "192.168.77.12:51820",
    allowedIPs: ["10.244.1.0/24", "fd00:10:244:1::/64"],
  });
  assert.equal(wireguardPeerFor(l, both, ctx({ mode: "ipv6", ipv6: true }))?.endpoint, "[fd00::12]:51820");
});

Deno.test("auto mode follows flannel: IPv4 unless the peer's IPv4 is private and both IPv6 are public", () => {
  const both = { v4: true, v6: true };
  const data = { BackendData: { PublicKey: K4, Port: 51820 }, BackendV6Data: { PublicKey: K4, Port: 51821 } };
  const privateV4PublicV6 = lease({ ...data, PublicIPv6: "2001:db8::12" }, true);
  assert.equal(
    wireguardPeerFor(
      privateV4PublicV6,
      both,
      ctx({ mode: "auto", ipv6: true, ownPublicIPv6: "2001:db8::11" }),
    )
      ?.endpoint,
    "[2001:db8::12]:51820",
  );
  // This node has only a private (ULA) IPv6: IPv4.
  assert.equal(
    wireguardPeerFor(privateV4PublicV6, both, ctx({ mode: "auto", ipv6: true, ownPublicIPv6: "fd00::11" }))
      ?.endpoint,
    "192.168.77.12:51820",
  );
  const publicV4 = lease({ ...data, PublicIP: "203.0.113.12", PublicIPv6: "2001:db8::12" }, true);
  assert.equal(
    wireguardPeerFor(publicV4, both, ctx({ mode: "auto", ipv6: true, ownPublicIPv6: "2001:db8::11" }))
      ?.endpoint,
    "203.0.113.12:51820",
  );
});

Deno.test("a lease without a key, or without a subnet for the device, gives no peer", () => {
  assert.equal(wireguardPeerFor(lease({ BackendData: null }), { v4: true, v6: false }, ctx({})), undefined);
  assert.equal(
    wireguardPeerFor(lease({ BackendData: { PublicKey: K4 } }), { v4: false, v6: true }, ctx({ ipv6: true })),
    undefined,
  );
});

Deno.test("isPrivateIP() knows RFC 1918 and ULA", () => {
  for (const ip of ["10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1", "fd00::1", "fc00::1"]) {
    assert.ok(isPrivateIP(ip), ip);
  }
  for (const ip of ["172.32.0.1", "8.8.8.8", "2001:db8::1", "fe80::1"]) assert.ok(!isPrivateIP(ip), ip);
});
