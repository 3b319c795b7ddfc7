import assert from "node:assert/strict";
import { formatNet, parseNet } from "../net/ip.ts";
import { leaseAttrsJSON, leaseName, parseLeaseAttrs, parseSubnetKey, subnetKey } from "./lease.ts";

Deno.test("subnetKey() encodes an IPv4 subnet as flannel does: address, dash, prefix", () => {
  assert.equal(subnetKey(parseNet("10.244.3.0/24")), "10.244.3.0-24");
});

Deno.test("subnetKey() joins a dual-stack lease with &, IPv4 first", () => {
  assert.equal(
    subnetKey(parseNet("10.244.3.0/24"), parseNet("fd00:10:244:3::/64")),
    "10.244.3.0-24&fd00:10:244:3::-64",
  );
  assert.equal(subnetKey(undefined, parseNet("fd00:10:244:3::/64")), "fd00:10:244:3::-64");
  assert.throws(() => subnetKey(), /needs a subnet/);
});

Deno.test("parseSubnetKey() reads both forms back and rejects other keys", () => {
  const dual = parseSubnetKey("10.244.3.0-24&fd00:10:244:3::-64")!;
  assert.equal(formatNet(dual.subnet!), "10.244.3.0/24");
  assert.equal(formatNet(dual.ipv6Subnet!), "fd00:10:244:3::/64");
  assert.equal(parseSubnetKey("fd00::-64")?.subnet, undefined);
  for (const bad of ["config", "10.244.3.0", "10.244.3.0-33", "10.244.3.1-24", "x-24", ""]) {
    assert.equal(parseSubnetKey(bad), undefined, bad);
  }
});

Deno.test("leaseAttrsJSON() writes flannel's field order, PublicIPv6 null, the Backend fields only when set", () => {
  const flannel =
    '{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}';
  // Fields given in another order still come out in flannel's.
  assert.equal(
    leaseAttrsJSON({
      BackendData: { VNI: 1, VtepMAC: "c6:d2:32:6f:8f:44" },
      BackendType: "vxlan",
      PublicIP: "192.168.64.3",
    }),
    flannel,
  );
  // flannel's LeaseAttrs: BackendType, BackendData and BackendV6Data are `json:",omitempty"`.
  assert.equal(
    leaseAttrsJSON({ PublicIP: "1.2.3.4", BackendType: "host-gw" }),
    '{"PublicIP":"1.2.3.4","PublicIPv6":null,"BackendType":"host-gw"}',
  );
  // flannel's udp backend publishes only PublicIP.
  assert.equal(
    leaseAttrsJSON({ PublicIP: "1.2.3.4", BackendType: "" }),
    '{"PublicIP":"1.2.3.4","PublicIPv6":null}',
  );
  assert.equal(
    leaseAttrsJSON({
      PublicIP: "1.2.3.4",
      PublicIPv6: "fd00::4",
      BackendType: "vxlan",
      BackendData: { VNI: 1 },
      BackendV6Data: { VNI: 1, VtepMAC: "aa:bb:cc:dd:ee:ff" },
    }),
    '{"PublicIP":"1.2.3.4","PublicIPv6":"fd00::4","BackendType":"vxlan","BackendData":{"VNI":1},' +
      '"BackendV6Data":{"VNI":1,"VtepMAC":"aa:bb:cc:dd:ee:ff"}}',
  );
});

Deno.test("parseLeaseAttrs() round-trips flannel's JSON byte for byte", () => {
  for (
    const text of [
      '{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}',
      '{"PublicIP":"10.0.0.1","PublicIPv6":"fd00::1","BackendType":"vxlan","BackendData":{"VNI":1},"BackendV6Data":{"VNI":1}}',
      '{"PublicIP":"10.0.0.2","PublicIPv6":null,"BackendType":"host-gw"}',
      '{"PublicIP":"10.0.0.4","PublicIPv6":null}',
      '{"PublicIP":"10.0.0.5","PublicIPv6":null,"BackendType":"wireguard","BackendData":{"PublicKey":"ydz5Ryw6jQ5QIE1JgpvDd9Oqr3ZpmhrEuChsN6HpNVU=","Port":51820}}',
    ]
  ) {
    assert.equal(leaseAttrsJSON(parseLeaseAttrs(text)), text);
  }
});

Deno.test("parseLeaseAttrs() accepts flannel JSON without optional fields and names the key when broken", () => {
  const a = parseLeaseAttrs('{"PublicIP":"10.0.0.3","BackendType":"udp"}');
  assert.equal(a.PublicIPv6, null);
  assert.equal(a.BackendData, null);
  assert.throws(() => parseLeaseAttrs("{", "10.244.1.0-24"), /lease 10\.244\.1\.0-24: value is not JSON/);
  assert.throws(() => parseLeaseAttrs('{"BackendType":"vxlan"}', "k"), /lease k: value has no PublicIP/);
});

Deno.test("leaseName() prints both subnets of a dual-stack lease", () => {
  assert.equal(
    leaseName({ subnet: parseNet("10.244.3.0/24"), ipv6Subnet: parseNet("fd00:10:244:3::/64") }),
    "10.244.3.0/24,fd00:10:244:3::/64",
  );
});
