/**
 * Leases the way production runs etcd: a 3-member cluster losing members (each in turn, so also the one
 * the client's watch stream is on), client-certificate TLS, and username/password auth — with clear
 * messages for a wrong certificate, CA or password, also from the `weft` CLI.
 */
import assert from "node:assert/strict";
import { parseNetworkConfig } from "../src/config/net_conf.ts";
import {
  EtcdConfigError,
  type EtcdOptions,
  explainEtcdError,
  type LeaseEvent,
  openEtcdRegistry,
  SubnetManager,
} from "../src/lease/etcd/mod.ts";
import { enableEtcdAuth, haveEtcd, startEtcd, startEtcdCluster } from "./helpers/etcd.ts";

const PREFIX = "/coreos.com/network";
const CFG = parseNetworkConfig({ Network: "10.244.0.0/16" });
const attrs = (ip: string) => ({
  PublicIP: ip,
  PublicIPv6: null,
  BackendType: "vxlan",
  BackendData: { VNI: 1, VtepMAC: "0a:00:00:00:00:09" },
});

async function until(what: string, ms: number, ok: () => boolean): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** The first error `fn` throws, or undefined. */
async function failure(fn: () => Promise<unknown>): Promise<unknown> {
  return await fn().then(() => undefined, (e) => e);
}

/** Runs `weft <args>` in a child; returns its exit code and output. */
async function weft(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--no-check", new URL("../main.ts", import.meta.url).pathname, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

Deno.test({
  name:
    "a 3-member etcd cluster loses each member in turn: lease renewal and watch go on through the others, nothing lost",
  ignore: !haveEtcd(),
  async fn() {
    await using members = await startEtcdCluster(3);
    // Calls to a dead member fail over within 1 s, well inside the 2 s renewal margin of a 4 s lease.
    const ownerReg = await openEtcdRegistry({
      endpoints: members.endpoints,
      prefix: PREFIX,
      timeoutMs: 1000,
    });
    const watchReg = await openEtcdRegistry({
      endpoints: members.endpoints,
      prefix: PREFIX,
      timeoutMs: 1000,
    });
    const owner = new SubnetManager(ownerReg), watcher = new SubnetManager(watchReg);
    const stop = new AbortController();
    try {
      const lease = await owner.acquireLease(CFG, attrs("192.168.3.1"), { ttlSeconds: 4 });
      const seen = new Map<string, LeaseEvent["type"]>();
      const removals: string[] = [];
      const watching = watcher.watchLeases((b) =>
        b.forEach((e) => {
          seen.set(e.lease.key, e.type);
          if (e.type === "removed") removals.push(e.lease.key);
        }), { signal: stop.signal });
      const keeper = owner.keepLease(CFG, attrs("192.168.3.1"), lease, {
        ttlSeconds: 4,
        renewMarginSeconds: 2,
      });
      const keeping = keeper.run(stop.signal);
      await until("snapshot", 30_000, () => seen.get(lease.key) === "added");
      const timings: string[] = [];
      // Every member dies once: whichever one the watch stream and the calls were using is among them.
      for (let victim = 0; victim < 3; victim++) {
        await members[victim]!.kill();
        const killedAt = Date.now();
        const survivors = members.filter((_, i) => i !== victim);
        // If the victim led the cluster, writes wait for an election: retry them until it is over.
        const keys = [0, 1, 2].map((i) => `10.244.${50 + victim * 10 + i}.0-24`);
        for (const [i, key] of keys.entries()) {
          for (let attempt = 0;; attempt++) {
            try {
              await survivors[i % 2]!.etcdctl([
                "--command-timeout=1s",
                "put",
                `${PREFIX}/subnets/${key}`,
                JSON.stringify(attrs(`10.1.${victim}.${i}`)),
              ]);
              break;
            } catch (err) {
              if (attempt >= 20) throw err;
              await new Promise((r) => setTimeout(r, 250));
            }
          }
        }
        const putAt = Date.now();
        await until(
          `puts seen with member ${victim} dead`,
          20_000,
          () => keys.every((k) => seen.get(k) === "added"),
        );
        const seenAt = Date.now();
        // With a 4 s TTL, the lease only survives if renewals keep landing through the other members.
        const before = keeper.renewals;
        await until(`renewals with member ${victim} dead`, 30_000, () => keeper.renewals >= before + 2);
        timings.push(
          `m${victim} killed: puts accepted +${putAt - killedAt} ms, seen by the watch +${seenAt - putAt} ms`,
        );
        await members[victim]!.restart();
      }
      assert.equal(keeper.reacquisitions, 0, "the lease was never lost");
      assert.deepEqual(removals, [], "no lease was reported removed");
      const stored = await watcher.getLease(lease.key);
      assert.equal(stored?.attrs.PublicIP, "192.168.3.1");
      console.log(`  ${timings.join("; ")}; ${keeper.renewals} renewals, ${keeper.failures} failed tries`);
      stop.abort();
      await Promise.all([watching, keeping]);
    } finally {
      stop.abort();
      await ownerReg.close();
      await watchReg.close();
    }
  },
});

Deno.test({
  name:
    "etcd with client-certificate TLS works; another CA's certificate, a wrong CA or no certificate fail clearly",
  ignore: !haveEtcd({ openssl: true }),
  async fn() {
    await using etcd = await startEtcd({ tls: true });
    const certs = etcd.certs!;
    assert.match(etcd.endpoint, /^https:\/\/127\.0\.0\.1:/);
    const base: EtcdOptions = { endpoints: etcd.endpoints, prefix: PREFIX, timeoutMs: 3000 };
    const good = await openEtcdRegistry({
      ...base,
      caFile: certs.ca,
      certFile: certs.clientCert,
      keyFile: certs.clientKey,
    });
    try {
      await good.setConfig('{"Network":"10.244.0.0/16"}');
      const m = new SubnetManager(good);
      const l = await m.acquireLease(await m.getNetworkConfig(), attrs("192.168.4.1"), { ttlSeconds: 60 });
      // The watch stream works over TLS too.
      const seen: string[] = [];
      const stop = new AbortController();
      const watching = m.watchLeases((b) => b.forEach((e) => seen.push(e.lease.key)), {
        signal: stop.signal,
      });
      await until("watch over TLS", 30_000, () => seen.includes(l.key));
      stop.abort();
      await watching;
    } finally {
      await good.close();
    }
    const cases: [string, EtcdOptions, RegExp][] = [
      [
        "a client certificate from another CA",
        { ...base, caFile: certs.ca, certFile: certs.rogueCert, keyFile: certs.rogueKey },
        // etcd answers with a TLS alert or just drops the connection, depending on timing.
        /^TLS with etcd failed: .*client certificate \(--etcd-certfile\/--etcd-keyfile\)/,
      ],
      [
        "a CA that did not sign etcd's certificate",
        { ...base, caFile: certs.rogueCa, certFile: certs.clientCert, keyFile: certs.clientKey },
        /^TLS with etcd failed: etcd's server certificate is not signed by --etcd-cafile/,
      ],
      ["no client certificate", { ...base, caFile: certs.ca }, /^TLS with etcd failed: .*client certificate/],
    ];
    for (const [what, opts, want] of cases) {
      const reg = await openEtcdRegistry(opts);
      try {
        const t0 = Date.now();
        const err = await failure(() => new SubnetManager(reg).listLeases());
        assert.ok(err, `${what} must be refused`);
        const msg = explainEtcdError(err, opts);
        assert.match(msg, want, `${what}: ${msg}`);
        console.log(`  ${what} → (${Date.now() - t0} ms) ${msg.slice(0, 150)}`);
      } finally {
        await reg.close();
      }
    }
    // Unusable options are refused before any connection, naming the flag.
    await assert.rejects(
      () =>
        openEtcdRegistry({
          ...base,
          caFile: certs.ca,
          certFile: `${certs.ca}.missing`,
          keyFile: certs.clientKey,
        }),
      (e: unknown) => e instanceof EtcdConfigError && /^--etcd-certfile .*\.missing: /.test(e.message),
    );
    await assert.rejects(
      () => openEtcdRegistry({ ...base, caFile: certs.ca, certFile: certs.clientCert }),
      /--etcd-certfile and --etcd-keyfile must be given together/,
    );
    // The CLI says the same, with the flanneld flag names.
    const bad = await weft([
      "leases",
      `--etcd-endpoints=${etcd.endpoint}`,
      `--etcd-cafile=${certs.ca}`,
      `--etcd-certfile=${certs.rogueCert}`,
      `--etcd-keyfile=${certs.rogueKey}`,
    ]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^weft: TLS with etcd failed/m, bad.stderr);
    const ok = await weft([
      "leases",
      "--json",
      `--etcd-endpoints=${etcd.endpoint}`,
      `--etcd-cafile=${certs.ca}`,
      `--etcd-certfile=${certs.clientCert}`,
      `--etcd-keyfile=${certs.clientKey}`,
    ]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.deepEqual(JSON.parse(ok.stdout).map((r: { publicIP: string }) => r.publicIP), ["192.168.4.1"]);
  },
});

Deno.test({
  name: "etcd with username/password auth works; a wrong password or no username fail clearly",
  ignore: !haveEtcd(),
  async fn() {
    await using etcd = await startEtcd();
    await enableEtcdAuth(etcd, "rootpw");
    const base: EtcdOptions = { endpoints: etcd.endpoints, prefix: PREFIX, timeoutMs: 3000 };
    const good = await openEtcdRegistry({ ...base, username: "root", password: "rootpw" });
    try {
      await good.setConfig('{"Network":"10.244.0.0/16"}');
      const m = new SubnetManager(good);
      const cfg = await m.getNetworkConfig();
      assert.equal(cfg.subnetLen, 24);
      const l = await m.acquireLease(cfg, attrs("192.168.6.1"), { ttlSeconds: 60 });
      assert.ok(await m.renewLease(l, 60), "renewal (lease grant, txn, revoke) is allowed");
      const seen: string[] = [];
      const stop = new AbortController();
      const watching = m.watchLeases((b) => b.forEach((e) => seen.push(e.lease.key)), {
        signal: stop.signal,
      });
      await until("watch with auth", 30_000, () => seen.includes(l.key));
      stop.abort();
      await watching;
    } finally {
      await good.close();
    }
    const cases: [string, EtcdOptions, RegExp][] = [
      [
        "a wrong password",
        { ...base, username: "root", password: "nope" },
        /rejected the username or password/,
      ],
      ["no username", base, /etcd denied access \(auth is enabled: set --etcd-username/],
    ];
    for (const [what, opts, want] of cases) {
      const reg = await openEtcdRegistry(opts);
      try {
        const err = await failure(() => reg.getConfig());
        assert.ok(err, `${what} must be refused`);
        const msg = explainEtcdError(err, opts);
        assert.match(msg, want, `${what}: ${msg}`);
        console.log(`  ${what} → ${msg.slice(0, 150)}`);
      } finally {
        await reg.close();
      }
    }
    // Through the CLI, with the password from FLANNELD_ETCD_PASSWORD as a flanneld DaemonSet sets it.
    const bad = await weft([
      "config",
      "get",
      `--etcd-endpoints=${etcd.endpoint}`,
      "--etcd-username=root",
      "--etcd-password=x",
    ]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^weft: etcd rejected the username or password/m, bad.stderr);
    Deno.env.set("FLANNELD_ETCD_PASSWORD", "rootpw");
    try {
      const ok = await weft(["config", "get", `--etcd-endpoints=${etcd.endpoint}`, "--etcd-username=root"]);
      assert.equal(ok.code, 0, ok.stderr);
      assert.equal(ok.stdout.trim(), '{"Network":"10.244.0.0/16"}');
    } finally {
      Deno.env.delete("FLANNELD_ETCD_PASSWORD");
    }
  },
});
