/**
 * {@linkcode RtnlChanges}: the kernel's own notifications of route, next-hop object, neighbour/FDB, link
 * and address changes (rtnetlink multicast groups), queued on a socket of their own and read without
 * blocking. It answers one question cheaply: has anything weft programs changed since it last looked?
 * An idle agent then needs no full read of the kernel to know its entries are still there
 * (src/datapath/reconciler.ts).
 *
 * Nothing is lost silently: when the socket's queue overflows the kernel says so (ENOBUFS on the next
 * read), and that counts as a change.
 *
 * @module
 */
import { messages } from "../nl_codec.ts";
import { AF, NETLINK_OPT, RTM } from "../nl_consts.ts";
import { ERRNO, SyscallError } from "../syscall_error.ts";
import { addressOf, closeFd, recvInto, setNetlinkOption, SOCK_RAW_CLOEXEC, sys } from "./sys.ts";

/**
 * RTMGRP_* (the legacy group bits bind() takes): links, neighbours, IPv4/IPv6 addresses and routes. Links
 * and addresses count because the kernel removes routes with them without announcing each route: an
 * interface set down or deleted takes its IPv4 routes along silently.
 */
const GROUPS = 0x1 | 0x4 | 0x10 | 0x40 | 0x100 | 0x400;
/** RTNLGRP_NEXTHOP: past the 32 bits of bind(), joined with NETLINK_ADD_MEMBERSHIP. */
const RTNLGRP_NEXTHOP = 32;
const SOCK_NONBLOCK = 0o4000n;
const MSG_DONTWAIT = 0x40n;
const RT_TABLE_LOCAL = 255;

/** Whether a notification (type `type`, payload at `off` in `view`) may concern `devices` or routes. */
function concerns(view: DataView, type: number, off: number, devices: ReadonlySet<number>): boolean {
  switch (type) {
    case RTM.NEWLINK:
    case RTM.DELLINK:
    case RTM.NEWADDR:
    case RTM.DELADDR:
    case RTM.NEWNEXTHOP:
    case RTM.DELNEXTHOP:
      return true;
    case RTM.NEWROUTE:
    case RTM.DELROUTE:
      // rtmsg.rtm_table: the local table follows addresses (a pod's, a node's), never weft's routes.
      return view.getUint8(off + 4) !== RT_TABLE_LOCAL;
    case RTM.NEWNEIGH:
    case RTM.DELNEIGH:
      // ndmsg.ndm_ifindex: neighbours and FDB entries of other devices (the underlay's ARP) do not count.
      return devices.has(view.getInt32(off + 4, true));
    default:
      return false;
  }
}

/** A subscription to route, next-hop, neighbour/FDB, link and address notifications. Dispose it (`using`). */
export class RtnlChanges implements Disposable {
  #fd: number;
  readonly #rx = new Uint8Array(new ArrayBuffer(64 << 10));
  readonly #view = new DataView(this.#rx.buffer);

  private constructor(fd: number) {
    this.#fd = fd;
  }

  /** Subscribes in the calling thread's namespace. */
  static open(): RtnlChanges {
    const fd = sys("socket", BigInt(AF.NETLINK), SOCK_RAW_CLOEXEC | SOCK_NONBLOCK, 0n); // NETLINK_ROUTE
    if (fd < 0) throw new SyscallError("netlink socket", -fd);
    try {
      // struct sockaddr_nl: family, pad, pid 0 (the kernel picks one), groups.
      const addr = new Uint8Array(new ArrayBuffer(12));
      const v = new DataView(addr.buffer);
      v.setUint16(0, AF.NETLINK, true);
      v.setUint32(8, GROUPS, true);
      let rc = sys("bind", BigInt(fd), addressOf(addr), 12n);
      if (rc < 0) throw new SyscallError("netlink bind", -rc);
      // Kernels before 5.3 have no next-hop objects, nor their group: nothing to miss there.
      rc = setNetlinkOption(fd, NETLINK_OPT.ADD_MEMBERSHIP, RTNLGRP_NEXTHOP);
      if (rc < 0 && -rc !== ERRNO.EINVAL) throw new SyscallError("netlink join nexthop group", -rc);
      return new RtnlChanges(fd);
    } catch (err) {
      closeFd(fd);
      throw err;
    }
  }

  /**
   * Reads every notification queued since the last call; true when one was about a route outside the
   * local table, a next-hop object, a link, an address, or a neighbour or FDB entry of `devices` — or
   * when some were lost (the queue overflowed) or could not be read.
   */
  changed(devices: ReadonlySet<number>): boolean {
    let changed = false;
    for (;;) {
      const n = recvInto(this.#fd, this.#rx, MSG_DONTWAIT);
      if (n < 0) {
        if (-n === ERRNO.EAGAIN) return changed;
        if (-n === ERRNO.EINTR) continue;
        if (-n === ERRNO.ENOBUFS) {
          changed = true; // overflowed: what was dropped is unknown; the queue works on
          continue;
        }
        return true;
      }
      if (changed) continue; // the rest of the queue is only drained
      for (const m of messages(this.#view, n)) {
        if (concerns(m.dv, m.type, m.at, devices)) {
          changed = true;
          break;
        }
      }
    }
  }

  /** Closes the socket. */
  close(): void {
    if (this.#fd >= 0) closeFd(this.#fd);
    this.#fd = -1;
  }

  /** Same as {@linkcode close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}
