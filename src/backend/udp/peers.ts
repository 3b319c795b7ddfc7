/**
 * The udp backend's peer table: remote subnet → the peer's `PublicIP:Port` as a ready-made
 * `sockaddr_in`. The forwarder looks every packet up here by its destination address, so the lookup
 * allocates nothing: per distinct prefix length one Map from the subnet's index (the address shifted
 * right by 32 − prefix, a small integer V8 keeps unboxed) to the peer.
 *
 * The reconciler fills it through {@linkcode UdpPeerDriver} (keys `10.244.1.0/24`, values
 * `192.168.77.12:8285`), like WireGuard peers and vxlan's kernel entries.
 *
 * @module
 */
import { formatSockaddrIn, sockaddrIn } from "../../../ffi/udp_socket.ts";
import type { EntryDriver } from "../../datapath/entries.ts";
import { formatNet, type IPNet, parseIP, parseNet } from "../../net/ip.ts";

/** One peer of the table. */
export interface UdpPeer {
  /** Its subnet. */
  subnet: IPNet;
  /** Where its packets go (`sockaddr_in` of PublicIP:Port). */
  addr: Uint8Array<ArrayBuffer>;
  /** `PublicIP:Port`, for logs and `list()`. */
  endpoint: string;
}

interface PrefixTable {
  prefix: number;
  shift: number;
  peers: Map<number, UdpPeer>;
}

/** Remote subnets and where their packets go. */
export class UdpPeerTable {
  /** Longest prefix first, so a more specific subnet wins. */
  #tables: PrefixTable[] = [];

  /** Number of peers. */
  get size(): number {
    return this.#tables.reduce((n, t) => n + t.peers.size, 0);
  }

  /** Sets (or replaces) the peer for `subnet`. */
  set(subnet: IPNet, publicIP: string, port: number): void {
    if (subnet.ip.family !== 4) throw new Error(`udp backend: ${formatNet(subnet)} is not IPv4`);
    if (subnet.prefix < 2) throw new Error(`udp backend: subnet ${formatNet(subnet)} is too large`);
    let t = this.#tables.find((t) => t.prefix === subnet.prefix);
    if (!t) {
      t = { prefix: subnet.prefix, shift: 32 - subnet.prefix, peers: new Map() };
      this.#tables = [...this.#tables, t].sort((a, b) => b.prefix - a.prefix);
    }
    const addr = sockaddrIn(publicIP, port);
    t.peers.set(Number(subnet.ip.value) >>> t.shift, { subnet, addr, endpoint: formatSockaddrIn(addr) });
  }

  /** Removes the peer for `subnet`; false when there was none. */
  delete(subnet: IPNet): boolean {
    const t = this.#tables.find((t) => t.prefix === subnet.prefix);
    if (!t || !t.peers.delete(Number(subnet.ip.value) >>> t.shift)) return false;
    if (!t.peers.size) this.#tables = this.#tables.filter((x) => x !== t);
    return true;
  }

  /** The peer whose subnet holds `dst` (an IPv4 address as a 32-bit integer, any sign), if any. */
  lookup(dst: number): UdpPeer | undefined {
    const tables = this.#tables;
    for (let i = 0; i < tables.length; i++) {
      const t = tables[i]!;
      const p = t.peers.get(dst >>> t.shift);
      if (p !== undefined) return p;
    }
    return undefined;
  }

  /** Every peer. */
  *entries(): IterableIterator<UdpPeer> {
    for (const t of this.#tables) yield* t.peers.values();
  }
}

/**
 * The reconciler's driver of the table: key = the peer's subnet (`10.244.1.0/24`), value = its
 * `PublicIP:Port`. Everything in the table is weft's, so what no lease wants is pruned.
 */
export class UdpPeerDriver implements EntryDriver {
  readonly name = "udp-peer";

  /** Drives `table`. */
  constructor(private readonly table: UdpPeerTable) {}

  /** The entry value for a peer at `publicIP:port`. */
  static value(publicIP: string, port: number): string {
    return `${publicIP}:${port}`;
  }

  apply(key: string, value: string): void {
    const colon = value.lastIndexOf(":");
    const ip = value.slice(0, colon);
    parseIP(ip); // a malformed value fails here, naming it
    this.table.set(parseNet(key), ip, Number(value.slice(colon + 1)));
  }

  remove(key: string): void {
    this.table.delete(parseNet(key));
  }

  list(): Map<string, string> {
    return new Map([...this.table.entries()].map((p) => [formatNet(p.subnet), p.endpoint]));
  }
}
