import assert from "node:assert/strict";
import { Tun } from "../../../ffi/tun.ts";
import { formatSockaddrIn, sockaddrIn, UdpSocket } from "../../../ffi/udp_socket.ts";
import { withNetns } from "../../../ffi/mod.ts";
import { requireRoot } from "../../../tests/helpers/topology.ts";
import { withScratchNetns } from "../../../tests/helpers/scratch_netns.ts";
import { parseNet } from "../../net/ip.ts";
import { decrementTtl, UdpForwarder } from "./forwarder.ts";
import { UdpPeerDriver, UdpPeerTable } from "./peers.ts";

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const text = (s: string) => new TextEncoder().encode(s);

/** The next datagram on `s` and its sender, waiting up to 30 s. */
async function receive(s: UdpSocket): Promise<[Uint8Array, string]> {
  const buf = new Uint8Array(65536);
  const from = new Uint8Array(16);
  const end = Date.now() + 30_000;
  while (Date.now() < end) {
    const n = s.recvFrom(buf, from);
    if (n >= 0) return [buf.slice(0, n), formatSockaddrIn(from)];
    await sleep(5);
  }
  throw new Error(`nothing arrived on ${s.address}`);
}

/** The one's-complement header checksum of `hdr` (0 when it verifies). */
function ipChecksum(hdr: Uint8Array): number {
  let sum = 0;
  for (let i = 0; i < hdr.length; i += 2) sum += (hdr[i]! << 8) | hdr[i + 1]!;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

/** An IPv4/UDP packet (UDP checksum 0: none) with a correct header checksum. */
function ipv4Udp(src: number[], dst: number[], sport: number, dport: number, payload: Uint8Array) {
  const p = new Uint8Array(28 + payload.length);
  const v = new DataView(p.buffer);
  p[0] = 0x45;
  v.setUint16(2, p.length);
  p[8] = 64;
  p[9] = 17;
  p.set(src, 12);
  p.set(dst, 16);
  v.setUint16(10, ipChecksum(p.subarray(0, 20)));
  v.setUint16(20, sport);
  v.setUint16(22, dport);
  v.setUint16(24, 8 + payload.length);
  p.set(payload, 28);
  return p;
}

Deno.test("decrementTtl() keeps the IPv4 header checksum valid, and refuses to send a TTL of 1 on", () => {
  for (const ttl of [64, 2, 255, 128]) {
    for (const seed of [0, 1, 0xfe, 0xff]) {
      const p = ipv4Udp([10, 244, seed, 1], [10, 244, 2, seed], 1000 + seed, 53, new Uint8Array(4));
      p[8] = ttl;
      new DataView(p.buffer).setUint16(10, 0);
      new DataView(p.buffer).setUint16(10, ipChecksum(p.subarray(0, 20)));
      assert.ok(decrementTtl(p));
      assert.equal(p[8], ttl - 1);
      assert.equal(ipChecksum(p.subarray(0, 20)), 0, `ttl ${ttl} seed ${seed}`);
    }
  }
  const p = ipv4Udp([10, 0, 0, 1], [10, 0, 0, 2], 1, 2, new Uint8Array(0));
  p[8] = 1;
  assert.equal(decrementTtl(p), false);
});

Deno.test("UdpPeerTable finds the peer of the most specific subnet that holds an address", () => {
  const t = new UdpPeerTable();
  const d = new UdpPeerDriver(t);
  d.apply("10.244.1.0/24", "192.168.77.12:8285");
  d.apply("10.244.2.0/24", "192.168.77.13:8285");
  d.apply("10.244.2.128/25", "192.168.77.14:9000");
  d.apply("192.168.200.0/24", "192.168.77.15:8285"); // above 2^31: keys must still be small integers
  const at = (ip: string) => {
    const b = ip.split(".").map(Number);
    return t.lookup((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!)?.endpoint;
  };
  assert.equal(at("10.244.1.77"), "192.168.77.12:8285");
  assert.equal(at("10.244.2.5"), "192.168.77.13:8285");
  assert.equal(at("10.244.2.200"), "192.168.77.14:9000");
  assert.equal(at("192.168.200.9"), "192.168.77.15:8285");
  assert.equal(at("10.244.3.1"), undefined);
  assert.deepEqual(
    d.list(),
    new Map([
      ["10.244.2.128/25", "192.168.77.14:9000"],
      ["10.244.1.0/24", "192.168.77.12:8285"],
      ["10.244.2.0/24", "192.168.77.13:8285"],
      ["192.168.200.0/24", "192.168.77.15:8285"],
    ]),
  );
  d.apply("10.244.1.0/24", "192.168.77.22:8285"); // replaced, not added
  assert.equal(at("10.244.1.1"), "192.168.77.22:8285");
  d.remove("10.244.2.128/25");
  d.remove("10.244.2.128/25"); // absent is fine
  assert.equal(at("10.244.2.200"), "192.168.77.13:8285");
  assert.equal(t.size, 3);
  assert.throws(() => t.set(parseNet("fd00::/64"), "1.2.3.4", 1), /not IPv4/);
});

Deno.test({
  name:
    "UdpForwarder carries packets between a TUN device and UDP peers, and drops those for unknown subnets",
  ignore: requireRoot(),
  sanitizeResources: false,
  sanitizeOps: false,
  async fn() {
    await withScratchNetns("udpfw", async (ns, nl) => {
      nl.linkSetUp("lo");
      using tun = withNetns(ns, () => Tun.open({ name: "flannel0" }));
      const dev = nl.linkGet("flannel0")!;
      assert.equal(dev.name, "flannel0");
      nl.addrReplace(dev.index, "10.244.1.0/32");
      nl.linkSetMtu(dev.index, 1472);
      nl.linkSetUp(dev.index);
      nl.routeReplace({ dst: "10.244.0.0/16", dev: dev.index, scope: 0 });

      using sock = withNetns(ns, () => UdpSocket.bind("127.0.0.1", 0));
      using peer = withNetns(ns, () => UdpSocket.bind("127.0.0.1", 0));
      using app = withNetns(ns, () => UdpSocket.bind("10.244.1.0", 0));
      const port = (s: UdpSocket) => Number(s.address.split(":")[1]);
      const table = new UdpPeerTable();
      new UdpPeerDriver(table).apply("10.244.2.0/24", `127.0.0.1:${port(peer)}`);
      const fw = new UdpForwarder(tun, sock, table);
      const running = fw.start();
      try {
        // Out: a datagram to a pod of 10.244.2.0/24 arrives at the peer as the whole inner IP packet.
        app.sendTo(text("hello"), 5, sockaddrIn("10.244.2.5", 7));
        const [pkt, from] = await receive(peer);
        assert.equal(from, sock.address);
        assert.equal(pkt[0]! >> 4, 4);
        assert.deepEqual([...pkt.subarray(12, 20)], [10, 244, 1, 0, 10, 244, 2, 5]);
        assert.equal(pkt[9], 17);
        assert.equal(pkt[8], 63, "TTL decremented once");
        assert.equal(ipChecksum(pkt.subarray(0, 20)), 0);
        assert.equal(new TextDecoder().decode(pkt.subarray(28)), "hello");

        // In: a datagram carrying a packet for this node's address is delivered through the TUN device.
        const inner = ipv4Udp([10, 244, 2, 5], [10, 244, 1, 0], 7, port(app), text("back"));
        peer.sendTo(inner, inner.length, sockaddrIn("127.0.0.1", port(sock)));
        const [reply, src] = await receive(app);
        assert.equal(new TextDecoder().decode(reply), "back");
        assert.equal(src, "10.244.2.5:7");

        // Unknown subnet: dropped and counted, nothing sent.
        app.sendTo(text("x"), 1, sockaddrIn("10.244.9.9", 7));
        const t0 = Date.now();
        while (fw.stats.droppedNoPeer < 1 && Date.now() - t0 < 30_000) await sleep(10);
        assert.equal(fw.stats.droppedNoPeer, 1);
        assert.equal(fw.stats.tunToUdp, 1);
        assert.equal(fw.stats.udpToTun, 1);
      } finally {
        await fw.stop();
        await running;
      }
    });
  },
});
