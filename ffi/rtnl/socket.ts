/**
 * {@linkcode RtnlSocket}: a NETLINK_ROUTE socket opened through raw system calls (ffi/rtnl/sys.ts),
 * requests sent as {@linkcode NlBuilder} messages, replies read into one reused 64 KiB buffer.
 *
 * Sockets ask the kernel for extended ACKs (its own error text, e.g. "Invalid prefix for given prefix
 * length") and strict checking of dump requests, so a dump can be filtered by the kernel (the addresses
 * of one interface, the ports of one bridge) instead of reading every object and filtering here.
 *
 * @module
 */
import { NetlinkError } from "../errors.ts";
import { attrs, attrStr, messages, NL, type NlBuilder, type NlMessage } from "./codec.ts";
import { addressOf, closeFd, inNetns, sys, sysAsync, SyscallError } from "./sys.ts";

const AF_NETLINK = 16n;
const SOCK_RAW_CLOEXEC = 3n | 0o2000000n;
const NETLINK_ROUTE = 0n;
const SOL_NETLINK = 270n;
const NETLINK_CAP_ACK = 10n;
const NETLINK_EXT_ACK = 11n;
const NETLINK_GET_STRICT_CHK = 12n;
const NLMSGERR_ATTR_MSG = 1;
const EINTR = 4;
const MSG_TRUNC = 0x20n;

/** A NETLINK_ROUTE socket in the namespace it was opened in. Dispose it (`using`). */
export class RtnlSocket implements Disposable {
  #fd: number;
  #seq = Math.floor(Date.now() / 1000) & 0xffffff;
  readonly #rx = new Uint8Array(new ArrayBuffer(64 << 10));
  readonly #rxView = new DataView(this.#rx.buffer);
  /** Whether the kernel filters dumps for us (strict checking, Linux ≥ 4.20). */
  readonly strict: boolean;

  private constructor(fd: number) {
    this.#fd = fd;
    const one = new Uint8Array(new ArrayBuffer(4));
    new DataView(one.buffer).setUint32(0, 1, true);
    const opt = (name: bigint) => sys("setsockopt", BigInt(fd), SOL_NETLINK, name, addressOf(one), 4n) === 0;
    opt(NETLINK_EXT_ACK);
    opt(NETLINK_CAP_ACK);
    this.strict = opt(NETLINK_GET_STRICT_CHK);
  }

  /**
   * Opens a socket in the current namespace, or in the one open as `netnsFd`; `protocol` is the netlink
   * family (NETLINK_ROUTE by default; ffi/conntrack.ts opens NETLINK_NETFILTER, whose messages have the
   * same framing).
   */
  static open(netnsFd?: number, protocol: number = Number(NETLINK_ROUTE)): RtnlSocket {
    const make = () => {
      const fd = sys("socket", AF_NETLINK, SOCK_RAW_CLOEXEC, BigInt(protocol));
      if (fd < 0) throw new SyscallError("netlink socket", -fd);
      return fd;
    };
    return new RtnlSocket(netnsFd === undefined ? make() : inNetns(netnsFd, make));
  }

  /** The next sequence number. */
  nextSeq(): number {
    this.#seq = (this.#seq + 1) >>> 0;
    return this.#seq;
  }

  /**
   * Sends the one message in `b` (built with sequence number `seq`) and collects the replies until the
   * kernel's ACK (for requests with NLM_F_ACK) or NLMSG_DONE (for dumps). A kernel error throws a
   * {@linkcode NetlinkError} for `op` with the kernel's errno and message.
   */
  request(b: NlBuilder, seq: number, op: string): NlMessage[] {
    this.#send(b, op);
    const replies: NlMessage[] = [];
    for (;;) {
      const n = sys(
        "recvfrom",
        BigInt(this.#fd),
        addressOf(this.#rx),
        BigInt(this.#rx.length),
        MSG_TRUNC,
        0n,
        0n,
      );
      if (n < 0) {
        if (-n === EINTR) continue;
        throw new NetlinkError(op, -n, 0, "recvfrom failed");
      }
      if (this.#collect(n, seq, op, replies)) return replies;
    }
  }

  /**
   * {@linkcode request} with `sendto` and every `recvfrom` made off the JS thread (ffi/rtnl/sys.ts
   * `sysAsync`): for dumps the kernel builds while it walks a large table (a conntrack dump). One at a
   * time per socket; `b` must not be touched until it settles.
   */
  async requestAsync(b: NlBuilder, seq: number, op: string): Promise<NlMessage[]> {
    // The kernel starts a dump inside sendto (netlink_dump_start fills the first reply there).
    const out = b.bytesOut();
    let failures = 0;
    while (await sysAsync("sendto", BigInt(this.#fd), addressOf(out), BigInt(out.length), 0n, 0n, 0n) < 0) {
      if (++failures >= 3) throw new NetlinkError(op, 5, /* EIO */ 0, "sendto failed");
    }
    const replies: NlMessage[] = [];
    for (failures = 0;;) {
      const n = await sysAsync(
        "recvfrom",
        BigInt(this.#fd),
        addressOf(this.#rx),
        BigInt(this.#rx.length),
        MSG_TRUNC,
        0n,
        0n,
      );
      if (n < 0) {
        // errno stayed on the pool's thread: retry a few times (EINTR), then give up.
        if (++failures < 3) continue;
        throw new NetlinkError(op, 5, /* EIO */ 0, "recvfrom failed");
      }
      if (this.#collect(n, seq, op, replies)) return replies;
    }
  }

  #send(b: NlBuilder, op: string): void {
    const out = b.bytesOut();
    for (;;) {
      const n = sys("sendto", BigInt(this.#fd), addressOf(out), BigInt(out.length), 0n, 0n, 0n);
      if (n >= 0) return;
      if (-n !== EINTR) throw new NetlinkError(op, -n, 0, "sendto failed");
    }
  }

  /** Takes the `n` bytes received into `replies`; true once the request is answered (ACK or DONE). */
  #collect(n: number, seq: number, op: string, replies: NlMessage[]): boolean {
    if (n > this.#rx.length) throw new NetlinkError(op, 90, 0, `reply of ${n} bytes truncated`);
    for (const m of messages(this.#rxView, n)) {
      if (m.seq !== seq) continue; // a late reply to an earlier request
      if (m.type === NL.DONE) return true;
      if (m.type === NL.ERROR) {
        const err = -m.dv.getInt32(m.at, true);
        if (err === 0) return true; // the ACK
        throw new NetlinkError(op, err, 0, extackMessage(m) ?? "rejected by the kernel");
      }
      // Copy: the receive buffer is reused by the next recvfrom.
      const copy = new DataView(m.dv.buffer.slice(m.at - 16, m.end));
      replies.push({ ...m, dv: copy, at: 16, end: m.end - m.at + 16 });
    }
    return false;
  }

  /** Closes the socket. */
  close(): void {
    if (this.#fd < 0) return;
    closeFd(this.#fd);
    this.#fd = -1;
  }

  /** Same as {@linkcode close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}

/** The kernel's extended-ACK text of an NLMSG_ERROR, if it sent one. */
function extackMessage(m: NlMessage): string | undefined {
  if (!(m.flags & NL.F_ACK_TLVS)) return undefined;
  // struct nlmsgerr { int error; struct nlmsghdr msg; [payload unless capped] } then the TLVs.
  const origLen = m.dv.getUint32(m.at + 4, true);
  const tlvs = m.at + 4 + ((m.flags & NL.F_CAPPED) ? 16 : origLen);
  const msg = attrStr(m.dv, attrs(m.dv, tlvs, m.end).get(NLMSGERR_ATTR_MSG));
  return msg?.trim() || undefined;
}
