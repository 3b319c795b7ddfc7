import assert from "node:assert/strict";
import { nftRun, withNetns } from "../../ffi/mod.ts";
import { withScratchNetns } from "../../tests/helpers/scratch_netns.ts";
import { parseIP, parseNet } from "../net/ip.ts";
import { type ForwardBlocker, matchTruth, podProbes, scanForwardBlockers } from "./firewall.ts";

const ROOT = Deno.uid() === 0;
const PROBES = podProbes(parseNet("10.244.0.0/16"), parseNet("10.244.3.0/24"), ["flannel.1"]);
const P = PROBES[0]!; // 10.244.3.2 → 10.244.0.2, cni0 → flannel.1

Deno.test("podProbes() sends from a pod of this node to a pod of another node and back, through each overlay", () => {
  assert.equal(PROBES.length, 2);
  assert.deepEqual([P.saddr, P.daddr, P.iif, P.oif], [
    parseIP("10.244.3.2"),
    parseIP("10.244.0.2"),
    "cni0",
    "flannel.1",
  ]);
  const first = podProbes(parseNet("10.244.0.0/16"), parseNet("10.244.0.0/24"), ["eth0"]);
  assert.deepEqual(first[0]!.daddr, parseIP("10.244.1.2"), "the remote pod is never in the own subnet");
});

Deno.test("matchTruth() judges addresses, interface names and conntrack state; the rest is unknown", () => {
  const ip = (field: string, right: unknown, op = "==") => ({
    op,
    left: { payload: { protocol: "ip", field } },
    right,
  });
  assert.equal(matchTruth(ip("saddr", { prefix: { addr: "10.244.0.0", len: 16 } }), P), "T");
  assert.equal(matchTruth(ip("daddr", { prefix: { addr: "10.244.3.0", len: 24 } }), P), "F");
  assert.equal(matchTruth(ip("daddr", { prefix: { addr: "10.244.3.0", len: 24 } }, "!="), P), "T");
  assert.equal(matchTruth(ip("saddr", { range: ["10.244.3.0", "10.244.3.9"] }), P), "T");
  assert.equal(
    matchTruth(ip("saddr", { set: ["192.0.2.1", { prefix: { addr: "10.0.0.0", len: 8 } }] }), P),
    "T",
  );
  assert.equal(matchTruth(ip("saddr", "@trusted"), P), "U");
  const ip6 = { op: "==", left: { payload: { protocol: "ip6", field: "saddr" } }, right: "fd00::1" };
  assert.equal(matchTruth(ip6, P), "F", "an ip6 match never matches an IPv4 packet (inet tables)");
  const meta = (key: string, right: unknown) => ({ op: "==", left: { meta: { key } }, right });
  assert.equal(matchTruth(meta("iifname", "cni*"), P), "T");
  assert.equal(matchTruth(meta("oifname", { set: ["eth0", "flannel.1"] }), P), "T");
  assert.equal(matchTruth(meta("iifname", "lo"), P), "F");
  assert.equal(matchTruth(meta("mark", 16384), P), "U");
  const ct = (key: string, right: unknown, op = "in") => ({ op, left: { ct: { key } }, right });
  assert.equal(matchTruth(ct("state", ["established", "related"]), P), "F");
  assert.equal(matchTruth(ct("state", { set: ["invalid", "new"] }, "=="), P), "T");
  assert.equal(matchTruth(ct("status", "dnat"), P), "F");
  assert.equal(
    matchTruth({ op: "==", left: { payload: { protocol: "tcp", field: "dport" } }, right: 22 }, P),
    "U",
  );
});

/** Loads `script` into a fresh namespace and scans it. */
function scan(ns: string, script: string): ForwardBlocker[] {
  return withNetns(ns, () => {
    nftRun(script);
    return scanForwardBlockers(PROBES);
  });
}

const FIREWALLD_DROP = `table inet firewalld {
  chain filter_FORWARD {
    type filter hook forward priority filter + 10; policy drop;
    ct state established,related accept
    ct status dnat accept
    iifname "lo" accept
  }
}
`;

Deno.test({
  name:
    "scanForwardBlockers() names a firewalld-like inet table dropping in forward, and stops once it allows the network",
  ignore: !ROOT,
  async fn() {
    await withScratchNetns("fw", (ns) => {
      const found = scan(ns, FIREWALLD_DROP);
      assert.equal(found.length, 1);
      assert.deepEqual(
        { ...found[0], probe: undefined },
        {
          family: "inet",
          table: "firewalld",
          chain: "filter_FORWARD",
          verdict: "drops",
          where: "policy drop",
          probe: undefined,
        },
      );
      const fixed = scan(
        ns,
        "insert rule inet firewalld filter_FORWARD ip saddr 10.244.0.0/16 accept\n" +
          "insert rule inet firewalld filter_FORWARD ip daddr 10.244.0.0/16 accept\n",
      );
      assert.deepEqual(fixed, []);
    });
  },
});

Deno.test({
  name: "scanForwardBlockers() follows jumps and gotos to the reject at the end (firewalld's own layout)",
  ignore: !ROOT,
  async fn() {
    await withScratchNetns("fw", (ns) => {
      const found = scan(
        ns,
        `table inet fw {
  chain zones {
    iifname "eth0" goto public
    goto public
  }
  chain public {
    tcp dport 22 accept
    ip saddr 192.0.2.0/24 accept
  }
  chain filter_FORWARD {
    type filter hook forward priority filter + 10; policy accept;
    ct state established,related accept
    jump zones
    reject with icmpx admin-prohibited
  }
}
`,
      );
      // `tcp dport 22 accept` may let some packets through (a port weft cannot judge): "may drop".
      assert.deepEqual(found.map((b) => [b.table, b.verdict]), [["fw", "may drop"]]);
      assert.match(found[0]!.where, /reject/);
    });
  },
});

Deno.test({
  name:
    "scanForwardBlockers() sees iptables-nft's FORWARD DROP until FLANNEL-FWD's jump goes first; weft's tables are never reported",
  ignore: !ROOT,
  async fn() {
    await withScratchNetns("fw", (ns) => {
      const blocked = scan(
        ns,
        `table ip filter {
  chain FORWARD {
    type filter hook forward priority filter; policy drop;
  }
}
table inet weft-policy {
  chain ingress {
    type filter hook forward priority filter; policy drop;
  }
}
`,
      );
      assert.deepEqual(blocked.map((b) => `${b.family} ${b.table} ${b.chain} ${b.verdict}`), [
        "ip filter FORWARD drops",
      ]);
      const ok = scan(
        ns,
        `table ip filter {
  chain FLANNEL-FWD {
    ip saddr 10.244.0.0/16 accept
    ip daddr 10.244.0.0/16 accept
  }
}
insert rule ip filter FORWARD jump FLANNEL-FWD
`,
      );
      assert.deepEqual(ok, []);
    });
  },
});

Deno.test({
  name: "scanForwardBlockers() reads verdict maps keyed by interface name",
  ignore: !ROOT,
  async fn() {
    await withScratchNetns("fw", (ns) => {
      const found = scan(
        ns,
        `table inet v {
  chain f {
    type filter hook forward priority 0; policy accept;
    iifname vmap { "cni0" : drop, "lo" : accept }
  }
}
`,
      );
      assert.deepEqual(found.map((b) => [b.table, b.verdict, b.probe]), [[
        "v",
        "drops",
        "10.244.3.2 → 10.244.0.2, cni0 → flannel.1",
      ]]);
    });
  },
});
