import assert from "node:assert/strict";
import { ConfigError, parseNetworkConfig } from "../config/net_conf.ts";
import { backendTypes, parseBackendOptions } from "./registry.ts";

/** The parsed options of a whole network config's Backend section. */
function vxlanOf(input: Record<string, unknown>): unknown {
  return parseBackendOptions(parseNetworkConfig(input));
}

function rejects(input: Record<string, unknown>, key: string, rule: RegExp): void {
  assert.throws(() => vxlanOf(input), (e: unknown) => {
    assert.ok(e instanceof ConfigError, String(e));
    assert.equal(e.key, key);
    assert.match(e.message, rule);
    assert.ok(e.message.startsWith(`network config: ${key}=`), e.message);
    return true;
  });
}

Deno.test("parseBackendOptions() matches keys case-insensitively and applies flannel's vxlan defaults", () => {
  const c = vxlanOf({ network: "10.244.0.0/16", subnetlen: 25, BACKEND: { type: "VXLAN", vni: 7 } });
  assert.equal((c as { vni: number }).vni, 7);
  assert.deepEqual(vxlanOf({ Network: "10.244.0.0/16", Backend: { Type: "vxlan" } }), {
    vni: 1,
    port: 0,
    gbp: false,
    directRouting: false,
    learning: false,
    txChecksumOffload: false,
  });
  assert.deepEqual(vxlanOf({ Network: "10.244.0.0/16", Backend: { Type: "vxlan", VNI: 9 } }), {
    vni: 9,
    port: 0,
    gbp: false,
    directRouting: false,
    learning: false,
    txChecksumOffload: false,
  });
});

Deno.test("parseBackendOptions() rejects a backend weft does not have, listing the ones it has", () => {
  rejects(
    { Network: "10.244.0.0/16", Backend: { Type: "ipip" } },
    "Backend.Type",
    /not supported \(supported: /,
  );
  assert.ok(backendTypes().includes("vxlan") && backendTypes().includes("host-gw"));
});

Deno.test("parseBackendOptions() validates vxlan options", () => {
  rejects({ Network: "10.244.0.0/16", Backend: { Type: "vxlan", VNI: 0 } }, "Backend.VNI", /1–16777215/);
  rejects({ Network: "10.244.0.0/16", Backend: { Type: "vxlan", Port: 70000 } }, "Backend.Port", /0–65535/);
  rejects({ Network: "10.244.0.0/16", Backend: { Type: "vxlan", MTU: 100 } }, "Backend.MTU", /576–65535/);
  rejects(
    { Network: "10.244.0.0/16", Backend: { Type: "vxlan", DirectRouting: 1 } },
    "Backend.DirectRouting",
    /true or false/,
  );
  const c = vxlanOf({
    Network: "10.244.0.0/16",
    Backend: {
      Type: "vxlan",
      VNI: 4096,
      Port: 4789,
      GBP: true,
      DirectRouting: true,
      Learning: true,
      MTU: 9000,
      txchecksumoffload: true,
    },
  });
  assert.deepEqual(c, {
    vni: 4096,
    port: 4789,
    gbp: true,
    directRouting: true,
    learning: true,
    mtu: 9000,
    txChecksumOffload: true,
  });
});

Deno.test("parseBackendOptions() checks the types of the vxlan numbers and flags", () => {
  rejects(
    { Network: "10.244.0.0/16", Backend: { Type: "vxlan", VNI: -1 } },
    "Backend.VNI",
    /non-negative integer/,
  );
  rejects(
    { Network: "10.244.0.0/16", Backend: { Type: "vxlan", VNI: 16777216 } },
    "Backend.VNI",
    /1–16777215/,
  );
  rejects(
    { Network: "10.244.0.0/16", Backend: { Type: "vxlan", GBP: "yes" } },
    "Backend.GBP",
    /true or false/,
  );
  rejects(
    { Network: "10.244.0.0/16", Backend: { Type: "vxlan", Learning: 0 } },
    "Backend.Learning",
    /true or false/,
  );
  rejects([] as unknown as Record<string, unknown>, "(document)", /JSON object/);
});
