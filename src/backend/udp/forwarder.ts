/**
 * The udp backend's packet loop (flannel's proxy, in TypeScript over FFI): every IPv4 packet the kernel
 * routes into the TUN device goes out as the whole payload of one UDP datagram to the peer whose subnet
 * holds its destination; every datagram that arrives on the port goes into the TUN device. The TTL is
 * decremented on both legs (with the checksum patched, RFC 1624), as flannel does.
 *
 * How it runs: `poll(2)` on a worker thread waits until the TUN device, the socket or the stop eventfd is
 * readable; then the JS thread drains both descriptors with synchronous non-blocking `read`/`recvfrom`
 * and `sendto`/`write` calls — one buffer for everything, reused for every packet, so the steady state
 * allocates nothing per packet (only one Promise per wake-up). After {@linkcode BATCH} packets it polls
 * again with a zero timeout, so timers and etcd I/O on the same thread keep their turn under load.
 *
 * Packets for a destination no peer holds are dropped and counted (`droppedNoPeer`) and answered, as
 * flannel's proxy does, with an ICMP "network unreachable" from the node's overlay address (never for
 * an ICMP packet or a later fragment, RFC 792), so a connection attempt fails at once instead of timing
 * out. Non-IPv4 packets (flannel's udp backend is IPv4 only) and packets whose TTL runs out are dropped
 * and counted too.
 *
 * @module
 */
import { Poller, Waker } from "../../../ffi/poll.ts";
import type { Tun } from "../../../ffi/tun.ts";
import type { UdpSocket } from "../../../ffi/udp_socket.ts";
import { SyscallError } from "../../../ffi/syscall_error.ts";
import { log } from "../../log.ts";
import type { UdpPeerTable } from "./peers.ts";
import type { ForwarderStats } from "../backend.ts";

const logger = log("backend", "udp");

/** Packets handled per drain before the loop yields to the event loop. */
export const BATCH = 256;
/** IPv4 header without options. */
const IPV4_HEADER = 20;

/**
 * Decrements the IPv4 TTL at `buf[8]` and patches the header checksum at `buf[10..11]` incrementally
 * (RFC 1624: the 16-bit word TTL|protocol drops by 0x100, so the one's-complement checksum rises by
 * 0x100 with end-around carry). Returns false when the TTL reached 0 (drop the packet).
 */
export function decrementTtl(buf: Uint8Array): boolean {
  const ttl = buf[8]! - 1;
  if (ttl <= 0) return false;
  buf[8] = ttl;
  let sum = ((buf[10]! << 8) | buf[11]!) + 0x100;
  sum = (sum & 0xffff) + (sum >>> 16);
  buf[10] = sum >>> 8;
  buf[11] = sum & 0xff;
  return true;
}

/** Writes the one's-complement checksum of `p[off, off+len)` at `p[at..at+1]` (the field zero before). */
function setChecksum(p: Uint8Array, off: number, len: number, at: number): void {
  let sum = 0;
  for (let i = 0; i + 1 < len; i += 2) sum += (p[off + i]! << 8) | p[off + i + 1]!;
  if (len & 1) sum += p[off + len - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  const c = ~sum & 0xffff;
  p[at] = c >> 8;
  p[at + 1] = c & 0xff;
}

/** Moves packets between a TUN device and a UDP socket until stopped. */
export class UdpForwarder {
  /** Counters. */
  readonly stats: ForwarderStats = {
    tunToUdp: 0,
    udpToTun: 0,
    droppedNoPeer: 0,
    droppedMalformed: 0,
    droppedTtl: 0,
    sendErrors: 0,
    netUnreachableSent: 0,
    wakeups: 0,
  };
  readonly #buf = new Uint8Array(65536);
  // An ICMP error: IPv4 header, ICMP header, the offender's header (up to 60 bytes) and 8 bytes of it.
  readonly #icmp = new Uint8Array(20 + 8 + 60 + 8);
  #local = 0;
  readonly #from = new Uint8Array(16);
  readonly #waker = new Waker();
  #stopping = false;
  #done: Promise<void> | undefined;
  #lastError = 0;
  #tun: Tun | undefined;
  #tunChanged = false;

  /**
   * @param tun the attached TUN device
   * @param sock the bound UDP socket
   * @param peers where packets go, by destination subnet
   */
  constructor(
    tun: Tun,
    private readonly sock: UdpSocket,
    private readonly peers: UdpPeerTable,
  ) {
    this.#tun = tun;
  }

  /** The node's overlay address (the lease's network address), the source of ICMP errors. */
  setLocalAddress(ip: string): void {
    const b = ip.split(".").map(Number);
    this.#local = ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
  }

  /**
   * Switches to a new TUN device (the old one was deleted and created again). Until then, a TUN device
   * that fails (deleted under the loop) is left alone, and datagrams from peers are dropped.
   */
  setTun(tun: Tun): void {
    this.#tun = tun;
    this.#tunChanged = true;
    this.#waker.wake();
  }

  /** Starts the loop (once); the Promise settles when it has stopped. */
  start(): Promise<void> {
    return this.#done ??= this.#run().finally(() => this.#waker.close());
  }

  /** Stops the loop and waits for it; the TUN device and socket stay open (the caller owns them). */
  async stop(): Promise<void> {
    this.#stopping = true;
    this.#waker.wake();
    await this.#done;
  }

  async #run(): Promise<void> {
    const poller = new Poller([this.#tun?.fd ?? -1, this.sock.fd, this.#waker.fd]);
    let tunReady = true, sockReady = true; // drain both once at start
    while (!this.#stopping) {
      const moved = this.#drain(tunReady, sockReady);
      if (this.#tunChanged || !this.#tun) {
        this.#tunChanged = false;
        poller.setFd(0, this.#tun?.fd ?? -1);
      }
      // A full batch means more is probably queued: poll without blocking, which still lets the event
      // loop run timers and I/O callbacks in between.
      await poller.wait(moved >= BATCH ? 0 : -1);
      this.stats.wakeups++;
      tunReady = !!this.#tun && poller.readable(0);
      sockReady = poller.readable(1);
      if (poller.readable(2)) this.#waker.drain();
    }
  }

  /**
   * Moves up to BATCH packets, alternating directions; a side is read only while poll() said it was
   * readable and until it runs dry (a read that finds nothing is a wasted syscall). Returns how many
   * packets moved.
   */
  #drain(tunReady: boolean, sockReady: boolean): number {
    let moved = 0;
    while ((tunReady || sockReady) && moved < BATCH) {
      if (tunReady) {
        try {
          if (this.#tunToUdp()) moved++;
          else tunReady = false;
        } catch (err) {
          tunReady = false;
          this.#failed(err);
        }
      }
      if (sockReady) {
        try {
          if (this.#udpToTun()) moved++;
          else sockReady = false;
        } catch (err) {
          this.#failed(err);
          moved++;
        }
      }
    }
    return moved;
  }

  /** A failed read or write: a TUN device that fails is dropped from the poll set until setTun(). */
  #failed(err: unknown): void {
    this.stats.sendErrors++;
    const tun = this.#tun;
    if (
      tun && err instanceof SyscallError && (err.op === `read ${tun.name}` || err.op === `write ${tun.name}`)
    ) {
      logger.warn("TUN device failed ({error}): waiting for it to be set up again", { error: err.message });
      this.#tun = undefined;
      return;
    }
    this.#logError(err);
  }

  /** One packet from the TUN device to its peer; false when none was queued. */
  #tunToUdp(): boolean {
    const buf = this.#buf;
    const n = this.#tun!.read(buf);
    if (n === 0) return false;
    if (n < IPV4_HEADER || (buf[0]! >> 4) !== 4) {
      this.stats.droppedMalformed++;
      return true;
    }
    const dst = (buf[16]! << 24) | (buf[17]! << 16) | (buf[18]! << 8) | buf[19]!;
    const peer = this.peers.lookup(dst);
    if (peer === undefined) {
      this.stats.droppedNoPeer++;
      this.#netUnreachable(buf, n);
      return true;
    }
    if (!decrementTtl(buf)) {
      this.stats.droppedTtl++;
      return true;
    }
    if (this.sock.sendTo(buf, n, peer.addr)) this.stats.tunToUdp++;
    else this.stats.sendErrors++;
    return true;
  }

  /** One datagram from a peer into the TUN device; false when none was queued. */
  #udpToTun(): boolean {
    const buf = this.#buf;
    const n = this.sock.recvFrom(buf, this.#from);
    if (n < 0) return false;
    if (n < IPV4_HEADER || (buf[0]! >> 4) !== 4) {
      this.stats.droppedMalformed++;
      return true;
    }
    if (!decrementTtl(buf)) {
      this.stats.droppedTtl++;
      return true;
    }
    const tun = this.#tun;
    if (!tun) {
      this.stats.sendErrors++; // no device to deliver to until it is set up again
      return true;
    }
    if (tun.write(buf, n)) this.stats.udpToTun++;
    else this.stats.sendErrors++;
    return true;
  }

  /** Answers the packet in `buf` with ICMP type 3 code 0 (network unreachable), written into the TUN device. */
  #netUnreachable(buf: Uint8Array<ArrayBuffer>, n: number): void {
    const ihl = (buf[0]! & 0x0f) * 4;
    if (!this.#local || ihl < 20 || n < ihl + 8) return;
    if (buf[9] === 1) return; // no ICMP about ICMP
    if ((((buf[6]! & 0x1f) << 8) | buf[7]!) !== 0) return; // only for the first fragment
    const p = this.#icmp;
    const len = 28 + ihl + 8;
    p.fill(0, 0, 28);
    p[0] = 0x45;
    p[2] = len >> 8;
    p[3] = len & 0xff;
    p[8] = 64;
    p[9] = 1;
    const local = this.#local;
    p[12] = local >>> 24;
    p[13] = (local >>> 16) & 0xff;
    p[14] = (local >>> 8) & 0xff;
    p[15] = local & 0xff;
    for (let i = 0; i < 4; i++) p[16 + i] = buf[12 + i]!; // back to the sender
    p.set(buf.subarray(0, ihl + 8), 28);
    setChecksum(p, 0, 20, 10);
    p[20] = 3; // destination unreachable
    p[21] = 0; // network unreachable
    setChecksum(p, 20, len - 20, 22);
    const tun = this.#tun;
    if (tun?.write(p, len)) this.stats.netUnreachableSent++;
  }

  /** Logs a send/receive failure at most once a second (a flood of them must not flood the log). */
  #logError(err: unknown): void {
    const now = Date.now();
    if (now - this.#lastError < 1000) return;
    this.#lastError = now;
    logger.warn("packet loop: {error}", { error: (err as Error).message });
  }
}
