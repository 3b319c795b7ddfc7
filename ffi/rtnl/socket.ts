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
import { attrMap, attrString, messages, type NlBuilder, type NlMessage, payload } from "../nl_codec.ts";
import {
  AF,
  NETLINK,
  NETLINK_OPT,
  NLM_F,
  NLMSG,
  NLMSG_HDRLEN,
  NLMSGERR_ATTR_MSG,
  SOL_NETLINK,
} from "../nl_consts.ts";
import { addressOf, closeFd, inNetns, sys, SyscallError } from "./sys.ts";

const SOCK_RAW_CLOEXEC = 3n | 0o2000000n;
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
    const opt = (name: number) =>
      sys("setsockopt", BigInt(fd), BigInt(SOL_NETLINK), BigInt(name), addressOf(one), 4n) === 0;
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

  /**
   * Sends every message in `b` in one datagram (an nftables batch) and reads until each of `seqs` is
   * answered: an ACK, an error, or (dumps) NLMSG_DONE. The first kernel error throws, once all answers
   * are in (the kernel answers every message of a batch, also after an error).
   */
  batch(b: NlBuilder, seqs: number[], op: string): NlMessage[] {
    const out = b.bytesOut();
    for (;;) {
      const n = sys("sendto", BigInt(this.#fd), addressOf(out), BigInt(out.length), 0n, 0n, 0n);
      if (n >= 0) break;
      if (-n !== EINTR) throw new NetlinkError(op, -n, 0, "sendto failed");
    }
    const replies: NlMessage[] = [];
    const waiting = new Set(seqs);
    let failed: NetlinkError | undefined;
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
      if (n > this.#rx.length) throw new NetlinkError(op, 90, 0, `reply of ${n} bytes truncated`);
      for (const m of messages(this.#rxView, n)) {
        if (!waiting.has(m.seq)) continue; // a late reply to an earlier request
        if (m.type === NLMSG.DONE || m.type === NLMSG.ERROR) {
          const err = m.type === NLMSG.ERROR ? -m.dv.getInt32(m.at, true) : 0;
          if (err !== 0) {
            failed ??= new NetlinkError(op, err, 0, extackMessage(m) ?? "rejected by the kernel");
          }
          waiting.delete(m.seq); // answered: its ACK, its error, or the end of its dump
          if (waiting.size) continue;
          if (failed) throw failed;
          return replies;
        }
        // Copy: the receive buffer is reused by the next recvfrom.
        const copy = new DataView(m.dv.buffer.slice(m.at - NLMSG_HDRLEN, m.end));
        replies.push({ ...m, dv: copy, at: NLMSG_HDRLEN, end: m.end - m.at + NLMSG_HDRLEN });
      }
    }
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
