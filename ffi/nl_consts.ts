/**
 * The one table of netlink numbers weft uses (linux/netlink.h, linux/rtnetlink.h, linux/if_link.h,
 * linux/if_addr.h, linux/neighbour.h, linux/if.h, and libnl's own callback codes), shared by the libnl
 * wrappers (ffi/links.ts, routes.ts, neighs.ts, addrs.ts, socket.ts, genl.ts), the raw rtnetlink of the
 * CNI plugin (ffi/rtnl/) and the codec (ffi/nl_codec.ts). Numbers only: it imports nothing, so the CNI
 * path that loads it binds no library.
 *
 * @module
 */

/** sizeof(struct nlmsghdr). */
export const NLMSG_HDRLEN = 16;
/** sizeof(struct genlmsghdr). */
export const GENL_HDRLEN = 4;
/** sizeof(struct ifinfomsg). */
export const IFINFOMSG_LEN = 16;
/** sizeof(struct ifaddrmsg). */
export const IFADDRMSG_LEN = 8;
/** sizeof(struct rtmsg). */
export const RTMSG_LEN = 12;

/** Control message types (NLMSG_*). */
export const NLMSG = { NOOP: 1, ERROR: 2, DONE: 3 } as const;

/** Message flags (NLM_F_*). Some bits mean different things in requests, dumps and errors. */
export const NLM_F = {
  REQUEST: 0x1,
  MULTI: 0x2,
  ACK: 0x4,
  DUMP: 0x300,
  REPLACE: 0x100,
  EXCL: 0x200,
  CREATE: 0x400,
  APPEND: 0x800,
  /** In an NLMSG_ERROR: extended-ACK attributes follow. */
  ACK_TLVS: 0x200,
  /** In an NLMSG_ERROR: the request was not echoed back (only its header is). */
  CAPPED: 0x100,
} as const;

/** rtnetlink message types (RTM_*). */
export const RTM = {
  NEWLINK: 16,
  DELLINK: 17,
  GETLINK: 18,
  SETLINK: 19,
  NEWADDR: 20,
  DELADDR: 21,
  GETADDR: 22,
  NEWROUTE: 24,
  DELROUTE: 25,
  GETROUTE: 26,
  NEWNEIGH: 28,
  DELNEIGH: 29,
  GETNEIGH: 30,
  NEWNEXTHOP: 104,
  DELNEXTHOP: 105,
  GETNEXTHOP: 106,
} as const;

/** NLA_F_NESTED: the payload is itself a list of attributes. */
export const NLA_F_NESTED = 0x8000;
/** NLA_F_NET_BYTEORDER: the payload is in network byte order. */
export const NLA_F_NET_BYTEORDER = 0x4000;
/** The bits of `nla_type` that are the type (without the two flags). */
export const NLA_TYPE_MASK = 0x3fff;

/** Address families (AF_*). */
export const AF = { UNSPEC: 0, INET: 2, BRIDGE: 7, INET6: 10, NETLINK: 16, LLC: 26 } as const;

/** Netlink protocols weft speaks (NETLINK_*). */
export const NETLINK = { ROUTE: 0, NETFILTER: 12, GENERIC: 16 } as const;

/** SOL_NETLINK and its socket options. */
export const SOL_NETLINK = 270;
/** Netlink socket options (NETLINK_* at SOL_NETLINK). */
export const NETLINK_OPT = { ADD_MEMBERSHIP: 1, CAP_ACK: 10, EXT_ACK: 11, GET_STRICT_CHK: 12 } as const;
/** NLMSGERR_ATTR_MSG: the kernel's error text in an extended ACK. */
export const NLMSGERR_ATTR_MSG = 1;

/** Interface flags (IFF_*). */
export const IFF = { UP: 0x1, RUNNING: 0x40, LOWER_UP: 0x10000 } as const;

/** Link attributes (IFLA_*). */
export const IFLA = {
  ADDRESS: 1,
  IFNAME: 3,
  MTU: 4,
  MASTER: 10,
  PROTINFO: 12,
  LINKINFO: 18,
  NET_NS_FD: 28,
  EXT_MASK: 29,
} as const;
/** Attributes inside IFLA_LINKINFO (IFLA_INFO_*). */
export const IFLA_INFO = { KIND: 1, DATA: 2 } as const;
/** VETH_INFO_PEER: the peer's ifinfomsg and attributes inside a veth's IFLA_INFO_DATA. */
export const VETH_INFO_PEER = 1;
/** IFLA_BRPORT_MODE (inside IFLA_PROTINFO of a bridge port): hairpin. */
export const IFLA_BRPORT_MODE = 4;
/** RTEXT_FILTER_SKIP_STATS (IFLA_EXT_MASK): the ~1 KiB of counters per link are not needed. */
export const RTEXT_FILTER_SKIP_STATS = 1 << 3;
/** VXLAN_F_GBP (libnl's vxlan flag): Group Based Policy. */
export const VXLAN_F_GBP = 1;

/** Address attributes (IFA_*). */
export const IFA = { ADDRESS: 1, LOCAL: 2 } as const;
/** IFA_F_NODAD: an IPv6 address usable at once, without duplicate address detection. */
export const IFA_F_NODAD = 0x02;

/** Route attributes (RTA_*). */
export const RTA = {
  DST: 1,
  OIF: 4,
  GATEWAY: 5,
  PRIORITY: 6,
  PREFSRC: 7,
  MULTIPATH: 9,
  TABLE: 15,
  NH_ID: 30,
} as const;
/** `struct nhmsg { u8 family; u8 scope; u8 protocol; u8 resvd; u32 flags; }`: a next-hop object's header. */
export const NHMSG_LEN = 8;
/** Next-hop object attributes (NHA_*, Linux ≥ 5.3). */
export const NHA = { ID: 1, BLACKHOLE: 4, OIF: 5, GATEWAY: 6 } as const;
/** Route types (RTN_*). */
export const RTN = { UNICAST: 1, LOCAL: 2, BLACKHOLE: 6, UNREACHABLE: 7 } as const;
/** Route scopes (RT_SCOPE_*). */
export const RT_SCOPE = { UNIVERSE: 0, LINK: 253, HOST: 254, NOWHERE: 255 } as const;
/** RTNH_F_ONLINK: the next hop is on-link. */
export const RTNH_F_ONLINK = 4;
/** RT_TABLE_MAIN: the main routing table. */
export const RT_TABLE_MAIN = 254;
/** RTPROT_BOOT: the route protocol flannel's netlink library stamps. */
export const RTPROT_BOOT = 3;

/** NUD_PERMANENT: a neighbour entry that never expires. */
export const NUD_PERMANENT = 0x80;
/** `struct ndmsg`: family, pads, ifindex, state, flags, type. */
export const NDMSG_LEN = 12;
/** Neighbour attributes (NDA_*). */
export const NDA = { DST: 1, LLADDR: 2 } as const;
/** NTF_SELF: the entry belongs to the device itself (the VXLAN FDB), not to a bridge master. */
export const NTF_SELF = 0x02;

/** libnl's callback codes (netlink/handlers.h) and cache flags. */
export const LIBNL = {
  /** NL_CB_VALID: a valid message arrived. */
  CB_VALID: 0,
  /** NL_CB_DEFAULT: libnl's own handling. */
  CB_DEFAULT: 0,
  /** NL_CB_CUSTOM: a callback of our own. */
  CB_CUSTOM: 3,
  /** NL_OK: go on. */
  OK: 0,
  /** NL_STOP: stop, keeping libnl's own handling. */
  STOP: 2,
} as const;
