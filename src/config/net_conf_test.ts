import assert from "node:assert/strict";
import { ConfigError, parseNetworkConfig } from "./net_conf.ts";
import { formatNet } from "../net/ip.ts";

function rejects(input: string | Record<string, unknown>, key: string, rule: RegExp): void {
  assert.throws(() => parseNetworkConfig(input), (e: unknown) => {
    assert.ok(e instanceof ConfigError, String(e));
    assert.equal(e.key, key);
    assert.match(e.message, rule);
    assert.ok(e.message.startsWith(`network config: ${key}=`), e.message);
    return true;
  });
}

Deno.test("parseNetworkConfig() matches keys case-insensitively, as flannel's Go decoder does", () => {
  const c = parseNetworkConfig(
    '{"network":"10.244.0.0/16","subnetlen":25,"BACKEND":{"type":"VXLAN","vni":7}}',
  );
  assert.equal(formatNet(c.network!), "10.244.0.0/16");
  assert.equal(c.subnetLen, 25);
  assert.equal(c.backend.type, "vxlan");
});

Deno.test("parseNetworkConfig() applies flannel's defaults", () => {
  const c = parseNetworkConfig({ Network: "10.244.0.0/16" });
  assert.equal(c.enableIPv4, true);
  assert.equal(c.enableIPv6, false);
  assert.equal(c.enableNFTables, false);
  assert.equal(c.subnetLen, 24, "24 when the network is /22 or larger");
  assert.equal(formatNet(c.subnetMin!), "10.244.1.0/24", "the first subnet is skipped");
  assert.equal(formatNet(c.subnetMax!), "10.244.255.0/24", "the last subnet");
  assert.equal(c.backendDefaulted, true);
  assert.equal(c.backend.type, "udp", "flanneld's default (pkg/subnet/config.go), whatever its docs say");
});

Deno.test("parseNetworkConfig() defaults SubnetLen to prefix + 2 for networks smaller than /22", () => {
  assert.equal(parseNetworkConfig({ Network: "10.0.0.0/23" }).subnetLen, 25);
  assert.equal(parseNetworkConfig({ Network: "10.0.0.0/28" }).subnetLen, 30);
});

Deno.test("parseNetworkConfig() rejects a network prefix longer than /28 without SubnetLen", () => {
  rejects({ Network: "10.0.0.0/29" }, "Network", /too small for subnets: at most \/28/);
});

Deno.test("parseNetworkConfig() requires Network when IPv4 is enabled", () => {
  rejects({ Backend: { Type: "vxlan" } }, "Network", /required/);
  rejects({ EnableIPv4: false, EnableIPv6: false }, "EnableIPv4", /at least one/);
});

Deno.test("parseNetworkConfig() rejects a SubnetLen longer than 30", () => {
  rejects({ Network: "10.244.0.0/16", SubnetLen: 31 }, "SubnetLen", /at most 30/);
});

Deno.test("parseNetworkConfig() rejects a SubnetLen shorter than the Network prefix + 2", () => {
  rejects(
    { Network: "10.244.0.0/16", SubnetLen: 17 },
    "SubnetLen",
    /at least the Network prefix \+ 2 \(18\)/,
  );
});

Deno.test("parseNetworkConfig() rejects SubnetMin/SubnetMax outside the Network or off a subnet boundary", () => {
  rejects({ Network: "10.244.0.0/16", SubnetMin: "10.245.0.0" }, "SubnetMin", /not inside 10\.244\.0\.0\/16/);
  rejects({ Network: "10.244.0.0/16", SubnetMax: "10.243.0.0" }, "SubnetMax", /not inside/);
  rejects({ Network: "10.244.0.0/16", SubnetMin: "10.244.1.128" }, "SubnetMin", /not on a \/24 boundary/);
  rejects(
    { Network: "10.244.0.0/16", SubnetMin: "10.244.9.0", SubnetMax: "10.244.8.0" },
    "SubnetMin",
    /must not be above SubnetMax/,
  );
  const ok = parseNetworkConfig({
    Network: "10.244.0.0/16",
    SubnetMin: "10.244.8.0",
    SubnetMax: "10.244.9.0",
  });
  assert.equal(formatNet(ok.subnetMin!), "10.244.8.0/24");
});

Deno.test("parseNetworkConfig() validates IPv6: IPv6SubnetLen ≤ 126, default 64 or prefix + 2, prefix ≤ /124", () => {
  const c = parseNetworkConfig({ EnableIPv6: true, EnableIPv4: false, IPv6Network: "fd00:10:244::/56" });
  assert.equal(c.ipv6SubnetLen, 64);
  assert.equal(formatNet(c.ipv6SubnetMin!), "fd00:10:244:1::/64");
  assert.equal(
    parseNetworkConfig({ EnableIPv6: true, EnableIPv4: false, IPv6Network: "fd00::/120" }).ipv6SubnetLen,
    122,
  );
  rejects({ EnableIPv6: true, EnableIPv4: false, IPv6Network: "fd00::/125" }, "IPv6Network", /at most \/124/);
  rejects(
    { EnableIPv6: true, EnableIPv4: false, IPv6Network: "fd00::/56", IPv6SubnetLen: 127 },
    "IPv6SubnetLen",
    /at most 126/,
  );
  rejects({ EnableIPv6: true, EnableIPv4: false }, "IPv6Network", /required/);
  rejects({ EnableIPv6: true, EnableIPv4: false, IPv6Network: "10.0.0.0/8" }, "IPv6Network", /IPv6 network/);
});

Deno.test("parseNetworkConfig() names the key, the value and the rule for malformed values", () => {
  rejects("{not json", "(document)", /not valid JSON/);
  rejects({ Network: "10.244.0.0/33" }, "Network", /prefix/);
  rejects({ Network: "10.244.0.1/16" }, "Network", /host bits set/);
  rejects({ Network: 5 }, "Network", /CIDR string/);
  rejects({ Network: "10.244.0.0/16", EnableIPv6: "yes" }, "EnableIPv6", /true or false/);
  rejects({ Network: "10.244.0.0/16", SubnetLen: 24.5 }, "SubnetLen", /integer/);
  rejects({ Network: "10.244.0.0/16", Backend: "vxlan" }, "Backend", /object/);
});

Deno.test("parseNetworkConfig() keeps other backends' options as written", () => {
  const c = parseNetworkConfig({ Network: "10.244.0.0/16", Backend: { Type: "host-gw" } });
  assert.equal(c.backend.type, "host-gw");
  assert.deepEqual(c.backend.options, { type: "host-gw" });
});

Deno.test("parseNetworkConfig() accepts SubnetLen exactly at the Network prefix + 2 and at 30", () => {
  assert.equal(parseNetworkConfig({ Network: "10.0.0.0/16", SubnetLen: 18 }).subnetLen, 18);
  const small = parseNetworkConfig({ Network: "10.0.0.0/28", SubnetLen: 30 });
  assert.equal(formatNet(small.subnetMin!), "10.0.0.4/30");
  assert.equal(formatNet(small.subnetMax!), "10.0.0.12/30");
  rejects({ Network: "10.0.0.0/29", SubnetLen: 30 }, "SubnetLen", /at least the Network prefix \+ 2 \(31\)/);
});

Deno.test("parseNetworkConfig() names the family when an address of the other one is given", () => {
  rejects({ Network: "fd00::/48" }, "Network", /must be an IPv4 network/);
  rejects({ Network: "10.244.0.0/16", SubnetMin: "fd00::" }, "SubnetMin", /IPv4 address/);
  rejects({ Network: "10.244.0.0/16", SubnetMax: 7 }, "SubnetMax", /address string/);
  rejects({ Network: "10.244.0.0/16", SubnetMin: "10.244.300.0" }, "SubnetMin", /invalid IP/);
});

Deno.test("parseNetworkConfig() applies the IPv6 SubnetLen and SubnetMin/Max rules", () => {
  const v6 = { EnableIPv4: false, EnableIPv6: true, IPv6Network: "fd00:10:244::/56" };
  rejects({ ...v6, IPv6SubnetLen: 57 }, "IPv6SubnetLen", /at least the IPv6Network prefix \+ 2 \(58\)/);
  rejects({ ...v6, IPv6SubnetMin: "fd00:10:245::" }, "IPv6SubnetMin", /not inside fd00:10:244::\/56/);
  rejects({ ...v6, IPv6SubnetMax: "fd00:10:244:ff::1" }, "IPv6SubnetMax", /not on a \/64 boundary/);
  rejects(
    { ...v6, IPv6SubnetMin: "fd00:10:244:9::", IPv6SubnetMax: "fd00:10:244:8::" },
    "IPv6SubnetMin",
    /must not be above IPv6SubnetMax/,
  );
  const c = parseNetworkConfig({
    ...v6,
    IPv6SubnetMin: "fd00:10:244:10::",
    IPv6SubnetMax: "fd00:10:244:20::",
  });
  assert.equal(formatNet(c.ipv6SubnetMin!), "fd00:10:244:10::/64");
  assert.equal(formatNet(c.ipv6SubnetMax!), "fd00:10:244:20::/64");
  assert.equal(
    formatNet(parseNetworkConfig(v6).ipv6SubnetMax!),
    "fd00:10:244:ff::/64",
    "default: the last subnet",
  );
  assert.equal(parseNetworkConfig({ ...v6, IPv6Network: "fd00::/124" }).ipv6SubnetLen, 126);
});

Deno.test("parseNetworkConfig() reads a dual-stack config with lowercase keys", () => {
  const c = parseNetworkConfig({
    network: "10.244.0.0/16",
    enableipv6: true,
    ipv6network: "fd00:10:244::/56",
    ipv6subnetlen: 64,
    enablenftables: true,
    backend: { type: "vxlan" },
  });
  assert.equal(c.enableIPv4, true);
  assert.equal(c.enableIPv6, true);
  assert.equal(c.enableNFTables, true);
  assert.equal(formatNet(c.network!), "10.244.0.0/16");
  assert.equal(formatNet(c.ipv6Network!), "fd00:10:244::/56");
  assert.equal(c.backendDefaulted, false);
});

Deno.test("parseNetworkConfig() checks the types of EnableNFTables, Backend and Backend.Type", () => {
  rejects({ Network: "10.244.0.0/16", EnableNFTables: 1 }, "EnableNFTables", /true or false/);
  rejects({ Network: "10.244.0.0/16", EnableIPv4: "true" }, "EnableIPv4", /true or false/);
  rejects({ Network: "10.244.0.0/16", Backend: { Type: 3 } }, "Backend.Type", /backend name/);
  rejects({ Network: "10.244.0.0/16", Backend: { Type: "" } }, "Backend.Type", /backend name/);
  rejects({ Network: "10.244.0.0/16", Backend: ["vxlan"] }, "Backend", /object/);
});

Deno.test("parseNetworkConfig() refuses a Backend without Type, or null, as flanneld does", () => {
  rejects(
    { Network: "10.244.0.0/16", Backend: { VNI: 9 } },
    "Backend.Type",
    /required .*unknown backend type/,
  );
  rejects({ Network: "10.244.0.0/16", Backend: {} }, "Backend.Type", /required/);
  rejects({ Network: "10.244.0.0/16", Backend: null }, "Backend", /must be an object with a Type/);
  const c = parseNetworkConfig({ Network: "10.244.0.0/16", Backend: { type: "VXLAN", VNI: 9 } });
  assert.equal(c.backend.type, "vxlan");
  assert.deepEqual(c.backend.options, { type: "VXLAN", vni: 9 });
  assert.equal(c.backendDefaulted, false, "a Backend section was given");
});
