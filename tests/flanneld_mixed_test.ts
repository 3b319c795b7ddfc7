/**
 * A weft node and a real flanneld node, one network config without `Backend` in etcd: both must pick
 * flanneld's default, udp (pkg/subnet/config.go), or their pods cannot reach each other. Pods in their
 * own namespaces, behind each node's cni0 bridge, ping across.
 *
 * flanneld is built from flannel's source, never shipped (see the README's "Testing against flanneld"):
 *   git --git-dir=<flannel mirror> archive v0.20.2 | tar -x -C /tmp/flannel-src
 *   (cd /tmp/flannel-src && CGO_ENABLED=1 go build -mod=vendor -o /tmp/flannel-flags/flanneld .)
 * and named by `WEFT_FLANNELD`; without it (CI cannot build it: no network) the test is ignored, saying so.
 */
import assert from "node:assert/strict";
import { Netlink } from "../ffi/mod.ts";
import { readSubnetEnv, type SubnetEnv } from "../src/config/subnet_env.ts";
import { terminateChild } from "../src/lab/lab.ts";
import { formatIP, formatNet } from "../src/net/ip.ts";
import { addPodBridge, gatewayOf, startAgent, waitFor, waitSubnetEnv } from "./helpers/agent.ts";
import { etcdctl, startEtcd } from "./helpers/etcd.ts";
import { createTopology, hasBinary, ROOT, skipUnless } from "./helpers/topology.ts";

const FLANNELD = Deno.env.get("WEFT_FLANNELD") ?? "";
const PREFIX = "/coreos.com/network";
const CONFIG = '{"Network":"10.244.0.0/16"}';

function flanneldPresent(): boolean {
  try {
    return FLANNELD !== "" && Deno.statSync(FLANNELD).isFile;
  } catch {
    return false;
  }
}

/** The address `n` of a node's subnet (a pod's). */
const podIP = (env: SubnetEnv, n: number) =>
  formatIP({ ...env.subnet!.ip, value: env.subnet!.ip.value + BigInt(n) });

Deno.test({
  name: "a weft node and a flanneld node with a config without Backend both run udp, and their pods ping",
  ignore: skipUnless(ROOT, "not root: namespaces needed") ||
    skipUnless(hasBinary("etcd"), "etcd is not installed") ||
    skipUnless(flanneldPresent(), "WEFT_FLANNELD does not name a flanneld binary (build one: see this file)"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    await using topo = await createTopology({ nodes: 2, underlay: "192.168.79.0/24" });
    const dir = await Deno.makeTempDir({ prefix: "weft-flanneld-mixed-" });
    await using etcd = await startEtcd({ netns: topo.underlay, host: topo.underlayIP });
    await etcdctl(etcd.endpoint, ["put", `${PREFIX}/config`, CONFIG], { netns: topo.underlay });
    const [n0, n1] = [topo.nodes[0]!, topo.nodes[1]!];
    const weft = startAgent(n0, { etcd: etcd.endpoint, dir, args: ["--resync-interval=1"] });
    const flanneldEnv = `${dir}/flanneld.subnet.env`;
    const flanneldLog = await Deno.open(`${dir}/flanneld.log`, { create: true, append: true });
    // flanneld's own flag syntax; ip netns exec execs it, so the pid is flanneld's.
    const flanneld = new Deno.Command("ip", {
      args: [
        "netns",
        "exec",
        n1.netns,
        FLANNELD,
        `-etcd-endpoints=${etcd.endpoint}`,
        "-iface=eth0",
        `-subnet-file=${flanneldEnv}`,
        "-ip-masq=false",
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const pump = async (s: ReadableStream<Uint8Array>) => {
      for await (const c of s) await flanneldLog.write(c);
    };
    Promise.all([pump(flanneld.stdout), pump(flanneld.stderr)]).catch(() => {}).finally(() =>
      flanneldLog.close()
    );
    try {
      const weftEnv = await waitSubnetEnv(weft);
      const flannelEnv = await waitFor("flanneld's subnet.env", 30_000, () => {
        try {
          return readSubnetEnv(flanneldEnv);
        } catch {
          return undefined;
        }
      });

      await t.step(
        "both picked udp: flannel0 on each node, MTU 1472, leases of flannel's udp shape",
        async () => {
          assert.equal(weftEnv.mtu, 1472);
          assert.equal(flannelEnv.mtu, 1472);
          for (const n of [n0, n1]) {
            using nl = Netlink.open({ netns: n.netns });
            assert.equal(nl.linkGet("flannel0")?.kind, "tun", `${n.netns} has flannel0`);
            assert.equal(nl.linkGet("flannel.1"), undefined, `${n.netns} has no vxlan device`);
          }
          for (const [env, n] of [[weftEnv, n0], [flannelEnv, n1]] as const) {
            const key = `${PREFIX}/subnets/${formatNet(env.subnet!).replace("/", "-")}`;
            const value = JSON.parse(
              (await etcdctl(etcd.endpoint, ["get", key, "--print-value-only"], { netns: topo.underlay }))
                .trim(),
            );
            assert.equal(value.PublicIP, n.ip);
            assert.ok(!value.BackendType, `no BackendType in ${JSON.stringify(value)}`);
          }
        },
      );

      await t.step("pods on the weft node and on the flanneld node ping each other", async () => {
        const pods = [];
        for (const [n, env] of [[n0, weftEnv], [n1, flannelEnv]] as const) {
          addPodBridge(n.netns, env);
          pods.push(
            await topo.addPod(n, {
              cidr: `${podIP(env, 10)}/${env.subnet!.prefix}`,
              gateway: gatewayOf(env),
              bridge: "cni0",
            }),
          );
        }
        const [a, b] = [pods[0]!, pods[1]!];
        await waitFor("weft pod → flanneld pod", 30_000, () => topo.ping(a, b.ip, { count: 1, timeoutS: 1 }));
        assert.ok(
          await topo.ping(a, b.ip, { count: 5, timeoutS: 2, intervalS: 0.2 }),
          "weft pod → flanneld pod",
        );
        assert.ok(
          await topo.ping(b, a.ip, { count: 5, timeoutS: 2, intervalS: 0.2 }),
          "flanneld pod → weft pod",
        );
      });
    } catch (err) {
      console.error(`flanneld's log:\n${await Deno.readTextFile(`${dir}/flanneld.log`).catch(() => "")}`);
      console.error(`weft's log:\n${await Deno.readTextFile(weft.logFile).catch(() => "")}`);
      throw err;
    } finally {
      await weft.stop();
      await terminateChild(flanneld);
    }
  },
});
