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
import { ERRNO } from "../syscall_error.ts";
import { attrMap, attrString, messages, type NlBuilder, type NlMessage, payload } from "../nl_codec.ts";
import { AF, NETLINK, NETLINK_OPT, NLM_F, NLMSG, NLMSG_HDRLEN, NLMSGERR_ATTR_MSG } from "../nl_consts.ts";
import {
  addressOf,
  closeFd,
  inNetns,
  recvInto,
  setNetlinkOption,
  SOCK_RAW_CLOEXEC,
  sys,
  sysAsync,
  SyscallError,
} from "./sys.ts";

/** What a request's replies are collected into. */
interface Collect {
  replies: NlMessage[];
  /** Instead of copying each reply into `replies`: hand it over in place (valid during the call only). */
  visit?: (m: NlMessage) => void;
  waiting: Set<number>;
  failed: NetlinkError | undefined;
}

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
    const opt = (name: number) => setNetlinkOption(fd, name, 1) === 0;
    opt(NETLINK_OPT.EXT_ACK);
    opt(NETLINK_OPT.CAP_ACK);
    this.strict = opt(NETLINK_OPT.GET_STRICT_CHK);
  }

  /**
   * Opens a socket in the current namespace, or in the one open as `netnsFd`; `protocol` another netlink
   * family than NETLINK_ROUTE (NETLINK_NETFILTER for nftables: ffi/rtnl/nft.ts).
   */
  static open(netnsFd?: number, protocol: number = NETLINK.ROUTE): RtnlSocket {
    const make = () => {
      const fd = sys("socket", BigInt(AF.NETLINK), SOCK_RAW_CLOEXEC, BigInt(protocol));
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
    return this.batch(b, [seq], op);
  }

  /** Sends what `b` holds as one datagram (again after EINTR). */
  #send(b: NlBuilder, op: string): void {
    const out = b.bytesOut();
    for (;;) {
      const n = sys("sendto", BigInt(this.#fd), addressOf(out), BigInt(out.length), 0n, 0n, 0n);
      if (n >= 0) return;
      if (-n !== ERRNO.EINTR) throw new NetlinkError(op, -n, 0, "sendto failed");
    }
  }

  /** Receives the next datagram into the receive buffer; returns its length (over the buffer: truncated). */
  #receive(op: string): number {
    for (;;) {
      const n = recvInto(this.#fd, this.#rx, MSG_TRUNC);
      if (n >= 0) return n;
      if (-n !== ERRNO.EINTR) throw new NetlinkError(op, -n, 0, "recvfrom failed");
    }
  }

  /**
   * Sends every message in `b` in one datagram (an nftables batch) and reads until each of `seqs` is
   * answered: an ACK, an error, or (dumps) NLMSG_DONE. The first kernel error throws, once all answers
   * are in (the kernel answers every message of a batch, also after an error).
   */
  batch(b: NlBuilder, seqs: number[], op: string): NlMessage[] {
    this.#send(b, op);
    const st: Collect = { replies: [], waiting: new Set(seqs), failed: undefined };
    for (;;) {
      const n = this.#receive(op);
      if (this.#collect(n, st, op)) return st.replies;
    }
  }

  /**
   * Sends the dump request in `b` (sequence number `seq`) and calls `visit` with each reply in the receive
   * buffer itself, valid only during the call: a full pass reads thousands of entries without copying
   * them. A kernel error throws, as {@linkcode request}.
   */
  dumpEach(b: NlBuilder, seq: number, op: string, visit: (m: NlMessage) => void): void {
    this.#send(b, op);
    const st: Collect = { replies: [], waiting: new Set([seq]), failed: undefined, visit };
    for (;;) {
      const n = this.#receive(op);
      if (this.#collect(n, st, op)) return;
    }
  }

  /**
   * Sends every message in `b` in one datagram, where only the last one (`ackSeq`) asks for an ACK: the
   * kernel handles a datagram's messages in order and answers the others only when they fail, so once the
   * last is answered every error is in. Returns the kernel's errno and text for each failed message by its
   * sequence number (a kernel error throws nothing; a failed send or receive throws, for them all). Two
   * system calls for the whole batch, where one request at a time takes two each.
   */
  sendQuiet(b: NlBuilder, ackSeq: number, op: string): Map<number, { errno: number; detail: string }> {
    this.#send(b, op);
    const failed = new Map<number, { errno: number; detail: string }>();
    for (;;) {
      const n = this.#receive(op);
      if (n > this.#rx.length) throw new NetlinkError(op, 90, 0, `reply of ${n} bytes truncated`);
      for (const m of messages(this.#rxView, n)) {
        if (m.type !== NLMSG.ERROR) continue;
        const err = -m.dv.getInt32(m.at, true);
        if (err !== 0) {
          failed.set(m.seq, { errno: err, detail: extackMessage(m) ?? "rejected by the kernel" });
        }
        if (m.seq === ackSeq) return failed;
      }
    }
  }

  /**
   * {@linkcode request} with `sendto` and every `recvfrom` made off the JS thread (ffi/rtnl/sys.ts
   * `sysAsync`): for dumps the kernel builds while it walks a large table (a conntrack dump starts inside
   * sendto: netlink_dump_start fills the first reply there). One at a time per socket; `b` must not be
   * touched until it settles.
   */
  async requestAsync(b: NlBuilder, seq: number, op: string): Promise<NlMessage[]> {
    const out = b.bytesOut();
    let failures = 0;
    while (await sysAsync("sendto", BigInt(this.#fd), addressOf(out), BigInt(out.length), 0n, 0n, 0n) < 0) {
      if (++failures >= 3) throw new NetlinkError(op, 5, /* EIO */ 0, "sendto failed");
    }
    const st: Collect = { replies: [], waiting: new Set([seq]), failed: undefined };
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
      if (this.#collect(n, st, op)) return st.replies;
    }
  }

  /** Takes the `n` bytes received; true once every request is answered (the first error throws). */
  #collect(n: number, st: Collect, op: string): boolean {
    if (n > this.#rx.length) throw new NetlinkError(op, 90, 0, `reply of ${n} bytes truncated`);
    for (const m of messages(this.#rxView, n)) {
      if (!st.waiting.has(m.seq)) continue; // a late reply to an earlier request
      if (m.type === NLMSG.DONE || m.type === NLMSG.ERROR) {
        const err = m.type === NLMSG.ERROR ? -m.dv.getInt32(m.at, true) : 0;
        if (err !== 0) {
          st.failed ??= new NetlinkError(op, err, 0, extackMessage(m) ?? "rejected by the kernel");
        }
        st.waiting.delete(m.seq); // answered: its ACK, its error, or the end of its dump
        if (st.waiting.size) continue;
        if (st.failed) throw st.failed;
        return true;
      }
      if (st.visit) {
        st.visit(m);
        continue;
      }
      // Copy: the receive buffer is reused by the next recvfrom.
      const copy = new DataView(m.dv.buffer.slice(m.at - NLMSG_HDRLEN, m.end));
      st.replies.push({ ...m, dv: copy, at: NLMSG_HDRLEN, end: m.end - m.at + NLMSG_HDRLEN });
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
  if (!(m.flags & NLM_F.ACK_TLVS)) return undefined;
  // struct nlmsgerr { int error; struct nlmsghdr msg; [payload unless capped] } then the TLVs.
  const origLen = m.dv.getUint32(m.at + 4, true);
  const tlvs = 4 + ((m.flags & NLM_F.CAPPED) ? NLMSG_HDRLEN : origLen);
  const msg = attrString(attrMap(payload(m, tlvs)).get(NLMSGERR_ATTR_MSG));
  return msg?.trim() || undefined;
}
