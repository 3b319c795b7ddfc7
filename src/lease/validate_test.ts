import assert from "node:assert/strict";
import { parseCIDR, parseNet } from "../net/ip.ts";
import { parseNetworkConfig } from "../config/net_conf.ts";
import type { Lease, LeaseAttrs } from "./lease.ts";
import {
  checkLease,
  checkLeaseOnNode,
  claimConflict,
  claimsOf,
  LEASE_RULES,
  LeaseRejection,
  type LeaseRule,
  type NetworkRules,
  networkRules,
  type NodeFacts,
  parseLeaseEntry,
  quoteForLog,
} from "./validate.ts";

const V4: NetworkRules = { network: parseNet("10.244.0.0/16"), subnetLen: 24, ipv6SubnetLen: 64 };
const DUAL: NetworkRules = { ...V4, ipv6Network: parseNet("fd00:10:244::/56"), ipv6SubnetLen: 64 };
const V6ONLY: NetworkRules = { subnetLen: 24, ipv6Network: parseNet("fd00:10:244::/56"), ipv6SubnetLen: 64 };
const MAC = "c6:d2:32:6f:8f:44";

function attrs(over: Partial<LeaseAttrs> = {}): LeaseAttrs {
  return {
    PublicIP: "192.168.77.12",
    PublicIPv6: null,
    BackendType: "vxlan",
    BackendData: { VNI: 1, VtepMAC: MAC },
    ...over,
  };
}

/** Parses `key` with `a` as its value; fails the test when the entry does not parse. */
function lease(key: string, a: Partial<LeaseAttrs> = {}): Lease {
  const p = parseLeaseEntry({ key, value: JSON.stringify(attrs(a)) });
  if (!p.ok) throw p.rejection;
  return p.lease;
}

function ruleOf(r: LeaseRejection | undefined): LeaseRule | undefined {
  return r?.rule;
}

/** A node on 192.168.77.0/24 with lease 10.244.7.0/24 (and fd00:10:244:7::/64). */
function node(extra: string[] = []): NodeFacts {
  const addr = (cidr: string, dev: string) => {
    const { ip, net } = parseCIDR(cidr);
    return { ip, net, dev };
  };
  return {
    ownSubnets: [parseNet("10.244.7.0/24"), parseNet("fd00:10:244:7::/64")],
    addresses: [
      addr("127.0.0.1/8", "lo"),
      addr("192.168.77.11/24", "eth0"),
      addr("fd00:77::11/64", "eth0"),
      addr("10.244.7.0/32", "flannel.1"),
      ...extra.map((c) => addr(c, "eth1")),
    ],
    vtepMacs: ["aa:aa:aa:aa:aa:01"],
  };
}

Deno.test("parseLeaseEntry() reads a flannel key and value, keeping expiry, lease id and create order", () => {
  const exp = new Date(Date.now() + 1000);
  const p = parseLeaseEntry({
    key: "10.244.3.0-24&fd00:10:244:3::-64",
    value: JSON.stringify(attrs()),
    expiration: exp,
    leaseId: "7",
    createOrder: 42,
  });
  assert.ok(p.ok);
  assert.deepEqual(p.lease.subnet, parseNet("10.244.3.0/24"));
  assert.deepEqual(p.lease.ipv6Subnet, parseNet("fd00:10:244:3::/64"));
  assert.equal(p.lease.etcdLeaseId, "7");
  assert.equal(p.lease.expiration, exp);
  assert.equal(p.lease.createOrder, 42);
});

Deno.test("parseLeaseEntry() rejects keys that are not one canonical subnet key, naming the key", () => {
  for (
    const key of [
      "",
      "config",
      "10.244.3.0",
      "10.244.3.0-33",
      "10.244.3.1-24", // host bits
      "10.244.3.0-024", // a second spelling of 10.244.3.0-24
      " 10.244.3.0-24",
      "10.244.3.0-24\n",
      "10.244.3.0-24&10.244.4.0-24", // two IPv4 halves
      "fd00:10:244:3::-64&10.244.3.0-24", // IPv6 first
      "FD00:10:244:3::-64",
      "fd00:10:244:3:0:0:0:0-64",
      "10.244.3.0-24&",
      "x-24",
      "../../config",
    ]
  ) {
    const p = parseLeaseEntry({ key, value: JSON.stringify(attrs()) });
    assert.ok(!p.ok, `${JSON.stringify(key)} was accepted`);
    assert.ok(p.rejection instanceof LeaseRejection);
    assert.equal(p.rejection.rule, "key_unparseable", key);
    assert.equal(p.rejection.key, key);
    assert.ok(p.rejection.message.includes(quoteForLog(key)), p.rejection.message);
  }
  const spelled = parseLeaseEntry({ key: "10.244.3.0-024", value: "{}" });
  assert.ok(!spelled.ok && /flannel writes 10\.244\.3\.0-24/.test(spelled.rejection.detail));
});

Deno.test("parseLeaseEntry() rejects values that are not lease JSON", () => {
  for (
    const value of [
      "",
      "not json",
      "null",
      "[]",
      '"text"',
      "42",
      '{"PublicIP":5}',
      "{}",
      '{"publicip":"1.2.3.4"}',
    ]
  ) {
    const p = parseLeaseEntry({ key: "10.244.3.0-24", value });
    assert.ok(!p.ok, value);
    assert.equal(p.rejection.rule, "value_unparseable", value);
  }
});

Deno.test("quoteForLog() escapes control characters and cuts long text, so a key cannot forge log lines", () => {
  assert.equal(quoteForLog("a\nb\u001b[31m"), '"a\\nb\\u001b[31m"');
  const long = quoteForLog("x".repeat(500));
  assert.ok(long.length < 150 && long.endsWith("(500 chars)"), long);
});

Deno.test("checkLease() accepts flannel's leases: IPv4, dual-stack, IPv6-only with PublicIP 0.0.0.0", () => {
  assert.equal(checkLease(lease("10.244.3.0-24"), V4), undefined);
  const dual = lease("10.244.3.0-24&fd00:10:244:3::-64", {
    PublicIPv6: "fd00:77::12",
    BackendV6Data: { VNI: 1, VtepMAC: "c6:d2:32:6f:8f:45" },
  });
  assert.equal(checkLease(dual, DUAL), undefined);
  const v6 = lease("fd00:10:244:3::-64", { PublicIP: "0.0.0.0", PublicIPv6: "fd00:77::12" });
  assert.equal(checkLease(v6, V6ONLY), undefined);
  // A host-gw lease carries no MAC; a vxlan lease without one (a fresh reservation) is not refused.
  assert.equal(
    checkLease(lease("10.244.3.0-24", { BackendType: "host-gw", BackendData: null }), V4),
    undefined,
  );
  assert.equal(checkLease(lease("10.244.3.0-24", { BackendData: null }), V4), undefined);
  assert.equal(checkLease(lease("10.244.3.0-24", { BackendData: { VNI: 1 } }), V4), undefined);
});

Deno.test("checkLease() refuses the issue's hostile subnets with the rule each breaks", () => {
  const cases: [string, LeaseRule][] = [
    ["192.168.91.0-24", "subnet_outside_network"], // the underlay network
    ["192.168.77.12-32", "subnet_outside_network"], // a peer's underlay /32
    ["10.0.0.0-8", "subnet_outside_network"], // bigger than the Network
    ["10.244.0.0-16", "subnet_wrong_length"], // the whole Network
    ["10.244.7.0-26", "subnet_wrong_length"], // a /26 inside a node's subnet
    ["10.244.9.0-25", "subnet_wrong_length"], // a /25 at a node's subnet address
    ["10.244.9.128-25", "subnet_wrong_length"],
  ];
  for (const [key, rule] of cases) {
    const r = checkLease(lease(key), V4);
    assert.equal(ruleOf(r), rule, key);
    assert.equal(r!.key, key);
  }
  assert.match(
    checkLease(lease("10.244.0.0-16"), V4)!.detail,
    /10\.244\.0\.0\/16 is a \/16, the network hands out \/24/,
  );
});

Deno.test("checkLease() refuses PublicIPs that are not unicast addresses", () => {
  const cases: [string, LeaseRule][] = [
    ["0.0.0.0", "public_ip_unspecified"],
    ["0.1.2.3", "public_ip_unspecified"],
    ["127.0.0.1", "public_ip_loopback"],
    ["127.8.9.10", "public_ip_loopback"],
    ["224.0.0.1", "public_ip_multicast"],
    ["239.255.255.250", "public_ip_multicast"],
    ["255.255.255.255", "public_ip_broadcast"],
    ["240.0.0.1", "public_ip_reserved"],
    ["", "public_ip_invalid"],
    ["192.168.77.012", "public_ip_invalid"],
    [" 192.168.77.12", "public_ip_invalid"],
    ["192.168.77.12/24", "public_ip_invalid"],
    ["fd00::1", "public_ip_invalid"], // IPv6 in the IPv4 field
    ["not an ip", "public_ip_invalid"],
  ];
  for (const [ip, rule] of cases) {
    assert.equal(ruleOf(checkLease(lease("10.244.3.0-24", { PublicIP: ip }), V4)), rule, ip);
  }
});

Deno.test("checkLease() refuses PublicIPv6 values that are not unicast, when IPv6 is served", () => {
  const key = "10.244.3.0-24&fd00:10:244:3::-64";
  const cases: [unknown, LeaseRule][] = [
    ["::", "public_ip_unspecified"],
    ["::1", "public_ip_loopback"],
    ["ff02::1", "public_ip_multicast"],
    ["fe80::1", "public_ip_reserved"],
    ["::ffff:192.168.77.12", "public_ip_invalid"], // not canonical (and mapped)
    ["::ffff:c0a8:4d0c", "public_ip_reserved"],
    ["FD00:77::12", "public_ip_invalid"],
    ["fd00:77:0::12", "public_ip_invalid"],
    ["192.168.77.12", "public_ip_invalid"],
  ];
  for (const [ip, rule] of cases) {
    const l = lease(key, { PublicIPv6: ip as string });
    assert.equal(ruleOf(checkLease(l, DUAL)), rule, String(ip));
    // An IPv4-only network ignores the IPv6 half, as the backends do.
    assert.equal(checkLease(l, V4), undefined, String(ip));
  }
  // PublicIPv6 null on a dual-stack lease: the IPv6 field is refused, since the IPv6 half is served.
  assert.equal(ruleOf(checkLease(lease(key), DUAL)), "public_ip_invalid");
});

Deno.test("checkLease() refuses IPv6 subnets outside IPv6Network or of the wrong length", () => {
  const a = { PublicIPv6: "fd00:77::12" };
  assert.equal(ruleOf(checkLease(lease("10.244.3.0-24&fd00:99::-64", a), DUAL)), "subnet_outside_network");
  assert.equal(ruleOf(checkLease(lease("10.244.3.0-24&fd00:10:244:3::-80", a), DUAL)), "subnet_wrong_length");
  assert.equal(ruleOf(checkLease(lease("10.244.3.0-24&fd00:10:244::-56", a), DUAL)), "subnet_wrong_length");
});

Deno.test("checkLease() refuses a lease with no subnet of a family the network serves", () => {
  const r = checkLease(lease("fd00:10:244:3::-64", { PublicIPv6: "fd00:77::12" }), V4);
  assert.equal(r?.rule, "no_subnet_for_network");
  assert.match(r!.detail, /serves IPv4$/);
  assert.equal(ruleOf(checkLease(lease("10.244.3.0-24"), V6ONLY)), "no_subnet_for_network");
});

Deno.test("checkLease() refuses VtepMACs that are not unicast MACs in lowercase", () => {
  for (
    const mac of [
      "ff:ff:ff:ff:ff:ff",
      "01:00:5e:00:00:01",
      "33:33:00:00:00:01",
      "00:00:00:00:00:00",
      "C6:D2:32:6F:8F:44",
      "c6:d2:32:6f:8f",
      "c6-d2-32-6f-8f-44",
      "c6:d2:32:6f:8f:44:00",
      "",
      42,
      true,
      { a: 1 },
    ]
  ) {
    const r = checkLease(lease("10.244.3.0-24", { BackendData: { VNI: 1, VtepMAC: mac } }), V4);
    assert.equal(ruleOf(r), "vtep_mac_invalid", JSON.stringify(mac));
  }
  // BackendV6Data is judged when IPv6 is served.
  const l = lease("10.244.3.0-24&fd00:10:244:3::-64", {
    PublicIPv6: "fd00:77::12",
    BackendV6Data: { VNI: 1, VtepMAC: "ff:ff:ff:ff:ff:ff" },
  });
  assert.equal(ruleOf(checkLease(l, DUAL)), "vtep_mac_invalid");
  assert.match(checkLease(l, DUAL)!.detail, /BackendV6Data\.VtepMAC/);
  // A host-gw lease's BackendData is not the backend's business.
  const hg = lease("10.244.3.0-24", { BackendType: "host-gw", BackendData: { VtepMAC: "junk" } });
  assert.equal(checkLease(hg, V4), undefined);
});

Deno.test("checkLeaseOnNode() refuses the node's own subnet and networks its addresses reach", () => {
  const rules: NetworkRules = { network: parseNet("192.168.0.0/16"), subnetLen: 24, ipv6SubnetLen: 64 };
  const n: NodeFacts = {
    ...node(["192.168.91.5/24"]),
    ownSubnets: [parseNet("192.168.7.0/24")],
  };
  const own = checkLeaseOnNode(lease("192.168.7.0-24", { PublicIP: "10.1.1.1" }), rules, n);
  assert.equal(own?.rule, "own_subnet");
  const under = checkLeaseOnNode(lease("192.168.91.0-24", { PublicIP: "10.1.1.1" }), rules, n);
  assert.equal(under?.rule, "connected_network");
  assert.match(
    under!.detail,
    /192\.168\.91\.0\/24 overlaps 192\.168\.91\.0\/24, connected through 192\.168\.91\.5 on eth1/,
  );
  assert.equal(
    ruleOf(checkLeaseOnNode(lease("192.168.77.0-24", { PublicIP: "10.1.1.1" }), rules, n)),
    "connected_network",
  );
  assert.equal(checkLeaseOnNode(lease("192.168.92.0-24", { PublicIP: "10.1.1.1" }), rules, n), undefined);
  // IPv6: the own IPv6 subnet.
  const v6 = lease("10.244.3.0-24&fd00:10:244:7::-64", { PublicIPv6: "fd00:77::12" });
  assert.equal(ruleOf(checkLeaseOnNode(v6, DUAL, node())), "own_subnet");
  // A stale overlay address (flannel.1 kept an earlier lease's /32 after a switch to host-gw) connects
  // nothing: the peer that holds that subnet now is programmed; the address is still the node's own.
  const stale: NodeFacts = {
    ...n,
    addresses: [...n.addresses, { ...parseCIDR("192.168.44.0/32"), dev: "flannel.1", overlay: true }],
  };
  assert.equal(checkLeaseOnNode(lease("192.168.44.0-24", { PublicIP: "10.1.1.1" }), rules, stale), undefined);
  assert.equal(
    ruleOf(checkLeaseOnNode(lease("192.168.45.0-24", { PublicIP: "192.168.44.0" }), rules, stale)),
    "public_ip_own",
  );
});

Deno.test("checkLeaseOnNode() refuses this node's addresses, a connected broadcast address and its own MAC", () => {
  assert.equal(
    ruleOf(checkLeaseOnNode(lease("10.244.3.0-24", { PublicIP: "192.168.77.11" }), V4, node())),
    "public_ip_own",
  );
  assert.equal(
    ruleOf(checkLeaseOnNode(lease("10.244.3.0-24", { PublicIP: "192.168.77.255" }), V4, node())),
    "public_ip_broadcast",
  );
  const mine = lease("10.244.3.0-24", { BackendData: { VNI: 1, VtepMAC: "aa:aa:aa:aa:aa:01" } });
  assert.equal(ruleOf(checkLeaseOnNode(mine, V4, node())), "vtep_mac_own");
  assert.equal(checkLeaseOnNode(lease("10.244.3.0-24"), V4, node()), undefined);
  const v6own = lease("10.244.3.0-24&fd00:10:244:3::-64", { PublicIPv6: "fd00:77::11" });
  assert.equal(ruleOf(checkLeaseOnNode(v6own, DUAL, node())), "public_ip_own");
});

Deno.test("claimsOf() lists subnets, VtepMACs, and PublicIPs only when they lie inside the network", () => {
  const rules: NetworkRules = { network: parseNet("10.0.0.0/8"), subnetLen: 24, ipv6SubnetLen: 64 };
  const l = lease("10.244.3.0-24", { PublicIP: "10.1.2.3" });
  assert.deepEqual(claimsOf(l, rules).map((c) => c.id), ["4 10.244.3.0/24", "4 10.1.2.0/24", `mac4 ${MAC}`]);
  assert.deepEqual(claimsOf(lease("10.244.3.0-24"), V4).map((c) => c.id), ["4 10.244.3.0/24", `mac4 ${MAC}`]);
});

Deno.test("claimConflict() says which claim of the younger lease loses, naming the older lease", () => {
  const rules: NetworkRules = { network: parseNet("10.0.0.0/8"), subnetLen: 24, ipv6SubnetLen: 64 };
  const [subA] = claimsOf(lease("10.1.2.0-24", { PublicIP: "192.168.1.1" }), rules);
  const [, addrB] = claimsOf(lease("10.244.3.0-24", { PublicIP: "10.1.2.3" }), rules);
  assert.equal(claimConflict("k", subA!, "old", subA!)?.rule, "subnet_conflict");
  assert.equal(claimConflict("k", subA!, "old", addrB!)?.rule, "subnet_conflict");
  assert.match(
    claimConflict("k", subA!, "old", addrB!)!.detail,
    /holds PublicIP 10\.1\.2\.3 of older lease "old"/,
  );
  assert.equal(claimConflict("k", addrB!, "old", subA!)?.rule, "public_ip_conflict");
  assert.equal(claimConflict("k", addrB!, "old", addrB!), undefined, "two nodes may share a network");
  const macOf = (ip: string) =>
    claimsOf(lease("10.244.3.0-24", { PublicIP: ip }), V4).find((c) => c.kind === "mac")!;
  assert.equal(
    claimConflict("k", macOf("192.168.77.12"), "old", macOf("192.168.77.13"))?.rule,
    "vtep_mac_conflict",
  );
  assert.equal(claimConflict("k", macOf("192.168.77.12"), "old", macOf("192.168.77.12")), undefined);
});

Deno.test("networkRules() serves IPv6 only with EnableIPv6 and an IPv6Network, IPv4 only with EnableIPv4", () => {
  const dual = networkRules(parseNetworkConfig(JSON.stringify({
    Network: "10.244.0.0/16",
    EnableIPv6: true,
    IPv6Network: "fd00:10:244::/56",
  })));
  assert.deepEqual(dual.network, parseNet("10.244.0.0/16"));
  assert.deepEqual(dual.ipv6Network, parseNet("fd00:10:244::/56"));
  const v4 = networkRules(
    parseNetworkConfig(JSON.stringify({ Network: "10.244.0.0/16", IPv6Network: "fd00::/56" })),
  );
  assert.equal(v4.ipv6Network, undefined);
});

Deno.test("every rule has a description, and rejections carry a rule from the list", () => {
  for (const [rule, text] of Object.entries(LEASE_RULES)) assert.ok(text.length > 10, rule);
  const r = new LeaseRejection("k", "own_subnet", "d");
  assert.equal(r.name, "LeaseRejection");
  assert.equal(r.message, 'lease "k": own_subnet: d');
  assert.ok(r instanceof Error);
});
