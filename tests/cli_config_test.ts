/**
 * One configuration for agent and CLI: `weft doctor`, `weft leases` and `weft status` read the agent's
 * flags (in flanneld's syntax), its `FLANNELD_*` variables and the systemd unit's env file
 * (/etc/default/weft, or `--env-file`), and the doctor reaches a TLS or password-protected etcd through
 * the agent's own client.
 */
import assert from "node:assert/strict";
import { SubnetManager } from "../src/lease/etcd/mod.ts";
import { openEtcdRegistry } from "../src/lease/etcd/mod.ts";
import { parseNetworkConfig } from "../src/config/net_conf.ts";
import { writeSubnetEnv } from "../src/config/subnet_env.ts";
import { enableEtcdAuth, haveEtcd, startEtcd } from "./helpers/etcd.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;
const PREFIX = "/coreos.com/network";
const CONFIG = '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}';

interface Finding {
  id: string;
  status: string;
  message: string;
}

/** Runs `weft <args>` with only `env` (and PATH) as its environment. */
async function weft(args: string[], env: Record<string, string> = {}) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--no-check", MAIN, ...args],
    env: { PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin", HOME: Deno.env.get("HOME") ?? "/root", ...env },
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** `weft doctor --json …`'s etcd findings, by id. */
async function doctorEtcd(args: string[], env: Record<string, string> = {}): Promise<Map<string, Finding>> {
  const r = await weft(["doctor", "--json", ...args], env);
  const { findings } = JSON.parse(r.stdout) as { findings: Finding[] };
  return new Map(
    findings.filter((f) => ["etcd", "net_config", "lease", "clock_skew"].includes(f.id)).map((
      f,
    ) => [f.id, f]),
  );
}

/** A node's lease in etcd and its subnet.env, as the agent leaves them. */
async function leasedNode(reg: Awaited<ReturnType<typeof openEtcdRegistry>>, dir: string): Promise<string> {
  await reg.setConfig(CONFIG);
  const m = new SubnetManager(reg);
  const l = await m.acquireLease(parseNetworkConfig(CONFIG), {
    PublicIP: "192.168.4.1",
    PublicIPv6: null,
    BackendType: "vxlan",
    BackendData: { VNI: 1, VtepMAC: "0a:00:00:00:00:04" },
  }, { ttlSeconds: 600 });
  const file = `${dir}/subnet.env`;
  writeSubnetEnv(file, {
    network: parseNetworkConfig(CONFIG).network!,
    subnet: l.subnet!,
    mtu: 1450,
    ipMasq: false,
  });
  return file;
}

Deno.test({
  name: "weft doctor and weft leases reach a TLS etcd with the agent's settings from the unit's env file",
  ignore: !haveEtcd({ openssl: true }),
  async fn() {
    await using etcd = await startEtcd({ tls: true });
    const certs = etcd.certs!;
    const dir = await Deno.makeTempDir({ prefix: "weft-cli-config-" });
    const reg = await openEtcdRegistry({
      endpoints: etcd.endpoints,
      prefix: PREFIX,
      caFile: certs.ca,
      certFile: certs.clientCert,
      keyFile: certs.clientKey,
    });
    let subnetFile: string;
    try {
      subnetFile = await leasedNode(reg, dir);
    } finally {
      await reg.close();
    }
    // What deploy/weft.service's EnvironmentFile holds on such a node.
    const envFile = `${dir}/weft`;
    await Deno.writeTextFile(
      envFile,
      [
        `FLANNELD_ETCD_ENDPOINTS=${etcd.endpoint}`,
        `FLANNELD_ETCD_CAFILE=${certs.ca}`,
        `FLANNELD_ETCD_CERTFILE=${certs.clientCert}`,
        `FLANNELD_ETCD_KEYFILE="${certs.clientKey}"`,
        `FLANNELD_SUBNET_FILE=${subnetFile}`,
      ].join("\n") + "\n",
    );

    const f = await doctorEtcd([`--env-file=${envFile}`]);
    assert.equal(f.get("etcd")?.status, "ok", JSON.stringify(f.get("etcd")));
    assert.match(f.get("etcd")!.message, /^etcd answers at https:\/\/.* \(TLS, client certificate\)$/);
    assert.equal(f.get("net_config")?.status, "ok");
    assert.equal(f.get("lease")?.status, "ok", JSON.stringify(f.get("lease")));
    assert.match(f.get("lease")!.message, /10\.244\.\d+\.0-24 exists \(PublicIP 192\.168\.4\.1\)/);
    assert.ok(f.has("clock_skew"), "the clock is compared over the same TLS settings");

    // WEFT_ENV_FILE names the file too; the flags in Go's syntax work as well.
    const leases = await weft(["leases", "--json"], { WEFT_ENV_FILE: envFile });
    assert.equal(leases.code, 0, leases.stderr);
    assert.deepEqual(JSON.parse(leases.stdout).map((r: { publicIP: string }) => r.publicIP), ["192.168.4.1"]);
    const goSyntax = await weft([
      "leases",
      "--json",
      `-etcd-endpoints=${etcd.endpoint}`,
      "-etcd-cafile",
      certs.ca,
      `-etcd-certfile=${certs.clientCert}`,
      `-etcd-keyfile=${certs.clientKey}`,
    ]);
    assert.equal(goSyntax.code, 0, goSyntax.stderr);

    // A variable already in the environment wins over the file; a wrong certificate is named clearly.
    const rogue = await doctorEtcd([`--env-file=${envFile}`], {
      FLANNELD_ETCD_CERTFILE: certs.rogueCert,
      FLANNELD_ETCD_KEYFILE: certs.rogueKey,
    });
    assert.equal(rogue.get("etcd")?.status, "fail");
    assert.match(rogue.get("etcd")!.message, /^TLS with etcd failed/);

    // Without the file's settings (flanneld's default endpoint, where this machine may have no etcd), an
    // etcd that does not answer is skipped, not failed.
    const none = await doctorEtcd(["--env-file=/dev/null"]);
    assert.notEqual(none.get("etcd")?.status, "fail", JSON.stringify(none.get("etcd")));
    await Deno.remove(dir, { recursive: true });
  },
});

Deno.test({
  name: "weft doctor reaches an etcd with password auth with the agent's FLANNELD_ETCD_USERNAME/PASSWORD",
  ignore: !haveEtcd(),
  async fn() {
    await using etcd = await startEtcd();
    await enableEtcdAuth(etcd, "rootpw");
    const dir = await Deno.makeTempDir({ prefix: "weft-cli-auth-" });
    const reg = await openEtcdRegistry({
      endpoints: etcd.endpoints,
      prefix: PREFIX,
      username: "root",
      password: "rootpw",
    });
    let subnetFile: string;
    try {
      subnetFile = await leasedNode(reg, dir);
    } finally {
      await reg.close();
    }
    const env = {
      FLANNELD_ETCD_ENDPOINTS: etcd.endpoint,
      FLANNELD_ETCD_USERNAME: "root",
      FLANNELD_SUBNET_FILE: subnetFile,
    };
    const ok = await doctorEtcd([], { ...env, FLANNELD_ETCD_PASSWORD: "rootpw" });
    assert.equal(ok.get("etcd")?.status, "ok", JSON.stringify(ok.get("etcd")));
    assert.match(ok.get("etcd")!.message, /\(plain HTTP, user root\)/);
    assert.equal(ok.get("lease")?.status, "ok", JSON.stringify(ok.get("lease")));
    const bad = await doctorEtcd(["-etcd-password=nope"], env);
    assert.equal(bad.get("etcd")?.status, "fail");
    assert.match(bad.get("etcd")!.message, /etcd rejected the username or password/);
    await Deno.remove(dir, { recursive: true });
  },
});

Deno.test("weft status finds the agent's health endpoint in the unit's env file", async () => {
  const served: string[] = [];
  await using server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, (req) => {
    const path = new URL(req.url).pathname;
    served.push(path);
    if (path === "/readyz") return new Response("ok");
    return new Response(
      'weft_leases_known 3\nweft_peers_programmed 2\nweft_lease_info{subnet="10.244.5.0/24",public_ip="192.168.4.1",backend="vxlan"} 1\n',
    );
  });
  const dir = await Deno.makeTempDir({ prefix: "weft-cli-status-" });
  const envFile = `${dir}/weft`;
  // The agent listens on every address (flanneld's default): status asks the loopback.
  await Deno.writeTextFile(
    envFile,
    `FLANNELD_HEALTHZ_IP=0.0.0.0\nFLANNELD_HEALTHZ_PORT=${server.addr.port}\n`,
  );
  const r = await weft(["status", "--json", `--env-file=${envFile}`]);
  assert.equal(r.code, 0, r.stderr);
  const st = JSON.parse(r.stdout) as { endpoint: string; ready: boolean; metrics: Record<string, number> };
  assert.equal(st.endpoint, `http://127.0.0.1:${server.addr.port}`);
  assert.equal(st.ready, true);
  assert.equal(st.metrics["weft_peers_programmed"], 2);
  assert.deepEqual(served.sort(), ["/metrics", "/readyz"]);
  // The same through the variable itself, and a flag on the command line wins over both.
  const byEnv = await weft(["status", "--json"], { FLANNELD_HEALTHZ_PORT: String(server.addr.port) });
  assert.equal(byEnv.code, 0, byEnv.stderr);
  const wins = await weft(["status", `--env-file=${envFile}`, "-healthz-port=1"]);
  assert.notEqual(wins.code, 0);
  assert.match(wins.stderr, /cannot reach the agent at 127\.0\.0\.1:1 /);
  await Deno.remove(dir, { recursive: true });
});
