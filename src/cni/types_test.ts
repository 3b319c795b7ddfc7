import assert from "node:assert/strict";
import { parsePrevResult } from "./prev_result.ts";
import { CniError, mergePrevResult, type Result, resultFor } from "./types.ts";

const RESULT: Result = {
  interfaces: [
    { name: "cni0", mac: "02:00:00:00:00:01" },
    { name: "veth1", mac: "02:00:00:00:00:02" },
    { name: "eth0", mac: "02:00:00:00:00:03", mtu: 1450, sandbox: "/run/netns/p" },
  ],
  ips: [
    { address: "10.244.3.2/24", gateway: "10.244.3.1", interface: 2 },
    { address: "fd00::2/64", gateway: "fd00::1", interface: 2 },
  ],
  routes: [{ dst: "10.244.0.0/16", gw: "10.244.3.1" }],
  dns: {},
};

Deno.test("resultFor() adds ip.version in 0.3.x/0.4.0 results and interface mtu only in 1.1.0", () => {
  for (const v of ["0.3.0", "0.3.1", "0.4.0"]) {
    const r = resultFor(v, RESULT) as { ips: { version: string }[]; interfaces: { mtu?: number }[] };
    assert.deepEqual(r.ips.map((i) => i.version), ["4", "6"], v);
    assert.equal(r.interfaces[2]!.mtu, undefined, v);
  }
  const r1 = resultFor("1.0.0", RESULT) as { ips: Record<string, unknown>[]; interfaces: { mtu?: number }[] };
  assert.equal("version" in r1.ips[0]!, false);
  assert.equal(r1.interfaces[2]!.mtu, undefined);
  const r11 = resultFor("1.1.0", RESULT) as {
    cniVersion: string;
    interfaces: { mtu?: number; sandbox?: string }[];
  };
  assert.equal(r11.cniVersion, "1.1.0");
  assert.equal(r11.interfaces[2]!.mtu, 1450);
  assert.equal(r11.interfaces[2]!.sandbox, "/run/netns/p");
});

Deno.test("mergePrevResult() puts the previous plugin's result first and re-points weft's addresses", () => {
  const merged = mergePrevResult(
    parsePrevResult({
      cniVersion: "0.4.0",
      interfaces: [{ name: "x0", mac: "02:00:00:00:00:09" }],
      ips: [{ version: "4", address: "192.0.2.1/24", interface: 0 }],
      routes: [{ dst: "192.0.2.0/24", gw: "192.0.2.254" }],
      dns: { nameservers: ["192.0.2.53"] },
    }),
    RESULT,
  );
  assert.deepEqual(merged.interfaces.map((i) => i.name), ["x0", "cni0", "veth1", "eth0"]);
  assert.deepEqual(merged.ips.map((i) => i.interface), [0, 3, 3]);
  assert.equal("version" in merged.ips[0]!, false, "legacy fields are dropped, resultFor adds them back");
  assert.deepEqual(merged.routes[0], { dst: "192.0.2.0/24", gw: "192.0.2.254" });
  assert.deepEqual(merged.dns, { nameservers: ["192.0.2.53"] });
  assert.equal(mergePrevResult(undefined, RESULT), RESULT);
});

Deno.test("CniError renders the spec's error object", () => {
  assert.deepEqual(new CniError(11, "later", "why").toJSON("1.0.0"), {
    cniVersion: "1.0.0",
    code: 11,
    msg: "later",
    details: "why",
  });
  assert.deepEqual(new CniError(7, "bad").toJSON("0.3.1"), { cniVersion: "0.3.1", code: 7, msg: "bad" });
});
