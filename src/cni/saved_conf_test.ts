import assert from "node:assert/strict";
import { parseSubnetEnv } from "../config/subnet_env.ts";
import { parseCniConfig } from "./config.ts";
import { loadConf, removeConf, renderDelegate, saveConf } from "./saved_conf.ts";

const ENV = parseSubnetEnv(
  "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\n" +
    "FLANNEL_IPV6_NETWORK=fd00:10:244::/56\nFLANNEL_IPV6_SUBNET=fd00:10:244:3::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
);

Deno.test("renderDelegate() renders what flannel's plugin hands to bridge + host-local", () => {
  const cfg = parseCniConfig(JSON.stringify({
    cniVersion: "0.3.1",
    name: "cbr0",
    type: "flannel",
    delegate: { hairpinMode: true, isDefaultGateway: true },
  }));
  assert.deepEqual(renderDelegate(cfg, ENV, 1450, false), {
    hairpinMode: true,
    isDefaultGateway: true,
    name: "cbr0",
    type: "bridge",
    cniVersion: "0.3.1",
    bridge: "cni0",
    mtu: 1450,
    ipMasq: false,
    isGateway: true,
    ipam: {
      type: "host-local",
      ranges: [[{ subnet: "10.244.3.0/24" }], [{ subnet: "fd00:10:244:3::/64" }]],
      routes: [{ dst: "10.244.0.0/16" }, { dst: "fd00:10:244::/56" }],
    },
  });
});

Deno.test("saveConf()/loadConf() round-trip with mode 0600, read flannel's own files, and removeConf() is idempotent", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const cfg = parseCniConfig(JSON.stringify({
      cniVersion: "1.0.0",
      name: "cbr0",
      type: "flannel",
      delegate: { bridge: "br9", ipam: { dataDir: "/x/networks" } },
    }));
    const record = { ifname: "eth0", hostVeth: "veth0123456789a", ips: ["10.244.3.7"] };
    saveConf(`${dir}/flannel`, "abc", renderDelegate(cfg, ENV, 1450, true), record);
    assert.equal((Deno.statSync(`${dir}/flannel/abc`).mode ?? 0) & 0o777, 0o600);
    assert.deepEqual(loadConf(`${dir}/flannel`, "abc"), {
      name: "cbr0",
      bridge: "br9",
      ipamDataDir: "/x/networks",
      ipMasq: true,
      record,
    });
    const onDisk = JSON.parse(Deno.readTextFileSync(`${dir}/flannel/abc`));
    assert.equal(onDisk.type, "bridge", "still the document bridge + host-local take");
    assert.deepEqual(onDisk.weftAttachment, record);
    // A file flannel's plugin saved (bridge's defaults apply where it says nothing).
    Deno.writeTextFileSync(
      `${dir}/flannel/old`,
      JSON.stringify({ name: "cbr0", type: "bridge", ipam: { type: "host-local" } }),
    );
    assert.deepEqual(loadConf(`${dir}/flannel`, "old"), {
      name: "cbr0",
      bridge: "cni0",
      ipamDataDir: "/var/lib/cni/networks",
      ipMasq: false,
    });
    assert.equal(loadConf(`${dir}/flannel`, "missing"), undefined);
    const broken = { arr: "[1]", nul: "null", junk: "{", badrec: '{"weftAttachment":{"ips":[null]}}' };
    for (const [id, text] of Object.entries(broken)) {
      Deno.writeTextFileSync(`${dir}/flannel/${id}`, text);
      assert.equal(loadConf(`${dir}/flannel`, id)?.record, undefined, `${text}: no record, no crash`);
    }
    removeConf(`${dir}/flannel`, "abc");
    removeConf(`${dir}/flannel`, "abc");
    assert.equal(loadConf(`${dir}/flannel`, "abc"), undefined);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
