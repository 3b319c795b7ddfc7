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
 * Packets for a destination no peer holds are dropped and counted (`droppedNoPeer`), as are non-IPv4
 * packets (flannel's udp backend is IPv4 only) and packets whose TTL runs out.
 *
 * @module
 */
import { Poller, Waker } from "../../ffi/poll.ts";
import type { Tun } from "../../ffi/tun.ts";
import type { UdpSocket } from "../../ffi/udp_socket.ts";
import { SyscallError } from "../../ffi/syscall_error.ts";
import { log } from "../log.ts";
import type { UdpPeerTable } from "./udp_peers.ts";

const logger = log("backend", "udp");

/** Packets handled per drain before the loop yields to the event loop. */
export const BATCH = 256;
/** IPv4 header without options. */
const IPV4_HEADER = 20;

/** Counters of the loop (exported as metrics). */
export interface UdpForwarderStats {
  /** Packets read from the TUN device and sent to a peer. */
  tunToUdp: number;
  /** Datagrams received and written into the TUN device. */
  udpToTun: number;
  /** Packets from the TUN device for a destination no peer's subnet holds. */
  droppedNoPeer: number;
  /** Packets that were not IPv4 (or shorter than an IPv4 header). */
  droppedMalformed: number;
  /** Packets whose TTL ran out. */
  droppedTtl: number;
  /** Sends that failed (socket buffer full, unreachable peer) and TUN writes that found the queue full. */
  sendErrors: number;
  /** Times the loop woke up from poll(). */
  wakeups: number;
}

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

/** Moves packets between a TUN device and a UDP socket until stopped. */
export class UdpForwarder {
  /** Counters. */
  readonly stats: UdpForwarderStats = {
    tunToUdp: 0,
    udpToTun: 0,
    droppedNoPeer: 0,
    droppedMalformed: 0,
    droppedTtl: 0,
    sendErrors: 0,
    wakeups: 0,
  };
  readonly #buf = new Uint8Array(65536);
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

  /** Logs a send/receive failure at most once a second (a flood of them must not flood the log). */
  #logError(err: unknown): void {
    const now = Date.now();
    if (now - this.#lastError < 1000) return;
    this.#lastError = now;
    logger.warn("packet loop: {error}", { error: (err as Error).message });
  }
}
