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

Deno.test("parseSubnetEnv() reads back what formatSubnetEnv() wrote, and flannel's file with quotes and CRLF", () => {
  const env = {
    network: parseNet("10.244.0.0/16"),
    subnet: parseNet("10.244.200.0/24"),
    mtu: 8950,
    ipMasq: false,
  };
  const back = parseSubnetEnv(formatSubnetEnv(env));
  assert.deepEqual(
    [formatNet(back.network!), formatNet(back.subnet!), back.mtu, back.ipMasq],
    ["10.244.0.0/16", "10.244.200.0/24", 8950, false],
  );
  const hand = parseSubnetEnv(
    '# written by hand\r\nFLANNEL_NETWORK="10.244.0.0/16"\r\nFLANNEL_SUBNET=10.244.7.1/24\r\nOTHER=x\r\n',
  );
  assert.equal(formatNet(hand.subnet!), "10.244.7.0/24", "FLANNEL_SUBNET's host address gives the subnet");
  assert.equal(formatNet(hand.network!), "10.244.0.0/16");
  assert.equal(hand.mtu, undefined);
});

Deno.test("formatSubnetEnv() defaults MTU 1500 and IPMASQ false, and writes IPv6-only leases without IPv4 lines", () => {
  assert.equal(
    formatSubnetEnv({ network: parseNet("10.5.0.0/16"), subnet: parseNet("10.5.1.0/24") }),
    "FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.1.1/24\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=false\n",
  );
  assert.equal(
    formatSubnetEnv({
      ipv6Network: parseNet("fd00::/48"),
      ipv6Subnet: parseNet("fd00:0:0:5::/64"),
      mtu: 1430,
      ipMasq: true,
    }),
    "FLANNEL_IPV6_NETWORK=fd00::/48\nFLANNEL_IPV6_SUBNET=fd00:0:0:5::1/64\nFLANNEL_MTU=1430\nFLANNEL_IPMASQ=true\n",
  );
});

Deno.test("parse errors name the file, the key and the value", () => {
  const cases: [string, RegExp][] = [
    [
      "FLANNEL_NETWORK=10.244.0.1/16\n",
      /\/x\/subnet\.env: FLANNEL_NETWORK=10\.244\.0\.1\/16: .*host bits set/,
    ],
    ["FLANNEL_SUBNET=10.244.3.1\n", /FLANNEL_SUBNET=10\.244\.3\.1: .*missing \/prefix/],
    ["FLANNEL_IPV6_SUBNET=fd00::zz/64\n", /FLANNEL_IPV6_SUBNET=fd00::zz\/64/],
    ["FLANNEL_MTU=67\n", /FLANNEL_MTU=67: must be an integer 68–65535/],
    ["FLANNEL_MTU=1450.5\n", /must be an integer/],
    ["FLANNEL_IPMASQ=True\n", /FLANNEL_IPMASQ=True: must be true or false/],
  ];
  for (const [text, want] of cases) {
    assert.throws(
      () => parseSubnetEnv(text, "/x/subnet.env"),
      (e: unknown) => e instanceof SubnetEnvError && e.path === "/x/subnet.env" && want.test(e.message),
      text,
    );
  }
});

Deno.test("writeSubnetEnv() replaces an existing file by rename: a reader of the old file sees it whole", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const path = `${dir}/subnet.env`;
    const lease = (n: number) => ({
      network: parseNet("10.244.0.0/16"),
      subnet: parseNet(`10.244.${n}.0/24`),
      mtu: 1450,
      ipMasq: true,
    });
    writeSubnetEnv(path, lease(1));
    await Deno.chmod(path, 0o600); // a stale mode is not kept: the new file is 0644 again
    using old = await Deno.open(path);
    const oldIno = (await old.stat()).ino;
    writeSubnetEnv(path, lease(2));
    assert.notEqual(Deno.statSync(path).ino, oldIno, "a new inode was renamed into place");
    assert.equal((Deno.statSync(path).mode ?? 0) & 0o777, 0o644);
    const buf = new Uint8Array(4096);
    const n = (await old.read(buf)) ?? 0;
    assert.equal(new TextDecoder().decode(buf.subarray(0, n)), formatSubnetEnv(lease(1)));
    assert.equal(Deno.readTextFileSync(path), formatSubnetEnv(lease(2)));
    assert.deepEqual([...Deno.readDirSync(dir)].map((e) => e.name), ["subnet.env"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("readSubnetEnv() accepts an IPv6-only file and refuses FLANNEL_SUBNET without FLANNEL_NETWORK", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${dir}/v6.env`,
      "FLANNEL_IPV6_NETWORK=fd00::/48\nFLANNEL_IPV6_SUBNET=fd00:0:0:5::1/64\n",
    );
    assert.equal(formatNet(readSubnetEnv(`${dir}/v6.env`).ipv6Subnet!), "fd00:0:0:5::/64");
    await Deno.writeTextFile(`${dir}/nonet.env`, "FLANNEL_SUBNET=10.244.3.1/24\n");
    assert.throws(() => readSubnetEnv(`${dir}/nonet.env`), /has FLANNEL_SUBNET but no FLANNEL_NETWORK/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
