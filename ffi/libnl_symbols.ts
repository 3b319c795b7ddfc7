/**
 * Symbol tables for libnl-3, libnl-route-3 and libnl-genl-3, in the denodrivers/sqlite3 style: one object per library,
 * each entry's C prototype in a comment. Only the safe layer (netlink.ts, links.ts, addrs.ts, routes.ts, neighs.ts,
 * genl.ts, nl_addr.ts, through loader.ts) uses them.
 *
 * @module
 */

/** libnl-3.so.200: sockets, addresses, caches, raw messages, errors. */
export const LIBNL_SYMBOLS = {
  // struct nl_sock *nl_socket_alloc(void);
  nl_socket_alloc: { parameters: [], result: "pointer" },
  // void nl_socket_free(struct nl_sock *);
  nl_socket_free: { parameters: ["pointer"], result: "void" },
  // int nl_connect(struct nl_sock *, int protocol);
  nl_connect: { parameters: ["pointer", "i32"], result: "i32" },
  // int nl_socket_set_buffer_size(struct nl_sock *, int rxbuf, int txbuf);
  nl_socket_set_buffer_size: { parameters: ["pointer", "i32", "i32"], result: "i32" },
  // void nl_socket_disable_msg_peek(struct nl_sock *);
  nl_socket_disable_msg_peek: { parameters: ["pointer"], result: "void" },
  // int nl_socket_set_msg_buf_size(struct nl_sock *, size_t);
  nl_socket_set_msg_buf_size: { parameters: ["pointer", "usize"], result: "i32" },
  // struct nl_cb *nl_socket_get_cb(const struct nl_sock *);
  nl_socket_get_cb: { parameters: ["pointer"], result: "pointer" },
  // int nl_cb_err(struct nl_cb *, enum nl_cb_kind, nl_recvmsg_err_cb_t, void *arg);
  nl_cb_err: { parameters: ["pointer", "i32", "function", "pointer"], result: "i32" },
  // void nl_cb_put(struct nl_cb *);
  nl_cb_put: { parameters: ["pointer"], result: "void" },
  // const char *nl_geterror(int);
  nl_geterror: { parameters: ["i32"], result: "pointer" },
  // struct nl_addr *nl_addr_build(int family, const void *buf, size_t size);
  nl_addr_build: { parameters: ["i32", "buffer", "usize"], result: "pointer" },
  // void nl_addr_put(struct nl_addr *);
  nl_addr_put: { parameters: ["pointer"], result: "void" },
  // void *nl_addr_get_binary_addr(const struct nl_addr *);
  nl_addr_get_binary_addr: { parameters: ["pointer"], result: "pointer" },
  // unsigned int nl_addr_get_len(const struct nl_addr *);
  nl_addr_get_len: { parameters: ["pointer"], result: "u32" },
  // void nl_addr_set_prefixlen(struct nl_addr *, int);
  nl_addr_set_prefixlen: { parameters: ["pointer", "i32"], result: "void" },
  // unsigned int nl_addr_get_prefixlen(const struct nl_addr *);
  nl_addr_get_prefixlen: { parameters: ["pointer"], result: "u32" },
  // struct nl_object *nl_cache_get_first(struct nl_cache *);
  nl_cache_get_first: { parameters: ["pointer"], result: "pointer" },
  // struct nl_object *nl_cache_get_next(struct nl_object *);
  nl_cache_get_next: { parameters: ["pointer"], result: "pointer" },
  // void nl_cache_free(struct nl_cache *);
  nl_cache_free: { parameters: ["pointer"], result: "void" },
  // struct nl_msg *nlmsg_alloc_simple(int nlmsgtype, int flags);
  nlmsg_alloc_simple: { parameters: ["i32", "i32"], result: "pointer" },
  // int nlmsg_append(struct nl_msg *, void *data, size_t len, int pad);
  nlmsg_append: { parameters: ["pointer", "buffer", "usize", "i32"], result: "i32" },
  // void nlmsg_free(struct nl_msg *);
  nlmsg_free: { parameters: ["pointer"], result: "void" },
  // struct nlattr *nla_nest_start(struct nl_msg *, int attrtype);
  nla_nest_start: { parameters: ["pointer", "i32"], result: "pointer" },
  // int nla_nest_end(struct nl_msg *, struct nlattr *start);
  nla_nest_end: { parameters: ["pointer", "pointer"], result: "i32" },
  // int nla_put_u8(struct nl_msg *, int attrtype, uint8_t value);
  nla_put_u8: { parameters: ["pointer", "i32", "u8"], result: "i32" },
  // int nl_send_sync(struct nl_sock *, struct nl_msg *);  (frees the message)
  nl_send_sync: { parameters: ["pointer", "pointer"], result: "i32" },
  // int nl_send_auto(struct nl_sock *, struct nl_msg *);  (does not free the message)
  nl_send_auto: { parameters: ["pointer", "pointer"], result: "i32" },
  // int nl_recvmsgs_default(struct nl_sock *);
  nl_recvmsgs_default: { parameters: ["pointer"], result: "i32" },
  // int nl_wait_for_ack(struct nl_sock *);
  nl_wait_for_ack: { parameters: ["pointer"], result: "i32" },
  // int nl_socket_modify_cb(struct nl_sock *, enum nl_cb_type, enum nl_cb_kind, nl_recvmsg_msg_cb_t, void *arg);
  nl_socket_modify_cb: { parameters: ["pointer", "i32", "i32", "function", "pointer"], result: "i32" },
  // struct nlmsghdr *nlmsg_hdr(struct nl_msg *);  (borrowed)
  nlmsg_hdr: { parameters: ["pointer"], result: "pointer" },
} as const satisfies Deno.ForeignLibraryInterface;

/** libnl-route-3.so.200: links (vxlan, veth, bridge, dummy), addresses, routes, neighbours. */
export const LIBNL_ROUTE_SYMBOLS = {
  // struct rtnl_link *rtnl_link_alloc(void);
  rtnl_link_alloc: { parameters: [], result: "pointer" },
  // void rtnl_link_put(struct rtnl_link *);
  rtnl_link_put: { parameters: ["pointer"], result: "void" },
  // int rtnl_link_get_kernel(struct nl_sock *, int ifindex, const char *name, struct rtnl_link **result);
  rtnl_link_get_kernel: { parameters: ["pointer", "i32", "buffer", "buffer"], result: "i32" },
  // int rtnl_link_alloc_cache(struct nl_sock *, int family, struct nl_cache **);
  rtnl_link_alloc_cache: { parameters: ["pointer", "i32", "buffer"], result: "i32" },
  // int rtnl_link_add(struct nl_sock *, struct rtnl_link *, int flags);
  rtnl_link_add: { parameters: ["pointer", "pointer", "i32"], result: "i32" },
  // int rtnl_link_delete(struct nl_sock *, const struct rtnl_link *);
  rtnl_link_delete: { parameters: ["pointer", "pointer"], result: "i32" },
  // int rtnl_link_change(struct nl_sock *, struct rtnl_link *orig, struct rtnl_link *changes, int flags);
  rtnl_link_change: { parameters: ["pointer", "pointer", "pointer", "i32"], result: "i32" },
  // void rtnl_link_set_name(struct rtnl_link *, const char *);
  rtnl_link_set_name: { parameters: ["pointer", "buffer"], result: "void" },
  // char *rtnl_link_get_name(struct rtnl_link *);
  rtnl_link_get_name: { parameters: ["pointer"], result: "pointer" },
  // int rtnl_link_set_type(struct rtnl_link *, const char *);
  rtnl_link_set_type: { parameters: ["pointer", "buffer"], result: "i32" },
  // char *rtnl_link_get_type(struct rtnl_link *);
  rtnl_link_get_type: { parameters: ["pointer"], result: "pointer" },
  // void rtnl_link_set_flags(struct rtnl_link *, unsigned int);
  rtnl_link_set_flags: { parameters: ["pointer", "u32"], result: "void" },
  // void rtnl_link_unset_flags(struct rtnl_link *, unsigned int);
  rtnl_link_unset_flags: { parameters: ["pointer", "u32"], result: "void" },
  // unsigned int rtnl_link_get_flags(struct rtnl_link *);
  rtnl_link_get_flags: { parameters: ["pointer"], result: "u32" },
  // void rtnl_link_set_mtu(struct rtnl_link *, unsigned int);
  rtnl_link_set_mtu: { parameters: ["pointer", "u32"], result: "void" },
  // unsigned int rtnl_link_get_mtu(struct rtnl_link *);
  rtnl_link_get_mtu: { parameters: ["pointer"], result: "u32" },
  // void rtnl_link_set_ifindex(struct rtnl_link *, int);
  rtnl_link_set_ifindex: { parameters: ["pointer", "i32"], result: "void" },
  // int rtnl_link_get_ifindex(struct rtnl_link *);
  rtnl_link_get_ifindex: { parameters: ["pointer"], result: "i32" },
  // void rtnl_link_set_addr(struct rtnl_link *, struct nl_addr *);
  rtnl_link_set_addr: { parameters: ["pointer", "pointer"], result: "void" },
  // struct nl_addr *rtnl_link_get_addr(struct rtnl_link *);  (borrowed)
  rtnl_link_get_addr: { parameters: ["pointer"], result: "pointer" },
  // void rtnl_link_set_master(struct rtnl_link *, int);
  rtnl_link_set_master: { parameters: ["pointer", "i32"], result: "void" },
  // int rtnl_link_get_master(struct rtnl_link *);
  rtnl_link_get_master: { parameters: ["pointer"], result: "i32" },
  // void rtnl_link_set_ns_fd(struct rtnl_link *, int);
  rtnl_link_set_ns_fd: { parameters: ["pointer", "i32"], result: "void" },
  // struct rtnl_link *rtnl_link_veth_alloc(void);
  rtnl_link_veth_alloc: { parameters: [], result: "pointer" },
  // struct rtnl_link *rtnl_link_veth_get_peer(struct rtnl_link *);  (new reference)
  rtnl_link_veth_get_peer: { parameters: ["pointer"], result: "pointer" },
  // struct rtnl_link *rtnl_link_vxlan_alloc(void);
  rtnl_link_vxlan_alloc: { parameters: [], result: "pointer" },
  // int rtnl_link_vxlan_set_id(struct rtnl_link *, uint32_t);
  rtnl_link_vxlan_set_id: { parameters: ["pointer", "u32"], result: "i32" },
  // int rtnl_link_vxlan_get_id(struct rtnl_link *, uint32_t *);
  rtnl_link_vxlan_get_id: { parameters: ["pointer", "buffer"], result: "i32" },
  // int rtnl_link_vxlan_set_link(struct rtnl_link *, uint32_t);
  rtnl_link_vxlan_set_link: { parameters: ["pointer", "u32"], result: "i32" },
  // int rtnl_link_vxlan_get_link(struct rtnl_link *, uint32_t *);
  rtnl_link_vxlan_get_link: { parameters: ["pointer", "buffer"], result: "i32" },
  // int rtnl_link_vxlan_set_local(struct rtnl_link *, struct nl_addr *);
  rtnl_link_vxlan_set_local: { parameters: ["pointer", "pointer"], result: "i32" },
  // int rtnl_link_vxlan_get_local(struct rtnl_link *, struct nl_addr **);  (new reference)
  rtnl_link_vxlan_get_local: { parameters: ["pointer", "buffer"], result: "i32" },
  // int rtnl_link_vxlan_set_learning(struct rtnl_link *, uint8_t);
  rtnl_link_vxlan_set_learning: { parameters: ["pointer", "u8"], result: "i32" },
  // int rtnl_link_vxlan_get_learning(struct rtnl_link *);
  rtnl_link_vxlan_get_learning: { parameters: ["pointer"], result: "i32" },
  // int rtnl_link_vxlan_set_port(struct rtnl_link *, uint32_t);
  rtnl_link_vxlan_set_port: { parameters: ["pointer", "u32"], result: "i32" },
  // int rtnl_link_vxlan_get_port(struct rtnl_link *, uint32_t *);
  rtnl_link_vxlan_get_port: { parameters: ["pointer", "buffer"], result: "i32" },
  // int rtnl_link_vxlan_set_flags(struct rtnl_link *, uint32_t flags, int enable);
  rtnl_link_vxlan_set_flags: { parameters: ["pointer", "u32", "i32"], result: "i32" },
  // int rtnl_link_vxlan_get_flags(struct rtnl_link *, uint32_t *out_flags);
  rtnl_link_vxlan_get_flags: { parameters: ["pointer", "buffer"], result: "i32" },

  // struct rtnl_addr *rtnl_addr_alloc(void);
  rtnl_addr_alloc: { parameters: [], result: "pointer" },
  // void rtnl_addr_put(struct rtnl_addr *);
  rtnl_addr_put: { parameters: ["pointer"], result: "void" },
  // int rtnl_addr_alloc_cache(struct nl_sock *, struct nl_cache **);
  rtnl_addr_alloc_cache: { parameters: ["pointer", "buffer"], result: "i32" },
  // int rtnl_addr_add(struct nl_sock *, struct rtnl_addr *, int flags);
  rtnl_addr_add: { parameters: ["pointer", "pointer", "i32"], result: "i32" },
  // int rtnl_addr_delete(struct nl_sock *, struct rtnl_addr *, int flags);
  rtnl_addr_delete: { parameters: ["pointer", "pointer", "i32"], result: "i32" },
  // void rtnl_addr_set_ifindex(struct rtnl_addr *, int);
  rtnl_addr_set_ifindex: { parameters: ["pointer", "i32"], result: "void" },
  // int rtnl_addr_get_ifindex(struct rtnl_addr *);
  rtnl_addr_get_ifindex: { parameters: ["pointer"], result: "i32" },
  // int rtnl_addr_get_family(struct rtnl_addr *);
  rtnl_addr_get_family: { parameters: ["pointer"], result: "i32" },
  // void rtnl_addr_set_flags(struct rtnl_addr *, unsigned int flags);
  rtnl_addr_set_flags: { parameters: ["pointer", "u32"], result: "void" },
  // int rtnl_addr_get_prefixlen(struct rtnl_addr *);
  rtnl_addr_get_prefixlen: { parameters: ["pointer"], result: "i32" },
  // int rtnl_addr_get_scope(struct rtnl_addr *);
  rtnl_addr_get_scope: { parameters: ["pointer"], result: "i32" },
  // int rtnl_addr_set_local(struct rtnl_addr *, struct nl_addr *);
  rtnl_addr_set_local: { parameters: ["pointer", "pointer"], result: "i32" },
  // struct nl_addr *rtnl_addr_get_local(struct rtnl_addr *);  (borrowed)
  rtnl_addr_get_local: { parameters: ["pointer"], result: "pointer" },

  // struct rtnl_route *rtnl_route_alloc(void);
  rtnl_route_alloc: { parameters: [], result: "pointer" },
  // void rtnl_route_put(struct rtnl_route *);
  rtnl_route_put: { parameters: ["pointer"], result: "void" },
  // int rtnl_route_add(struct nl_sock *, struct rtnl_route *, int flags);
  rtnl_route_add: { parameters: ["pointer", "pointer", "i32"], result: "i32" },
  // int rtnl_route_delete(struct nl_sock *, struct rtnl_route *, int flags);
  rtnl_route_delete: { parameters: ["pointer", "pointer", "i32"], result: "i32" },
  // void rtnl_route_set_table(struct rtnl_route *, uint32_t);
  rtnl_route_set_table: { parameters: ["pointer", "u32"], result: "void" },
  // void rtnl_route_set_scope(struct rtnl_route *, uint8_t);
  rtnl_route_set_scope: { parameters: ["pointer", "u8"], result: "void" },
  // void rtnl_route_set_protocol(struct rtnl_route *, uint8_t);
  rtnl_route_set_protocol: { parameters: ["pointer", "u8"], result: "void" },
  // void rtnl_route_set_priority(struct rtnl_route *, uint32_t);
  rtnl_route_set_priority: { parameters: ["pointer", "u32"], result: "void" },
  // int rtnl_route_set_family(struct rtnl_route *, uint8_t);
  rtnl_route_set_family: { parameters: ["pointer", "u8"], result: "i32" },
  // int rtnl_route_set_type(struct rtnl_route *, uint8_t);
  rtnl_route_set_type: { parameters: ["pointer", "u8"], result: "i32" },
  // int rtnl_route_set_dst(struct rtnl_route *, struct nl_addr *);
  rtnl_route_set_dst: { parameters: ["pointer", "pointer"], result: "i32" },
  // int rtnl_route_set_pref_src(struct rtnl_route *, struct nl_addr *);
  rtnl_route_set_pref_src: { parameters: ["pointer", "pointer"], result: "i32" },
  // void rtnl_route_add_nexthop(struct rtnl_route *, struct rtnl_nexthop *);  (route takes ownership)
  rtnl_route_add_nexthop: { parameters: ["pointer", "pointer"], result: "void" },
  // struct rtnl_nexthop *rtnl_route_nh_alloc(void);
  rtnl_route_nh_alloc: { parameters: [], result: "pointer" },
  // void rtnl_route_nh_set_ifindex(struct rtnl_nexthop *, int);
  rtnl_route_nh_set_ifindex: { parameters: ["pointer", "i32"], result: "void" },
  // void rtnl_route_nh_set_gateway(struct rtnl_nexthop *, struct nl_addr *);
  rtnl_route_nh_set_gateway: { parameters: ["pointer", "pointer"], result: "void" },
  // void rtnl_route_nh_set_flags(struct rtnl_nexthop *, unsigned int);
  rtnl_route_nh_set_flags: { parameters: ["pointer", "u32"], result: "void" },

  // struct rtnl_neigh *rtnl_neigh_alloc(void);
  rtnl_neigh_alloc: { parameters: [], result: "pointer" },
  // void rtnl_neigh_put(struct rtnl_neigh *);
  rtnl_neigh_put: { parameters: ["pointer"], result: "void" },
  // int rtnl_neigh_add(struct nl_sock *, struct rtnl_neigh *, int flags);
  rtnl_neigh_add: { parameters: ["pointer", "pointer", "i32"], result: "i32" },
  // int rtnl_neigh_delete(struct nl_sock *, struct rtnl_neigh *, int flags);
  rtnl_neigh_delete: { parameters: ["pointer", "pointer", "i32"], result: "i32" },
  // void rtnl_neigh_set_state(struct rtnl_neigh *, int);
  rtnl_neigh_set_state: { parameters: ["pointer", "i32"], result: "void" },
  // void rtnl_neigh_set_flags(struct rtnl_neigh *, unsigned int);
  rtnl_neigh_set_flags: { parameters: ["pointer", "u32"], result: "void" },
  // void rtnl_neigh_set_ifindex(struct rtnl_neigh *, int);
  rtnl_neigh_set_ifindex: { parameters: ["pointer", "i32"], result: "void" },
  // void rtnl_neigh_set_lladdr(struct rtnl_neigh *, struct nl_addr *);
  rtnl_neigh_set_lladdr: { parameters: ["pointer", "pointer"], result: "void" },
  // int rtnl_neigh_set_dst(struct rtnl_neigh *, struct nl_addr *);
  rtnl_neigh_set_dst: { parameters: ["pointer", "pointer"], result: "i32" },
  // void rtnl_neigh_set_family(struct rtnl_neigh *, int);
  rtnl_neigh_set_family: { parameters: ["pointer", "i32"], result: "void" },
} as const satisfies Deno.ForeignLibraryInterface;

/** libnl-genl-3.so.200: generic netlink families (used for kernel WireGuard). */
export const LIBNL_GENL_SYMBOLS = {
  // int genl_ctrl_resolve(struct nl_sock *, const char *name);  (the family id, or -NLE_OBJ_NOTFOUND)
  genl_ctrl_resolve: { parameters: ["pointer", "buffer"], result: "i32" },
} as const satisfies Deno.ForeignLibraryInterface;
