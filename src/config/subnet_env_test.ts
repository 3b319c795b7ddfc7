import assert from "node:assert/strict";
import {
  formatSubnetEnv,
  parseSubnetEnv,
  readSubnetEnv,
  SubnetEnvError,
  writeSubnetEnv,
} from "./subnet_env.ts";
import { formatNet, parseNet } from "../net/ip.ts";

Deno.test("formatSubnetEnv() writes flannel's subnet.env byte for byte for a fixed lease", () => {
  const text = formatSubnetEnv({
    network: parseNet("10.244.0.0/16"),
    subnet: parseNet("10.244.3.0/24"),
    mtu: 1450,
    ipMasq: true,
  });
  assert.equal(
    text,
    "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n",
  );
});

Deno.test("formatSubnetEnv() puts the IPv6 lines between the IPv4 lines and the MTU, as flannel does", () => {
  const text = formatSubnetEnv({
    network: parseNet("10.244.0.0/16"),
    subnet: parseNet("10.244.3.0/24"),
    ipv6Network: parseNet("fd00:10:244::/56"),
    ipv6Subnet: parseNet("fd00:10:244:3::/64"),
    mtu: 1430,
    ipMasq: false,
  });
  assert.equal(
    text,
    "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_IPV6_NETWORK=fd00:10:244::/56\n" +
      "FLANNEL_IPV6_SUBNET=fd00:10:244:3::1/64\nFLANNEL_MTU=1430\nFLANNEL_IPMASQ=false\n",
  );
  const back = parseSubnetEnv(text);
  assert.equal(formatNet(back.ipv6Subnet!), "fd00:10:244:3::/64");
  assert.equal(back.mtu, 1430);
});

Deno.test("writeSubnetEnv() writes atomically with mode 0644 and readSubnetEnv() reads it back", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/run/flannel/subnet.env`;
    writeSubnetEnv(path, {
      network: parseNet("10.244.0.0/16"),
      subnet: parseNet("10.244.9.0/24"),
      mtu: 1450,
      ipMasq: true,
    });
    assert.equal((Deno.statSync(path).mode ?? 0) & 0o777, 0o644);
    assert.deepEqual(
      [...Deno.readDirSync(`${dir}/run/flannel`)].map((e) => e.name),
      ["subnet.env"],
      "no temp file left",
    );
    const env = readSubnetEnv(path);
    assert.equal(formatNet(env.subnet!), "10.244.9.0/24");
    assert.equal(env.ipMasq, true);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readSubnetEnv() says the agent is not ready when the file is missing or has no subnet", async () => {
  const dir = await Deno.makeTempDir();
  try {
    assert.throws(
      () => readSubnetEnv(`${dir}/nope.env`),
      (e: unknown) => e instanceof SubnetEnvError && /has not written it yet/.test(e.message),
    );
    await Deno.writeTextFile(`${dir}/half.env`, "FLANNEL_MTU=1450\n");
    assert.throws(() => readSubnetEnv(`${dir}/half.env`), /no FLANNEL_SUBNET/);
    assert.throws(() => parseSubnetEnv("FLANNEL_MTU=abc\n"), /FLANNEL_MTU=abc: must be an integer/);
    assert.throws(() => parseSubnetEnv("FLANNEL_IPMASQ=yes\n"), /true or false/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
