/**
 * Counts the routes of one protocol in a namespace's main table with one raw netlink dump, walking only
 * the message headers — for benches that poll "are all N routes in yet?" while an agent programs them.
 * A libnl route list builds a cache object per route (~10 µs each: 100 ms per poll at 10 000 routes),
 * which would steal a good part of a core from the agent under test on a 2-core machine; this costs the
 * kernel's dump and nothing more.
 *
 * @module
 */
import { withNetns } from "../ffi/mod.ts";

const AF_NETLINK = 16, SOCK_RAW = 3, SOCK_CLOEXEC = 0o2000000, NETLINK_ROUTE = 0;
const SOL_NETLINK = 270, NETLINK_GET_STRICT_CHK = 12;
const RTM_NEWROUTE = 24, RTM_GETROUTE = 26, NLMSG_DONE = 3, NLMSG_ERROR = 2;
const NLM_F_REQUEST = 1, NLM_F_DUMP = 0x300;
const AF_INET = 2, RT_TABLE_MAIN = 254;

const libc = Deno.dlopen("libc.so.6", {
  socket: { parameters: ["i32", "i32", "i32"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
  send: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  recv: { parameters: ["i32", "buffer", "usize", "i32"], result: "isize" },
  close: { parameters: ["i32"], result: "i32" },
});

/** A netlink socket inside one namespace that counts IPv4 main-table routes of a protocol. */
export class RouteCounter implements Disposable {
  readonly #fd: number;
  readonly #buf = new Uint8Array(1 << 16);
  #seq = 0;

  /** Opens the socket inside `netns` (it stays bound to that namespace). */
  constructor(netns: string, readonly protocol: number) {
    this.#fd = withNetns(
      netns,
      () => libc.symbols.socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE),
    );
    if (this.#fd < 0) throw new Error(`netlink socket in ${netns} failed`);
    // Strict checking makes the kernel filter the dump by table and protocol itself (Linux ≥ 4.20);
    // without it the count below still filters, only the dump is longer.
    libc.symbols.setsockopt(this.#fd, SOL_NETLINK, NETLINK_GET_STRICT_CHK, new Uint8Array([1, 0, 0, 0]), 4);
  }

  /** The number of IPv4 routes in the main table with this counter's protocol, now. */
  count(): number {
    const req = new Uint8Array(16 + 12);
    const v = new DataView(req.buffer);
    v.setUint32(0, req.length, true);
    v.setUint16(4, RTM_GETROUTE, true);
    v.setUint16(6, NLM_F_REQUEST | NLM_F_DUMP, true);
    v.setUint32(8, ++this.#seq, true);
    req[16] = AF_INET; // rtm_family
    req[20] = RT_TABLE_MAIN; // rtm_table
    req[21] = this.protocol; // rtm_protocol
    if (Number(libc.symbols.send(this.#fd, req, BigInt(req.length), 0)) !== req.length) {
      throw new Error("netlink route dump: send failed");
    }
    const dv = new DataView(this.#buf.buffer);
    let n = 0;
    for (;;) {
      const got = Number(libc.symbols.recv(this.#fd, this.#buf, BigInt(this.#buf.length), 0));
      if (got <= 0) throw new Error("netlink route dump: recv failed");
      for (let off = 0; off + 16 <= got;) {
        const len = dv.getUint32(off, true);
        const type = dv.getUint16(off + 4, true);
        if (type === NLMSG_DONE) return n;
        if (type === NLMSG_ERROR) {
          throw new Error(`netlink route dump: error ${-dv.getInt32(off + 16, true)}`);
        }
        if (
          type === RTM_NEWROUTE && this.#buf[off + 20] === RT_TABLE_MAIN &&
          this.#buf[off + 21] === this.protocol
        ) {
          n++;
        }
        if (len < 16) throw new Error("netlink route dump: malformed message");
        off += (len + 3) & ~3;
      }
    }
  }

  /** Closes the socket. */
  [Symbol.dispose](): void {
    libc.symbols.close(this.#fd);
  }
}
