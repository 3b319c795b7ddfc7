/**
 * Fuzzing the CNI plugin's input parsers (issue 12): random and mutated CNI_* environments, network
 * configs (kube-flannel's conflist entry, the native form, chained prevResults, GC's attachment list)
 * and subnet.env files. Every input must either parse or be refused with one of the spec's codes —
 * never crash, never escape as code 101 ("plugin bug") where the spec has a code.
 *
 * Deterministic: a fixed seed (override with WEFT_FUZZ_SEED, and the case count with WEFT_FUZZ_CASES,
 * for a longer hunt); a failure prints the seed, the case and the input.
 */
import assert from "node:assert/strict";
import { plansFromText } from "./plan.ts";
import { parseEnv, parseRequest } from "./request.ts";
import { CniError, mergePrevResult, resultFor, SUPPORTED_VERSIONS } from "./types.ts";
import { mulberry32 } from "../../tests/helpers/prng.ts";

const SEED = Number(Deno.env.get("WEFT_FUZZ_SEED") ?? 0x5eed_cafe);
const CASES = Number(Deno.env.get("WEFT_FUZZ_CASES") ?? 4000);
/** Codes the spec defines for bad input; anything else (101, or a thrown non-CniError) is a bug. */
const SPEC_CODES = new Set([1, 2, 3, 4, 5, 6, 7, 11]);

/** Seeded, to drive the fuzzer reproducibly. */
const prng = mulberry32;

const KEYS = [
  "cniVersion",
  "name",
  "type",
  "delegate",
  "ipam",
  "dataDir",
  "mtu",
  "bridge",
  "hairpinMode",
  "isDefaultGateway",
  "ipMasq",
  "subnetFile",
  "logFile",
  "prevResult",
  "ips",
  "interfaces",
  "routes",
  "address",
  "gateway",
  "interface",
  "dst",
  "gw",
  "dns",
  "mac",
  "sandbox",
  "version",
  "runtimeConfig",
  "cni.dev/valid-attachments",
  "cni.dev/attachments",
  "containerID",
  "ifname",
  "__proto__",
  "constructor",
  "toString",
  "hasOwnProperty",
  "",
];
const STRINGS = [
  "",
  "eth0",
  "cni0",
  "cbr0",
  "flannel",
  "weft",
  "bridge",
  "host-local",
  "dhcp",
  "1.0.0",
  "1.1.0",
  "0.3.1",
  "0.4.0",
  "9.9.9",
  "10.244.3.5/24",
  "10.244.3.1",
  "fd00::5/64",
  "::/0",
  "0.0.0.0/0",
  "10.244.0.0/16",
  "../../etc",
  "/",
  ".",
  "..",
  "a/b",
  "a:b",
  "x".repeat(300),
  "\u0000",
  "\n",
  "é",
  "🙂",
  "1e309",
  "NaN",
  "10.244.3.5/33",
  "300.1.1.1/24",
  "10.244.3.5",
  "ffff::ffff::1/64",
  "-1",
  "veth0123456789ab",
];

function pick<T>(r: () => number, xs: readonly T[]): T {
  return xs[Math.floor(r() * xs.length)]!;
}

function randomString(r: () => number): string {
  if (r() < 0.7) return pick(r, STRINGS);
  const n = Math.floor(r() * 20);
  let s = "";
  for (let i = 0; i < n; i++) {
    s += String.fromCharCode(r() < 0.8 ? 32 + Math.floor(r() * 95) : Math.floor(r() * 0x3000));
  }
  return s;
}

function randomValue(r: () => number, depth: number): unknown {
  const k = Math.floor(r() * (depth > 3 ? 5 : 7));
  switch (k) {
    case 0:
      return null;
    case 1:
      return r() < 0.5;
    case 2:
      return pick(r, [0, -1, 1, 68, 1450, 65535, 65536, 1.5, 2 ** 53, -(2 ** 31), 1e308]);
    case 3:
    case 4:
      return randomString(r);
    case 5:
      return Array.from({ length: Math.floor(r() * 4) }, () => randomValue(r, depth + 1));
    default: {
      const o: Record<string, unknown> = {};
      for (let i = Math.floor(r() * 5); i > 0; i--) o[pick(r, KEYS)] = randomValue(r, depth + 1);
      return o;
    }
  }
}

/** Valid inputs the mutations start from. */
/** A well-formed chained result (what a previous plugin would hand on). */
const PREV_RESULT = {
  cniVersion: "1.0.0",
  interfaces: [{ name: "cni0", mac: "02:00:00:00:00:01" }, {
    name: "eth0",
    mac: "02:00:00:00:00:02",
    sandbox: "/run/netns/p",
  }],
  ips: [{ address: "10.244.3.5/24", gateway: "10.244.3.1", interface: 1 }],
  routes: [{ dst: "10.244.0.0/16", gw: "10.244.3.1" }, { dst: "0.0.0.0/0" }],
  dns: { nameservers: ["10.96.0.10"] },
};
function seeds(): Record<string, unknown>[] {
  const prevResult = PREV_RESULT;

  return [
    {
      cniVersion: "0.3.1",
      name: "cbr0",
      type: "flannel",
      delegate: { hairpinMode: true, isDefaultGateway: true },
    },
    {
      cniVersion: "1.0.0",
      name: "cbr0",
      type: "flannel",
      subnetFile: "/run/flannel/subnet.env",
      dataDir: "/var/lib/cni/flannel",
      delegate: {
        hairpinMode: true,
        isDefaultGateway: true,
        mtu: 1450,
        bridge: "cni0",
        ipam: { dataDir: "/x" },
      },
    },
    {
      cniVersion: "1.1.0",
      name: "weftnet",
      type: "weft",
      bridge: "br0",
      mtu: 1400,
      ipMasq: true,
      prevResult,
    },
    {
      cniVersion: "0.4.0",
      name: "cbr0",
      type: "flannel",
      prevResult: { ...prevResult, ips: [{ version: "4", address: "10.244.3.5/24" }] },
    },
    {
      cniVersion: "1.1.0",
      name: "cbr0",
      type: "flannel",
      "cni.dev/valid-attachments": [{ containerID: "a", ifname: "eth0" }],
    },
    { cniVersion: "1.1.0", name: "cbr0", type: "flannel", "cni.dev/attachments": [] },
  ];
}

/** Replaces, deletes or retypes one node somewhere in a copy of `v`. */
function mutate(r: () => number, v: unknown, depth = 0): unknown {
  if (v === null || typeof v !== "object" || (depth > 0 && r() < 0.25)) return randomValue(r, depth);
  const copy: Record<string, unknown> | unknown[] = Array.isArray(v)
    ? [...v]
    : { ...(v as Record<string, unknown>) };
  const keys = Object.keys(copy);
  const roll = r();
  if (roll < 0.15 || keys.length === 0) {
    (copy as Record<string, unknown>)[Array.isArray(copy) ? String(keys.length) : pick(r, KEYS)] =
      randomValue(r, depth + 1);
  } else if (roll < 0.3 && !Array.isArray(copy)) {
    delete copy[pick(r, keys)];
  } else {
    const key = pick(r, keys);
    (copy as Record<string, unknown>)[key] = mutate(r, (copy as Record<string, unknown>)[key], depth + 1);
  }
  return copy;
}

/** One to three mutations in a row. */
function mutateN(r: () => number, v: unknown): unknown {
  let out = v;
  for (let i = 1 + Math.floor(r() * 3); i > 0; i--) out = mutate(r, out);
  return out;
}

/** Byte-level damage to JSON text: flips, cuts, insertions. */
function damage(r: () => number, text: string): string {
  let s = text;
  for (let i = 1 + Math.floor(r() * 3); i > 0; i--) {
    const at = Math.floor(r() * (s.length + 1));
    const roll = r();
    if (roll < 0.3) s = s.slice(0, at);
    else if (roll < 0.6) {
      s = s.slice(0, at) + pick(r, ["{", "}", "[", "]", '"', ",", ":", "\\", "\u0000", "null", "1e999"]) +
        s.slice(at);
    } else s = s.slice(0, at) + String.fromCharCode(Math.floor(r() * 256)) + s.slice(at + 1);
  }
  return s;
}

function randomEnv(r: () => number): Record<string, string | undefined> {
  const maybe = (v: () => string) => (r() < 0.1 ? undefined : v());
  return {
    CNI_COMMAND: maybe(() => r() < 0.8 ? pick(r, ["ADD", "DEL", "CHECK", "GC", "STATUS"]) : randomString(r)),
    CNI_CONTAINERID: maybe(() => r() < 0.6 ? `ctr${Math.floor(r() * 1000)}` : randomString(r)),
    CNI_NETNS: maybe(() => r() < 0.6 ? "/run/netns/pod" : randomString(r)),
    CNI_IFNAME: maybe(() => r() < 0.6 ? "eth0" : randomString(r)),
    CNI_ARGS: maybe(() =>
      r() < 0.5
        ? "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p"
        : Array.from({ length: 3 }, () => randomString(r)).join(pick(r, [";", "=", ";="]))
    ),
    CNI_PATH: maybe(() => "/opt/cni/bin"),
  };
}

function validEnv(r: () => number): Record<string, string | undefined> {
  return {
    CNI_COMMAND: pick(r, ["ADD", "DEL", "CHECK", "GC", "STATUS"]),
    CNI_CONTAINERID: `ctr${Math.floor(r() * 1000)}`,
    CNI_NETNS: r() < 0.9 ? "/run/netns/pod" : "",
    CNI_IFNAME: pick(r, ["eth0", "net1"]),
    CNI_ARGS: "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p",
  };
}

function randomSubnetEnv(r: () => number): string {
  const valid =
    "FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.3.1/24\nFLANNEL_IPV6_NETWORK=fd00:10:244::/56\n" +
    "FLANNEL_IPV6_SUBNET=fd00:10:244:3::1/64\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n";
  if (r() < 0.5) return damage(r, valid);
  const keys = [
    "FLANNEL_NETWORK",
    "FLANNEL_SUBNET",
    "FLANNEL_IPV6_NETWORK",
    "FLANNEL_IPV6_SUBNET",
    "FLANNEL_MTU",
    "FLANNEL_IPMASQ",
  ];
  return Array.from({ length: Math.floor(r() * 7) }, () => `${pick(r, keys)}=${randomString(r)}`).join("\n");
}

/** Runs `fn`; passes when it returns or throws a CniError with a spec code and a message. */
function expectSpecOutcome(what: string, input: unknown, fn: () => void): "ok" | number {
  try {
    fn();
    return "ok";
  } catch (err) {
    const show = () => `${what} with seed ${SEED}: ${JSON.stringify(input)?.slice(0, 600)}`;
    assert.ok(err instanceof CniError, `${show()}\nthrew ${err instanceof Error ? err.stack : String(err)}`);
    assert.ok(SPEC_CODES.has(err.code), `${show()}\ngave code ${err.code}: ${err.message}`);
    assert.ok(err.message.length > 0, `${show()}\ngave an empty message`);
    return err.code;
  }
}

Deno.test("fuzz: random and mutated CNI environments and configs parse or get a spec error code, never a crash", () => {
  const r = prng(SEED);
  const base = seeds();
  const outcomes = new Map<string, number>();
  const count = (k: string | number) => outcomes.set(String(k), (outcomes.get(String(k)) ?? 0) + 1);
  const t0 = performance.now();
  for (let i = 0; i < CASES; i++) {
    // Mostly a well-formed environment, so most cases reach the config parser.
    const envMap = r() < 0.75 ? validEnv(r) : randomEnv(r);
    const roll = r();
    let doc: unknown;
    if (roll < 0.35) doc = mutateN(r, pick(r, base));
    else if (roll < 0.6) {
      // A chained result with damage somewhere inside it (ADD and CHECK read it).
      doc = { ...base[1]!, prevResult: mutateN(r, PREV_RESULT) };
      envMap.CNI_COMMAND = pick(r, ["ADD", "CHECK"]);
    } else if (roll < 0.7) {
      doc = { ...base[4]!, "cni.dev/valid-attachments": mutateN(r, [{ containerID: "a", ifname: "eth0" }]) };
      envMap.CNI_COMMAND = "GC";
    } else if (roll < 0.85) doc = randomValue(r, 0);
    else doc = pick(r, base);
    let stdin = JSON.stringify(doc) ?? "";
    if (r() < 0.2) stdin = damage(r, stdin);
    const input = { case: i, env: envMap, stdin };
    const outcome = expectSpecOutcome("request", input, () => {
      const env = parseEnv((k) => envMap[k as keyof typeof envMap]);
      const req = parseRequest(env, stdin);
      // What ADD would print from an accepted prevResult must render in every version.
      if (req.prev) {
        for (const v of SUPPORTED_VERSIONS) {
          resultFor(v, mergePrevResult(req.prev, { interfaces: [], ips: [], routes: [], dns: {} }));
        }
      }
    });
    count(outcome);
  }
  const ms = performance.now() - t0;
  console.log(
    `  ${CASES} requests in ${ms.toFixed(0)} ms (seed ${SEED}): ${
      JSON.stringify(Object.fromEntries(outcomes))
    }`,
  );
  // The fuzzer must reach both sides: accepted requests and each kind of refusal.
  for (const k of ["ok", "4", "6", "7"]) assert.ok((outcomes.get(k) ?? 0) > 0, `no case ended in ${k}`);
});

Deno.test("fuzz: random and damaged subnet.env files give a plan or code 7, never a crash", () => {
  const r = prng(SEED ^ 0x1234);
  const outcomes = new Map<string, number>();
  for (let i = 0; i < CASES / 2; i++) {
    const text = randomSubnetEnv(r);
    const o = expectSpecOutcome("subnet.env", { case: i, text }, () => {
      for (const p of plansFromText(text, "/run/flannel/subnet.env")) {
        assert.ok(p.subnet.prefix <= (p.family === 4 ? 30 : 126), `accepted a subnet too small: ${text}`);
      }
    });
    outcomes.set(String(o), (outcomes.get(String(o)) ?? 0) + 1);
  }
  assert.ok((outcomes.get("ok") ?? 0) > 0 && (outcomes.get("7") ?? 0) > 0, JSON.stringify([...outcomes]));
});
