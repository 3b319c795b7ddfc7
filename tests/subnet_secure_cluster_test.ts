/**
 * Leases the way production runs etcd: a 3-member cluster that loses the member the client talks to,
 * client-certificate TLS, and username/password auth — with clear messages for a wrong certificate or
 * password.
 */
import assert from "node:assert/strict";
import { parseNetworkConfig } from "../src/config/net_conf.ts";
import { type LeaseEvent, LeaseKeeper, openEtcdRegistry, SubnetManager } from "../src/subnet/mod.ts";
import { explainEtcdError } from "../src/subnet/etcd_registry.ts";
import { setupLogging } from "../src/log.ts";
if (Deno.env.get("WEFT_TEST_LOG")) await setupLogging({ level: "debug" });
import { etcdctl, startEtcd, startEtcdCluster } from "./helpers/etcd.ts";

const HAVE = (() => {
  try {
    return Deno.statSync("/usr/bin/etcd").isFile && Deno.statSync("/usr/bin/openssl").isFile;
  } catch {
    return false;
  }
})();
const PREFIX = "/coreos.com/network";
const attrs = (ip: string) => ({
  PublicIP: ip,
  PublicIPv6: null,
  BackendType: "vxlan",
  BackendData: { VNI: 1, VtepMAC: "0a:00:00:00:00:09" },
});

async function until(what: string, ms: number, ok: () => boolean): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out: ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function openssl(dir: string, ...args: string[]): Promise<void> {
  const out = await new Deno.Command("openssl", { args, cwd: dir, stdout: "null", stderr: "piped" }).output();
  if (out.code !== 0) throw new Error(`openssl ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
}

/** A CA, a server certificate for 127.0.0.1, a client certificate, and a second unrelated CA + client. */
async function makeCerts(dir: string): Promise<void> {
  await Deno.writeTextFile(
    `${dir}/san.cnf`,
    "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n",
  );
  await Deno.writeTextFile(`${dir}/client.cnf`, "extendedKeyUsage=clientAuth\n");
  for (const ca of ["ca", "rogue-ca"]) {
    await openssl(
      dir,
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-days",
      "1",
      "-subj",
      `/CN=${ca}`,
      "-keyout",
      `${ca}.key`,
      "-out",
      `${ca}.crt`,
    );
  }
  const sign = async (name: string, ca: string, ext: string, cn: string) => {
    await openssl(
      dir,
      "req",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-subj",
      `/CN=${cn}`,
      "-keyout",
      `${name}.key`,
      "-out",
      `${name}.csr`,
    );
    await openssl(
      dir,
      "x509",
      "-req",
      "-in",
      `${name}.csr`,
      "-CA",
      `${ca}.crt`,
      "-CAkey",
      `${ca}.key`,
      "-CAcreateserial",
      "-days",
      "1",
      "-extfile",
      ext,
      "-out",
      `${name}.crt`,
    );
  };
  await sign("server", "ca", "san.cnf", "etcd");
  await sign("client", "ca", "client.cnf", "weft");
  await sign("rogue", "rogue-ca", "client.cnf", "mallory");
}

Deno.test({
  name:
    "a 3-member etcd cluster loses the member the client uses: keep-alive and watch go on through the others, nothing lost",
  ignore: !HAVE,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using members = await startEtcdCluster(3);
    const endpoints = members.map((m) => m.endpoint);
    const cfg = parseNetworkConfig({ Network: "10.244.0.0/16" });
    // The owner's first endpoint is member 0: that is the one to kill.
    // Calls to the dead member fail within 1 s, well inside the 2 s renewal margin of a 4 s lease.
    const ownerReg = await openEtcdRegistry({ endpoints, prefix: PREFIX, timeoutMs: 1000 });
    const watchReg = await openEtcdRegistry({ endpoints, prefix: PREFIX, timeoutMs: 2000 });
    const owner = new SubnetManager(ownerReg), watcher = new SubnetManager(watchReg);
    const stop = new AbortController();
    try {
      const lease = await owner.acquireLease(cfg, attrs("192.168.3.1"), { ttlSeconds: 4 });
      const seen = new Map<string, LeaseEvent["type"]>();
      const watching = watcher.watchLeases((b) => b.forEach((e) => seen.set(e.lease.key, e.type)), {
        signal: stop.signal,
      });
      const keeper = new LeaseKeeper(owner, lease, {
        ttlSeconds: 4,
        renewMarginSeconds: 3600,
        reacquire: () => Promise.reject(new Error("the lease must not be lost")),
      });
      const keeping = keeper.run(stop.signal);
      await until("snapshot", 5000, () => seen.get(lease.key) === "added");
      await members[0]!.kill();
      // Changes made through the surviving members while the client's member is dead.
      // If member 0 was the leader, writes wait for a new election: retry them until it is over.
      for (let i = 0; i < 5; i++) {
        const args = ["put", `${PREFIX}/subnets/10.244.${50 + i}.0-24`, JSON.stringify(attrs(`10.1.0.${i}`))];
        for (let attempt = 0;; attempt++) {
          try {
            await etcdctl(members[1 + (i % 2)]!.endpoint, args);
            break;
          } catch (err) {
            if (attempt >= 10) throw err;
            await new Promise((r) => setTimeout(r, 500));
          }
        }
      }
      await until(
        "all puts seen through the other members",
        30_000,
        () => [0, 1, 2, 3, 4].every((i) => seen.get(`10.244.${50 + i}.0-24`) === "added"),
      );
      const renewalsBefore = keeper.renewals;
      // With a 4 s TTL, the lease only survives if renewals keep landing through members 1 and 2.
      await until(
        "renewals through the surviving members",
        20_000,
        () => keeper.renewals >= renewalsBefore + 3,
      );
      const { leases } = await watcher.listLeases();
      assert.ok(leases.some((l) => l.key === lease.key), "the own lease is still there");
      assert.notEqual(seen.get(lease.key), "removed");
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
  name: "etcd with client-certificate TLS works; a certificate from another CA fails with a clear message",
  ignore: !HAVE,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const dir = await Deno.makeTempDir({ prefix: "weft-tls-" });
    try {
      await makeCerts(dir);
      await using etcd = await startEtcd({
        tls: { cert: `${dir}/server.crt`, key: `${dir}/server.key`, ca: `${dir}/ca.crt` },
      });
      assert.match(etcd.endpoint, /^https:/);
      const good = await openEtcdRegistry({
        endpoints: [etcd.endpoint],
        prefix: PREFIX,
        caFile: `${dir}/ca.crt`,
        certFile: `${dir}/client.crt`,
        keyFile: `${dir}/client.key`,
        timeoutMs: 3000,
      });
      try {
        const m = new SubnetManager(good);
        const l = await m.acquireLease(
          parseNetworkConfig({ Network: "10.244.0.0/16" }),
          attrs("192.168.4.1"),
          { ttlSeconds: 60 },
        );
        assert.ok(l.subnet);
      } finally {
        await good.close();
      }
      const opts = {
        endpoints: [etcd.endpoint],
        prefix: PREFIX,
        caFile: `${dir}/ca.crt`,
        certFile: `${dir}/rogue.crt`,
        keyFile: `${dir}/rogue.key`,
        timeoutMs: 3000,
      };
      const bad = await openEtcdRegistry(opts);
      try {
        const err = await new SubnetManager(bad).listLeases().then(() => undefined, (e) => e);
        assert.ok(err, "a certificate from another CA must be refused");
        const msg = explainEtcdError(err, opts);
        assert.match(msg, /TLS with etcd failed/, msg);
        console.log(`  wrong certificate → ${msg.slice(0, 160)}`);
      } finally {
        await bad.close();
      }
      await assert.rejects(
        () => openEtcdRegistry({ ...opts, certFile: `${dir}/missing.crt` }),
        /--etcd-certfile .*missing\.crt/,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "etcd with username/password auth works; a wrong password fails with a clear message",
  ignore: !HAVE,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using etcd = await startEtcd();
    await etcdctl(etcd.endpoint, ["user", "add", "root:rootpw"]);
    await etcdctl(etcd.endpoint, ["auth", "enable"]);
    const good = await openEtcdRegistry({
      endpoints: [etcd.endpoint],
      prefix: PREFIX,
      username: "root",
      password: "rootpw",
      timeoutMs: 3000,
    });
    try {
      await good.setConfig('{"Network":"10.244.0.0/16"}');
      const cfg = await new SubnetManager(good).getNetworkConfig();
      assert.equal(cfg.subnetLen, 24);
    } finally {
      await good.close();
    }
    const opts = {
      endpoints: [etcd.endpoint],
      prefix: PREFIX,
      username: "root",
      password: "nope",
      timeoutMs: 3000,
    };
    const bad = await openEtcdRegistry(opts);
    try {
      const err = await bad.getConfig().then(() => undefined, (e) => e);
      assert.ok(err, "a wrong password must be refused");
      const msg = explainEtcdError(err, opts);
      assert.match(msg, /rejected the username or password/, msg);
    } finally {
      await bad.close();
    }
  },
});
