/**
 * Fuzzing the lease parser and validator with random and mutated keys and values: nothing may throw,
 * every rejection is a {@linkcode LeaseRejection} naming the key and a rule of {@linkcode LEASE_RULES},
 * and whatever is accepted is safe to program (canonical addresses, unicast MACs, no two leases on one
 * subnet). Deterministic: seed `WEFT_FUZZ_SEED` (default 20261201); at least 5000 cases,
 * more while the time budget (`WEFT_FUZZ_MS`, default 2.5 s) lasts.
 */
import assert from "node:assert/strict";
import { formatNet, parseCIDR, parseIP, parseNet } from "../net/ip.ts";
import { LeaseFilter } from "./lease_filter.ts";
import type { Lease } from "./lease.ts";
import {
  checkLease,
  checkLeaseOnNode,
  claimsOf,
  LEASE_RULES,
  LeaseRejection,
  type NetworkRules,
  type NodeFacts,
  parseLeaseEntry,
} from "./validate.ts";
import { mulberry32 } from "../../tests/helpers/prng.ts";

const SEED = Number(Deno.env.get("WEFT_FUZZ_SEED") ?? 20261201);
const BUDGET_MS = Number(Deno.env.get("WEFT_FUZZ_MS") ?? 2500);
const MAX_CASES = 200_000;
/** Cases run however long they take (the budget only adds more), so a slow machine tests as much. */
const MIN_CASES = 5000;

/** Seeded numbers, integers below `n` and picks (tests/helpers/prng.ts), so a failure can be replayed. */
function rng(seed: number) {
  const next = mulberry32(seed);
  const int = (n: number) => Math.floor(next() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  return { next, int, pick };
}
type Rng = ReturnType<typeof rng>;

const RULES: NetworkRules = {
  network: parseNet("10.244.0.0/16"),
  subnetLen: 24,
  ipv6Network: parseNet("fd00:10:244::/56"),
  ipv6SubnetLen: 64,
};
const NODE: NodeFacts = {
  ownSubnets: [parseNet("10.244.7.0/24")],
  addresses: ["127.0.0.1/8", "192.168.77.11/24", "fd00:77::11/64"].map((c) => ({
    ...parseCIDR(c),
    dev: "eth0",
  })),
  vtepMacs: ["02:00:00:00:00:07"],
};

const GOOD_KEYS = [
  "10.244.3.0-24",
  "10.244.3.0-24&fd00:10:244:3::-64",
  "fd00:10:244:3::-64",
  "10.244.250.0-24",
];
const ALPHABET = [..."0123456789abcdef.-:&/ \n\t\u0000xX%\\\"'{}[]é😀"];
const IPS = [
  "192.168.77.12",
  "0.0.0.0",
  "127.0.0.1",
  "224.0.0.1",
  "255.255.255.255",
  "10.244.3.7",
  "192.168.77.11",
  "192.168.77.255",
  "fd00:77::12",
  "::1",
  "",
  "1.2.3",
  "1.2.3.4.5",
  "01.2.3.4",
];
const MACS = [
  "02:00:00:00:00:01",
  "02:00:00:00:00:07",
  "ff:ff:ff:ff:ff:ff",
  "01:00:5e:00:00:01",
  "AA:BB:CC:DD:EE:FF",
  "zz",
];

function randomString(r: Rng, max: number): string {
  let s = "";
  const n = r.int(max);
  for (let i = 0; i < n; i++) s += r.pick(ALPHABET);
  return s;
}

function mutate(r: Rng, s: string): string {
  const chars = [...s];
  const ops = 1 + r.int(3);
  for (let i = 0; i < ops; i++) {
    const at = r.int(chars.length + 1);
    switch (r.int(6)) {
      case 0:
        chars.splice(at, 1);
        break;
      case 1:
        chars.splice(at, 0, r.pick(ALPHABET));
        break;
      case 2:
        if (chars.length) chars[r.int(chars.length)] = r.pick(ALPHABET);
        break;
      case 3:
        chars.splice(at, 0, ...chars.slice(r.int(chars.length)));
        break;
      case 4:
        chars.length = Math.min(chars.length, at);
        break;
      default:
        chars.splice(at, 0, String(r.int(1000)));
    }
  }
  return chars.join("");
}

function randomKey(r: Rng): string {
  switch (r.int(6)) {
    case 5:
      return r.pick(GOOD_KEYS);
    case 0:
      return randomString(r, 40);
    case 1:
      return `10.244.${r.int(260)}.${r.pick([0, 0, 0, 128, r.int(300)])}-${
        r.pick([24, 24, 25, 16, 32, r.int(40)])
      }`;
    case 2:
      return `10.244.${r.int(256)}.0-24&fd00:10:244:${r.int(0x200).toString(16)}::-${
        r.pick([64, 63, 128, 0])
      }`;
    case 3:
      return "x".repeat(r.int(5000));
    default:
      return mutate(r, r.pick(GOOD_KEYS));
  }
}

function randomJSONValue(r: Rng, depth: number): unknown {
  switch (depth > 3 ? r.int(4) : r.int(7)) {
    case 0:
      return r.pick([null, true, false, 0, -1, 1e308, NaN]);
    case 1:
      return r.pick(IPS);
    case 2:
      return r.pick(MACS);
    case 3:
      return randomString(r, 20);
    case 4:
      return Array.from({ length: r.int(4) }, () => randomJSONValue(r, depth + 1));
    default: {
      const o: Record<string, unknown> = {};
      for (let i = r.int(4); i > 0; i--) {
        // defineProperty: a "__proto__" key becomes an own property, as JSON.parse makes it.
        const k = r.pick(["VtepMAC", "VNI", "PublicIP", "x", "__proto__", "constructor"]);
        Object.defineProperty(o, k, {
          value: randomJSONValue(r, depth + 1),
          enumerable: true,
          writable: true,
        });
      }
      return o;
    }
  }
}

/** A unicast MAC no other case is likely to share. */
function unicastMac(r: Rng): string {
  return ["02", ...Array.from({ length: 5 }, () => r.int(256).toString(16).padStart(2, "0"))].join(":");
}

function randomValue(r: Rng): string {
  // Valid more often than not, so the node and conflict rules are reached too.
  const mac = () => r.next() < 0.6 ? unicastMac(r) : r.pick(MACS);
  const good = {
    PublicIP: r.next() < 0.5 ? `192.168.${r.int(4)}.${1 + r.int(250)}` : r.pick(IPS),
    PublicIPv6: r.next() < 0.5 ? `fd00:77::${r.int(500).toString(16)}` : r.pick([null, "::1", "fe80::1", 5]),
    BackendType: r.next() < 0.7 ? "vxlan" : r.pick(["host-gw", "", "udp"]),
    BackendData: r.next() < 0.8 ? { VNI: 1, VtepMAC: mac() } : randomJSONValue(r, 0),
    ...(r.next() < 0.5
      ? { BackendV6Data: r.next() < 0.7 ? { VNI: 1, VtepMAC: mac() } : randomJSONValue(r, 0) }
      : {}),
  };
  switch (r.int(6)) {
    case 0:
      return randomString(r, 60);
    case 1:
      return mutate(r, JSON.stringify(good));
    case 2:
      return JSON.stringify(randomJSONValue(r, 0));
    case 3:
      return "[".repeat(r.int(3000)) + r.pick(["", "]".repeat(r.int(3000))]); // deep nesting
    default:
      return JSON.stringify(good);
  }
}

/** Asserts what every accepted lease must satisfy to be safe to program. */
function assertSafe(l: Lease): void {
  if (l.subnet) {
    const ip = parseIP(l.attrs.PublicIP);
    assert.equal(ip.family, 4);
    assert.ok(!["0.0.0.0", "127.0.0.1", "224.0.0.1", "255.255.255.255"].includes(l.attrs.PublicIP));
  }
  // Each family's overlay reads its own data: BackendData for IPv4, BackendV6Data for IPv6.
  for (const d of [l.subnet && l.attrs.BackendData, l.ipv6Subnet && l.attrs.BackendV6Data]) {
    const mac = (d as { VtepMAC?: unknown } | null | undefined)?.VtepMAC;
    if (l.attrs.BackendType === "vxlan" && typeof mac === "string") {
      assert.match(mac, /^[0-9a-f][02468ace](:[0-9a-f]{2}){5}$/);
    }
  }
}

Deno.test(`the lease parser and validator never throw on random or mutated input (seed ${SEED})`, () => {
  const r = rng(SEED);
  const rules = new Set(Object.keys(LEASE_RULES));
  const seen = new Map<string, number>();
  const applied = new Map<string, Lease>();
  const filter = new LeaseFilter({
    rules: RULES,
    node: NODE,
    apply: (key, lease) => lease ? applied.set(key, lease) : applied.delete(key),
    report: () => {},
  });
  const t0 = performance.now();
  let cases = 0, accepted = 0;
  while (cases < MAX_CASES && (cases < MIN_CASES || performance.now() - t0 < BUDGET_MS)) {
    cases++;
    const key = randomKey(r), value = randomValue(r);
    let stage = "parse";
    try {
      const p = parseLeaseEntry({ key, value, createOrder: r.int(1000) });
      if (!p.ok) {
        assert.ok(p.rejection instanceof LeaseRejection);
        assert.ok(rules.has(p.rejection.rule), p.rejection.rule);
        assert.equal(p.rejection.key, key);
        assert.ok(!p.rejection.message.includes("\n"), "one log line");
        seen.set(p.rejection.rule, (seen.get(p.rejection.rule) ?? 0) + 1);
      } else {
        stage = "check";
        const rej = checkLease(p.lease, RULES) ?? checkLeaseOnNode(p.lease, RULES, NODE);
        if (rej) {
          assert.ok(rej instanceof LeaseRejection && rules.has(rej.rule), String(rej));
          assert.ok(!rej.message.includes("\n"), "one log line");
          seen.set(rej.rule, (seen.get(rej.rule) ?? 0) + 1);
        } else {
          accepted++;
          assertSafe(p.lease);
          claimsOf(p.lease, RULES);
        }
      }
      stage = "filter";
      // Through the filter as well, with deletions now and then.
      filter.update([r.next() < 0.1 ? { key } : { key, entry: p }]);
    } catch (err) {
      throw new Error(
        `seed ${SEED}, case ${cases}, ${stage}: key ${JSON.stringify(key.slice(0, 200))} value ${
          JSON.stringify(value.slice(0, 300))
        }: ${(err as Error).stack}`,
      );
    }
  }
  // What the filter lets through is safe, and no subnet is programmed twice.
  const subnets = new Set<string>();
  for (const l of applied.values()) {
    assertSafe(l);
    assert.equal(checkLease(l, RULES), undefined);
    for (const n of [l.subnet, l.ipv6Subnet]) {
      if (!n) continue;
      assert.ok(!subnets.has(formatNet(n)), `${formatNet(n)} programmed twice`);
      subnets.add(formatNet(n));
    }
  }
  console.log(
    `  ${cases} cases in ${(performance.now() - t0).toFixed(0)} ms: ${accepted} accepted, ` +
      `${applied.size} programmed at the end; rejections by rule: ${
        [...seen].sort().map(([k, v]) => `${k}=${v}`).join(" ")
      }`,
  );
  assert.ok(cases >= MIN_CASES, `only ${cases} cases ran`);
  // The generator reaches the rules that matter (a fuzzer that only makes garbage proves little).
  for (
    const rule of [
      "key_unparseable",
      "value_unparseable",
      "subnet_wrong_length",
      "public_ip_loopback",
      "public_ip_invalid",
      "vtep_mac_invalid",
      "own_subnet",
      "public_ip_own",
    ]
  ) {
    assert.ok(seen.has(rule), `no case hit ${rule}`);
  }
  assert.ok(accepted > 0, "some cases were valid leases");
});
