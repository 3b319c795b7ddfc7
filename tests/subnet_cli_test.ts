/**
 * `weft config set|get` and `weft leases [reserve|release]` as a user runs them (child processes of
 * main.ts) against a real etcd, with flags and with FLANNELD_* variables.
 */
import assert from "node:assert/strict";
import { openEtcdRegistry, SubnetManager } from "../src/lease/etcd/mod.ts";
import { parseNetworkConfig } from "../src/config/net_conf.ts";
import { haveEtcd, startEtcd } from "./helpers/etcd.ts";
import { runIn, type RunResult } from "../src/lab/lab.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

/** Runs weft (main.ts, as the binary would) with `args` in this namespace. */
function weft(
  args: string[],
  opts: { env?: Record<string, string>; stdin?: string } = {},
): Promise<RunResult> {
  return runIn(undefined, [Deno.execPath(), "run", "-A", "--no-check", MAIN, ...args], opts);
}

Deno.test({
  name: "weft config set validates and writes flannel's config key; config get prints it back",
  ignore: !haveEtcd(),
  async fn() {
    await using etcd = await startEtcd();
    const ep = `--etcd-endpoints=${etcd.endpoint}`;
    const dir = await Deno.makeTempDir({ prefix: "weft-cli-" });
    try {
      const text = '{"Network": "10.244.0.0/16", "Backend": {"Type": "vxlan", "VNI": 4}}\n';
      await Deno.writeTextFile(`${dir}/net-conf.json`, text);
      const set = await weft(["config", "set", `${dir}/net-conf.json`, ep]);
      assert.equal(set.code, 0, set.stderr);
      assert.match(set.stdout, /network config written to \/coreos\.com\/network\/config/);
      assert.match(set.stdout, /IPv4 10\.244\.0\.0\/16: \/24 subnets 10\.244\.1\.0 – 10\.244\.255\.0/);
      // Stored byte for byte under flanneld's key.
      // (etcdctl adds a newline after the value)
      assert.equal(
        await etcd.etcdctl(["get", "--print-value-only", "/coreos.com/network/config"]),
        `${text}\n`,
      );
      const get = await weft(["config", "get", ep]);
      assert.equal(get.code, 0, get.stderr);
      assert.equal(get.stdout, text);

      // From stdin, with a prefix and endpoints from flanneld's variables; no Backend is noted.
      const env = { FLANNELD_ETCD_ENDPOINTS: etcd.endpoint, FLANNELD_ETCD_PREFIX: "/other/net" };
      const fromStdin = await weft(["config", "set", "-"], { env, stdin: '{"Network":"10.9.0.0/16"}' });
      assert.equal(fromStdin.code, 0, fromStdin.stderr);
      assert.match(fromStdin.stderr, /no Backend in|has no Backend/);
      assert.equal((await weft(["config", "get"], { env })).stdout.trim(), '{"Network":"10.9.0.0/16"}');

      // A config breaking a rule is refused with the key, the value and the rule, and not written.
      const bad = await weft(["config", "set", "-", ep], {
        stdin: '{"Network":"10.244.0.0/16","SubnetLen":31}',
      });
      assert.equal(bad.code, 2);
      assert.equal(bad.stderr.trim(), "weft: network config: SubnetLen=31: must be at most 30");
      assert.equal((await weft(["config", "get", ep])).stdout, text);
      const missing = await weft(["config", "set", `${dir}/nope.json`, ep]);
      assert.equal(missing.code, 2);
      assert.match(missing.stderr, /nope\.json/);
      const none = await weft(["config", "get", ep, "--etcd-prefix=/empty"]);
      assert.equal(none.code, 3);
      assert.match(none.stderr, /no network config at \/empty\/config/);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "weft leases lists leases and reservations as a table and as JSON; reserve and release change them",
  ignore: !haveEtcd(),
  async fn() {
    await using etcd = await startEtcd();
    const ep = `--etcd-endpoints=${etcd.endpoint}`;
    const reg = await openEtcdRegistry({ endpoints: etcd.endpoints, prefix: "/coreos.com/network" });
    try {
      await reg.setConfig('{"Network":"10.244.0.0/16"}');
      const m = new SubnetManager(reg);
      const lease = await m.acquireLease(parseNetworkConfig({ Network: "10.244.0.0/16" }), {
        PublicIP: "192.168.9.1",
        BackendType: "vxlan",
        BackendData: { VNI: 1, VtepMAC: "0a:00:00:00:00:aa" },
      }, { ttlSeconds: 7200 });

      const reserve = await weft(["leases", "reserve", "10.244.250.0/24", "--public-ip=192.168.9.2", ep]);
      assert.equal(reserve.code, 0, reserve.stderr);
      assert.equal(reserve.stdout.trim(), "reserved 10.244.250.0/24 for 192.168.9.2");
      // flanneld sees a key without a TTL: a reservation.
      assert.equal(
        (await etcd.etcdctl(["get", "--print-value-only", "/coreos.com/network/subnets/10.244.250.0-24"]))
          .trim(),
        '{"PublicIP":"192.168.9.2","PublicIPv6":null,"BackendType":"vxlan"}',
      );

      const table = await weft(["leases", ep]);
      assert.equal(table.code, 0, table.stderr);
      const lines = table.stdout.trimEnd().split("\n");
      assert.match(lines[0]!, /^SUBNET\s+PUBLIC IP\s+BACKEND\s+VTEP MAC\s+EXPIRES IN\s+STATUS$/);
      const row = (s: string) => lines.find((l) => l.startsWith(s)) ?? "";
      assert.match(
        row(lease.key.replace("-", "/")),
        /192\.168\.9\.1\s+vxlan\s+0a:00:00:00:00:aa\s+1h59m\s+ok$/,
      );
      assert.match(row("10.244.250.0/24"), /192\.168\.9\.2\s+vxlan\s+reserved\s+ok$/);

      const json = await weft(["leases", "--json", ep]);
      const rows = JSON.parse(json.stdout) as { key: string; ttlSeconds: number | null; publicIP: string }[];
      assert.deepEqual(
        rows.map((r) => [r.key, r.publicIP, r.ttlSeconds === null]).sort(),
        [
          ["10.244.250.0-24", "192.168.9.2", true],
          [lease.key, "192.168.9.1", false],
        ].sort(),
      );
      assert.ok(rows.find((r) => r.key === lease.key)!.ttlSeconds! > 7000);

      // Reserving a subnet another node holds is refused; the holder's own lease can become a reservation.
      const taken = await weft([
        "leases",
        "reserve",
        lease.key.replace("-", "/"),
        "--public-ip=192.168.9.3",
        ep,
      ]);
      assert.equal(taken.code, 3);
      assert.match(taken.stderr, /is leased by 192\.168\.9\.1: release it first/);
      const own = await weft([
        "leases",
        "reserve",
        lease.key.replace("-", "/"),
        "--public-ip=192.168.9.1",
        ep,
      ]);
      assert.equal(own.code, 0, own.stderr);
      const kept = (await m.listLeases()).leases.find((l) => l.key === lease.key)!;
      assert.equal(kept.etcdLeaseId, undefined, "now without a TTL");
      assert.deepEqual(kept.attrs.BackendData, { VNI: 1, VtepMAC: "0a:00:00:00:00:aa" }, "attributes kept");

      const bogus = await weft(["leases", "reserve", "10.244.300.0/24", "--public-ip=192.168.9.4", ep]);
      assert.equal(bogus.code, 2);
      assert.match(bogus.stderr, /10\.244\.300\.0\/24/);

      const release = await weft(["leases", "release", "10.244.250.0/24", ep]);
      assert.equal(release.code, 0, release.stderr);
      const byKey = await weft(["leases", "release", lease.key, ep]);
      assert.equal(byKey.code, 0, byKey.stderr);
      assert.equal((await m.listLeases()).leases.length, 0);
      const again = await weft(["leases", "release", "10.244.250.0/24", ep]);
      assert.equal(again.code, 3);
      assert.match(again.stderr, /no lease or reservation for 10\.244\.250\.0\/24/);
    } finally {
      await reg.close();
    }
  },
});

Deno.test({
  name: "weft leases says clearly when etcd is unreachable",
  ignore: !haveEtcd(),
  async fn() {
    await using etcd = await startEtcd();
    await etcd.stop();
    const t0 = Date.now();
    const r = await weft(["leases", `--etcd-endpoints=${etcd.endpoint}`]);
    assert.equal(r.code, 1);
    assert.match(
      r.stderr,
      new RegExp(`^weft: etcd is unreachable at ${etcd.endpoint.replace(/\./g, "\\.")}`),
    );
    const bad = await weft(["leases", "--etcd-endpoints=127.0.0.1:2379"]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /--etcd-endpoints: 127\.0\.0\.1:2379 is not an http:\/\/ or https:\/\/ URL/);
    console.log(`  unreachable etcd reported in ${Date.now() - t0} ms (including two process starts)`);
  },
});
