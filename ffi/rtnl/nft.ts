/**
 * nftables over raw netlink (NETLINK_NETFILTER, the nf_tables subsystem), through the same two libc
 * symbols as the rest of ffi/rtnl: what the CNI plugin's masquerade needs, so CNI mode on a host needs
 * glibc and nothing else (no libnftables, no libnl). Messages go in one batch (BATCH_BEGIN … BATCH_END),
 * which the kernel applies as one transaction, and every message is acknowledged.
 *
 * Only the few objects weft's CNI table holds are encoded: a table, a named address set, a nat base chain,
 * and one rule `<fam> saddr @set <fam> daddr != <subnet> <fam> daddr != <multicast> masquerade`
 * (payload, lookup, bitwise, cmp and masq expressions), plus set elements.
 *
 * @module
 */
import { type IP, ipBytes, type IPNet } from "../ip.ts";
import { NetlinkError } from "../errors.ts";
import { attrMap, NlBuilder, payload as messageBody } from "../nl_codec.ts";
import { NETLINK, NLA_F_NESTED, NLM_F } from "../nl_consts.ts";
import { RtnlSocket } from "./socket.ts";

const NFNL_SUBSYS_NFTABLES = 10;
const NFNL_MSG_BATCH_BEGIN = 0x10;
const NFNL_MSG_BATCH_END = 0x11;
const NFT_MSG = {
  NEWTABLE: 0,
  NEWCHAIN: 3,
  NEWRULE: 6,
  DELRULE: 8,
  NEWSET: 9,
  NEWSETELEM: 12,
  DELSETELEM: 14,
  NEWGEN: 15,
  GETGEN: 16,
} as const;
const NFPROTO = { 4: 2, 6: 10 } as const;
const ENOENT = 2;

// Attributes (linux/netfilter/nf_tables.h).
const TABLE_NAME = 1;
const GEN_ID = 1;
const CHAIN = { TABLE: 1, NAME: 3, HOOK: 4, POLICY: 5, TYPE: 7 } as const;
const HOOK = { NUM: 1, PRIORITY: 2 } as const;
const RULE = { TABLE: 1, CHAIN: 2, EXPRESSIONS: 4 } as const;
const SET = { TABLE: 1, NAME: 2, FLAGS: 3, KEY_TYPE: 4, KEY_LEN: 5, ID: 10 } as const;
const ELEM_LIST = { TABLE: 1, SET: 2, ELEMENTS: 3 } as const;
const ELEM_KEY = 1;
const LIST_ELEM = 1;
const EXPR = { NAME: 1, DATA: 2 } as const;
const DATA_VALUE = 1;
const NFT_REG_1 = 1;
const NFT_PAYLOAD_NETWORK_HEADER = 1;
const NFT_CMP_NEQ = 1;
const NF_INET_POST_ROUTING = 4;
const NF_ACCEPT = 1;
/** nft's datatype ids of ipv4_addr and ipv6_addr (what `nft list` shows as the set's type). */
const KEY_TYPE = { 4: 7, 6: 8 } as const;

/** Appends a big-endian u32 attribute (nf_tables' integers are in network order). */
function be32(b: NlBuilder, type: number, v: number): void {
  const x = new Uint8Array(4);
  new DataView(x.buffer).setUint32(0, v, false);
  b.bytes(type, x);
}

/** `struct nfgenmsg` after the header: family, version 0, res_id (big-endian). */
function nfgen(b: NlBuilder, family: number, resId = 0): void {
  const at = b.struct(4);
  b.view.setUint8(at, family);
  b.view.setUint16(at + 2, resId, false);
}

function msg(b: NlBuilder, type: number, flags: number, seq: number, family: number): void {
  b.begin((NFNL_SUBSYS_NFTABLES << 8) | type, NLM_F.REQUEST | NLM_F.ACK | flags, seq);
  nfgen(b, family);
}

function nest(b: NlBuilder, type: number, fill: () => void): void {
  const at = b.nestStart(type | NLA_F_NESTED);
  fill();
  b.nestEnd(at);
}

/** One expression: `{NAME, DATA {…}}` inside the rule's expression list. */
function expr(b: NlBuilder, name: string, fill: () => void): void {
  nest(b, LIST_ELEM, () => {
    b.str(EXPR.NAME, name);
    nest(b, EXPR.DATA, fill);
  });
}

function payload(b: NlBuilder, offset: number, len: number): void {
  expr(b, "payload", () => {
    be32(b, 1, NFT_REG_1); // DREG
    be32(b, 2, NFT_PAYLOAD_NETWORK_HEADER); // BASE
    be32(b, 3, offset); // OFFSET
    be32(b, 4, len); // LEN
  });
}

function value(b: NlBuilder, type: number, bytes: Uint8Array): void {
  nest(b, type, () => b.bytes(DATA_VALUE, bytes));
}

/** `daddr != net`: the masked destination compared with the network address (no mask for a host). */
function daddrNotIn(b: NlBuilder, net: IPNet): void {
  const fam = net.ip.family;
  const len = fam === 4 ? 4 : 16;
  payload(b, fam === 4 ? 16 : 24, len);
  const bits = len * 8;
  if (net.prefix < bits) {
    expr(b, "bitwise", () => {
      be32(b, 1, NFT_REG_1); // SREG
      be32(b, 2, NFT_REG_1); // DREG
      be32(b, 3, len); // LEN
      const mask = new Uint8Array(len);
      for (let i = 0; i < net.prefix; i++) mask[i >> 3]! |= 0x80 >> (i & 7);
      value(b, 4, mask); // MASK
      value(b, 5, new Uint8Array(len)); // XOR
    });
  }
  expr(b, "cmp", () => {
    be32(b, 1, NFT_REG_1); // SREG
    be32(b, 2, NFT_CMP_NEQ); // OP
    value(b, 3, ipBytes(net.ip)); // DATA
  });
}

/** A table name and the set of pod addresses in it, for one family. */
export interface NftMasqTable {
  /** Address family of the table (`ip` or `ip6`). */
  family: 4 | 6;
  /** Table name. */
  table: string;
  /** The named set of pod addresses. */
  set: string;
  /** The nat chain (postrouting hook, priority srcnat). */
  chain: string;
}

/** An nftables netlink socket in one namespace (the current one by default). Dispose it (`using`). */
export class NftNetlink implements Disposable {
  readonly #s: RtnlSocket;

  private constructor(s: RtnlSocket) {
    this.#s = s;
  }

  /** Opens a NETLINK_NETFILTER socket in the current namespace, or in the one open as `netnsFd`. */
  static open(netnsFd?: number): NftNetlink {
    return new NftNetlink(RtnlSocket.open(netnsFd, NETLINK.NETFILTER));
  }

  /** Runs messages added by `fill` as one nf_tables transaction; returns when each one is answered. */
  #batch(op: string, fill: (b: NlBuilder, seq: () => number) => void): void {
    const b = new NlBuilder();
    const seqs: number[] = [];
    b.begin(NFNL_MSG_BATCH_BEGIN, NLM_F.REQUEST, this.#s.nextSeq());
    nfgen(b, 0, NFNL_SUBSYS_NFTABLES);
    b.end();
    fill(b, () => {
      const s = this.#s.nextSeq();
      seqs.push(s);
      return s;
    });
    b.begin(NFNL_MSG_BATCH_END, NLM_F.REQUEST, this.#s.nextSeq());
    nfgen(b, 0, NFNL_SUBSYS_NFTABLES);
    b.end();
    this.#s.batch(b, seqs, op);
  }

  /**
   * In one transaction: the table, its set, its nat chain (created when missing, kept when there), the
   * chain's one rule written anew (`saddr @set daddr != subnet daddr != multicast masquerade`, so it
   * follows a new node subnet), and `ips` added to the set (present ones are fine).
   */
  ensureMasquerade(t: NftMasqTable, subnet: IPNet, multicast: IPNet, ips: IP[]): void {
    const fam = NFPROTO[t.family];
    const keyLen = t.family === 4 ? 4 : 16;
    const setId = 1;
    this.#batch(`nftables masquerade ${t.table}`, (b, seq) => {
      msg(b, NFT_MSG.NEWTABLE, NLM_F.CREATE, seq(), fam);
      b.str(TABLE_NAME, t.table);
      b.end();
      msg(b, NFT_MSG.NEWSET, NLM_F.CREATE, seq(), fam);
      b.str(SET.TABLE, t.table);
      b.str(SET.NAME, t.set);
      be32(b, SET.FLAGS, 0);
      be32(b, SET.KEY_TYPE, KEY_TYPE[t.family]);
      be32(b, SET.KEY_LEN, keyLen);
      be32(b, SET.ID, setId);
      b.end();
      msg(b, NFT_MSG.NEWCHAIN, NLM_F.CREATE, seq(), fam);
      b.str(CHAIN.TABLE, t.table);
      b.str(CHAIN.NAME, t.chain);
      nest(b, CHAIN.HOOK, () => {
        be32(b, HOOK.NUM, NF_INET_POST_ROUTING);
        be32(b, HOOK.PRIORITY, 100); // srcnat
      });
      be32(b, CHAIN.POLICY, NF_ACCEPT);
      b.str(CHAIN.TYPE, "nat");
      b.end();
      // Flush the chain (a DELRULE naming only the chain), then its one rule.
      msg(b, NFT_MSG.DELRULE, 0, seq(), fam);
      b.str(RULE.TABLE, t.table);
      b.str(RULE.CHAIN, t.chain);
      b.end();
      msg(b, NFT_MSG.NEWRULE, NLM_F.CREATE | NLM_F.APPEND, seq(), fam);
      b.str(RULE.TABLE, t.table);
      b.str(RULE.CHAIN, t.chain);
      nest(b, RULE.EXPRESSIONS, () => {
        payload(b, t.family === 4 ? 12 : 8, keyLen); // saddr
        expr(b, "lookup", () => {
          b.str(1, t.set); // SET
          be32(b, 2, NFT_REG_1); // SREG
          be32(b, 4, setId); // SET_ID
        });
        daddrNotIn(b, subnet);
        daddrNotIn(b, multicast);
        expr(b, "masq", () => {});
      });
      b.end();
      if (ips.length) this.#elements(b, seq(), NFT_MSG.NEWSETELEM, NLM_F.CREATE, t, ips);
    });
  }

  #elements(b: NlBuilder, seq: number, type: number, flags: number, t: NftMasqTable, ips: IP[]): void {
    msg(b, type, flags, seq, NFPROTO[t.family]);
    b.str(ELEM_LIST.TABLE, t.table);
    b.str(ELEM_LIST.SET, t.set);
    nest(b, ELEM_LIST.ELEMENTS, () => {
      for (const ip of ips) nest(b, LIST_ELEM, () => value(b, ELEM_KEY, ipBytes(ip)));
    });
    b.end();
  }

  /**
   * Removes one address from the set; false when it, the set or the table is not there (a DEL that finds
   * nothing is fine).
   */
  deleteElement(t: NftMasqTable, ip: IP): boolean {
    try {
      this.#batch(
        `nftables delete element ${t.table}`,
        (b, seq) => this.#elements(b, seq(), NFT_MSG.DELSETELEM, 0, t, [ip]),
      );
      return true;
    } catch (err) {
      if (err instanceof NetlinkError && err.errno === ENOENT) return false;
      throw err;
    }
  }

  /**
   * The namespace's ruleset generation: a counter the kernel bumps with every committed nf_tables
   * transaction, whoever makes it (nft, iptables-nft, firewalld, kube-proxy, weft). Unchanged means no
   * table, chain, rule or set of any family changed in between — only iptables-legacy's rules, which are
   * not nftables', change without it.
   */
  generation(): number {
    const b = new NlBuilder();
    const seq = this.#s.nextSeq();
    msg(b, NFT_MSG.GETGEN, 0, seq, 0);
    b.end();
    for (const m of this.#s.request(b, seq, "nftables generation")) {
      if ((m.type & 0xff) !== NFT_MSG.NEWGEN) continue;
      const id = attrMap(messageBody(m, 4)).get(GEN_ID);
      if (id && id.data.length >= 4) {
        return new DataView(id.data.buffer, id.data.byteOffset, 4).getUint32(0, false);
      }
    }
    throw new NetlinkError("nftables generation", 0, 0, "no generation in the kernel's answer");
  }

  /** Closes the socket. */
  close(): void {
    this.#s.close();
  }

  /** Same as {@linkcode close}, for `using`. */
  [Symbol.dispose](): void {
    this.close();
  }
}
