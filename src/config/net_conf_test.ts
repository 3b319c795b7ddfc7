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
  assert.equal(c.backend.vxlan?.vni, 7);
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
  assert.equal(c.backend.type, "vxlan", "weft picks vxlan where flannel would pick udp");
  assert.deepEqual(c.backend.vxlan, { vni: 1, port: 0, gbp: false, directRouting: false, learning: false });
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

Deno.test("parseNetworkConfig() validates vxlan options", () => {
  rejects({ Network: "10.244.0.0/16", Backend: { Type: "vxlan", VNI: 0 } }, "Backend.VNI", /1–16777215/);
  rejects({ Network: "10.244.0.0/16", Backend: { Type: "vxlan", Port: 70000 } }, "Backend.Port", /0–65535/);
  rejects({ Network: "10.244.0.0/16", Backend: { Type: "vxlan", MTU: 100 } }, "Backend.MTU", /576–65535/);
  rejects(
    { Network: "10.244.0.0/16", Backend: { Type: "vxlan", DirectRouting: 1 } },
    "Backend.DirectRouting",
    /true or false/,
  );
  const c = parseNetworkConfig({
    Network: "10.244.0.0/16",
    Backend: {
      Type: "vxlan",
      VNI: 4096,
      Port: 4789,
      GBP: true,
      DirectRouting: true,
      Learning: true,
      MTU: 9000,
    },
  });
  assert.deepEqual(c.backend.vxlan, {
    vni: 4096,
    port: 4789,
    gbp: true,
    directRouting: true,
    learning: true,
    mtu: 9000,
  });
});

Deno.test("parseNetworkConfig() keeps other backends' options as written", () => {
  const c = parseNetworkConfig({ Network: "10.244.0.0/16", Backend: { Type: "host-gw" } });
  assert.equal(c.backend.type, "host-gw");
  assert.equal(c.backend.vxlan, undefined);
});
