import assert from "node:assert/strict";
import { parseCniConfig } from "./config.ts";
import { CniError } from "./types.ts";

/** kube-flannel's plugin entry exactly as libcni hands it over (name and cniVersion injected). */
const KUBE_FLANNEL = {
  cniVersion: "0.3.1",
  name: "cbr0",
  type: "flannel",
  delegate: { hairpinMode: true, isDefaultGateway: true },
};

function code(text: string): number {
  try {
    parseCniConfig(text);
  } catch (err) {
    if (err instanceof CniError) return err.code;
    throw err;
  }
  return 0;
}

Deno.test("parseCniConfig() takes kube-flannel's conflist entry unchanged, with flannel's defaults", () => {
  const c = parseCniConfig(JSON.stringify(KUBE_FLANNEL));
  assert.equal(c.cniVersion, "0.3.1");
  assert.equal(c.name, "cbr0");
  assert.equal(c.type, "flannel");
  assert.equal(c.subnetFile, "/run/flannel/subnet.env");
  assert.equal(c.dataDir, "/var/lib/cni/flannel");
  assert.equal(c.ipamDataDir, "/var/lib/cni/networks");
  assert.equal(c.bridge, "cni0");
  assert.equal(c.hairpinMode, true);
  assert.equal(c.isDefaultGateway, true);
  assert.equal(c.mtu, undefined, "MTU comes from subnet.env");
  assert.equal(c.ipMasq, undefined, "ipMasq comes from subnet.env");
});

Deno.test("parseCniConfig() reads every delegate option flannel documents", () => {
  const c = parseCniConfig(JSON.stringify({
    ...KUBE_FLANNEL,
    subnetFile: "/x/subnet.env",
    dataDir: "/x/flannel",
    delegate: {
      hairpinMode: false,
      isDefaultGateway: false,
      mtu: 1400,
      bridge: "mybr0",
      ipMasq: true,
      ipam: { type: "host-local", dataDir: "/x/networks" },
    },
  }));
  assert.deepEqual(
    [c.subnetFile, c.dataDir, c.hairpinMode, c.isDefaultGateway, c.mtu, c.bridge, c.ipMasq, c.ipamDataDir],
    ["/x/subnet.env", "/x/flannel", false, false, 1400, "mybr0", true, "/x/networks"],
  );
});

Deno.test("parseCniConfig() takes the native form with the same keys at top level, default route on", () => {
  const c = parseCniConfig(
    JSON.stringify({ cniVersion: "1.1.0", name: "weft", type: "weft", mtu: 9000, bridge: "weft0" }),
  );
  assert.deepEqual([c.type, c.mtu, c.bridge, c.isDefaultGateway], ["weft", 9000, "weft0", true]);
});

Deno.test("parseCniConfig() ignores unknown fields and keeps prevResult and GC's attachments", () => {
  const c = parseCniConfig(JSON.stringify({
    ...KUBE_FLANNEL,
    cniVersion: "1.1.0",
    capabilities: { portMappings: true },
    runtimeConfig: { portMappings: [] },
    prevResult: { cniVersion: "1.1.0", ips: [] },
    "cni.dev/valid-attachments": [{ containerID: "a", ifname: "eth0" }],
  }));
  assert.deepEqual(c.prevResult, { cniVersion: "1.1.0", ips: [] });
  assert.deepEqual(c.validAttachments, [{ containerID: "a", ifname: "eth0" }]);
  const old = parseCniConfig(
    JSON.stringify({ ...KUBE_FLANNEL, "cni.dev/attachments": [{ containerID: "b", ifname: "eth0" }] }),
  );
  assert.deepEqual(old.validAttachments, [{ containerID: "b", ifname: "eth0" }], "the older key too");
});

Deno.test("parseCniConfig() answers 6 for bad JSON, 1 for an unknown version, 7 for bad fields", () => {
  assert.equal(code("{"), 6);
  assert.equal(code("null"), 6);
  assert.equal(code('"text"'), 6);
  assert.equal(code(JSON.stringify({ ...KUBE_FLANNEL, cniVersion: "0.2.0" })), 1);
  assert.equal(code(JSON.stringify({ ...KUBE_FLANNEL, cniVersion: "2.0.0" })), 1);
  const bad: Record<string, unknown>[] = [
    { cniVersion: undefined },
    { cniVersion: 1 },
    { name: "" },
    { name: "../etc" },
    { delegate: "x" },
    { delegate: { mtu: "1450" } },
    { delegate: { mtu: 20 } },
    { delegate: { mtu: 1450.5 } },
    { delegate: { bridge: "a/b" } },
    { delegate: { bridge: "a-very-long-bridge-name" } },
    { delegate: { hairpinMode: "yes" } },
    { delegate: { type: "macvlan" } },
    { delegate: { ipam: { type: "dhcp" } } },
    { delegate: { ipam: [] } },
    { "cni.dev/valid-attachments": {} },
    { "cni.dev/valid-attachments": [{ containerID: 1 }] },
  ];
  for (const b of bad) assert.equal(code(JSON.stringify({ ...KUBE_FLANNEL, ...b })), 7, JSON.stringify(b));
});
