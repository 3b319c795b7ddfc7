/**
 * `weft cleanup` leaves a node as `ip link`, `ip route`, `nft list ruleset` and `iptables-save` showed it
 * before weft: a real agent (vxlan, with a peer, CNI server) and a real CNI ADD run on a node namespace
 * first. And, with `--flannel`, flanneld's leftovers go too; with `--keep-overlay` (a rollback to
 * flanneld) what flanneld adopts stays.
 */
import assert from "node:assert/strict";
import { Netlink } from "../ffi/mod.ts";
import { runIn } from "../src/lab/lab.ts";
import { formatNet } from "../src/net/ip.ts";
import { startAgent, waitFor, waitReady, waitSubnetEnv } from "./helpers/agent.ts";
import { cni, flannelConf } from "./helpers/cni.ts";
import { haveEtcd, putNetworkConfig, startEtcd } from "./helpers/etcd.ts";
import { withScratchNetns } from "./helpers/scratch_netns.ts";
import { createTopology, hasBinary, ROOT, skipUnless } from "./helpers/topology.ts";
import { PRIVATE_MOUNTS_SH } from "./helpers/private_mounts.ts";

const MAIN = new URL("../main.ts", import.meta.url).pathname;

/** `weft …` run inside `netns`. */
function weft(netns: string, args: string[]) {
  return runIn(netns, [Deno.execPath(), "run", "-A", "--no-check", MAIN, ...args]);
}

async function text(netns: string, cmd: string[]): Promise<string> {
  const r = await runIn(netns, cmd);
  assert.equal(r.code, 0, `${cmd.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

/** What the issue compares: links, routes, the nftables ruleset, both iptables families (no timestamps). */
async function snapshot(netns: string): Promise<Record<string, string>> {
  const save = async (bin: string) =>
    (await text(netns, [bin])).split("\n").filter((l) => !l.startsWith("#")).map((l) =>
      l.replace(/\[\d+:\d+\]/, "[0:0]")
    ).join("\n");
  return {
    "ip link": await text(netns, ["ip", "-o", "link", "show"]),
    "ip route": await text(netns, ["ip", "route", "show", "table", "all"]),
    "ip -6 route": await text(netns, ["ip", "-6", "route", "show", "table", "all"]),
    "ip nexthop": await text(netns, ["ip", "nexthop", "show"]),
    // Counters move with any packet (iptables-nft's rules carry them too): not what cleanup is about.
    "nft list ruleset": (await text(netns, ["nft", "list", "ruleset"]))
      .replace(/counter packets \d+ bytes \d+/g, "counter packets 0 bytes 0"),
    "iptables-save": await save("iptables-save"),
    "ip6tables-save": await save("ip6tables-save"),
  };
}

/** flanneld's iptables chains, as weft's iptables mode (and flanneld) writes them. */
const FLANNEL_CHAINS = `*nat
:FLANNEL-POSTRTG - [0:0]
-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG
-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN
-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully
COMMIT
*filter
:FLANNEL-FWD - [0:0]
-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD
-A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT
COMMIT
`;

Deno.test({
  name: "weft cleanup leaves a node as it was before weft: after a real agent, a peer and a CNI ADD",
  ignore: skipUnless(ROOT && haveEtcd(), "needs root and etcd"),
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    await using topo = await createTopology({ nodes: 2 });
    const dir = await Deno.makeTempDir({ prefix: "weft-cleanup-" });
    await using etcd = await startEtcd({ netns: topo.underlay, host: topo.underlayIP });
    await putNetworkConfig(etcd.endpoint, { Network: "10.244.0.0/16", Backend: { Type: "vxlan" } }, {
      netns: topo.underlay,
    });
    const [n0, n1] = topo.nodes as [typeof topo.nodes[0], typeof topo.nodes[0]];
    // The kernel finishes eth0's IPv6 link-local address (and its local route) on its own time: wait for
    // it, so "before" is the node as it stays without weft.
    await waitFor(
      "eth0's IPv6 link-local address",
      10_000,
      async () =>
        /inet6 fe80::.* scope link\s*\n/.test(
          await text(n0.netns, ["ip", "-6", "addr", "show", "dev", "eth0"]),
        ) &&
        !/tentative/.test(await text(n0.netns, ["ip", "-6", "addr", "show", "dev", "eth0"])),
    );
    const before = await snapshot(n0.netns);
    // Node 0 without --ip-masq, so the CNI plugin masquerades (table ip weft-cni) as well.
    const a0 = startAgent(n0, { etcd: etcd.endpoint, dir, args: ["--resync-interval=2"] });
    const a1 = startAgent(n1, { etcd: etcd.endpoint, dir, args: ["--ip-masq"] });
    const pod = await topo.addNamespace("pod");
    try {
      const env = await waitSubnetEnv(a0);
      await Promise.all([waitReady(a0), waitReady(a1)]);
      const peer = await waitSubnetEnv(a1);
      await waitFor("node 1's route on node 0", 20_000, () => {
        using nl = Netlink.open({ netns: n0.netns });
        return nl.routeList({ protocol: 87 }).some((r) => r.dst === formatNet(peer.subnet!));
      });
      const conf = flannelConf("1.0.0", {
        subnetFile: a0.subnetFile,
        dataDir: `${dir}/flannel`,
        ipamDir: `${dir}/networks`,
      });
      const call = { containerId: "c1", netns: `/run/netns/${pod}`, ifname: "eth0" };
      const add = await cni(n0.netns, { command: "ADD", ...call }, conf);
      assert.equal(add.code, 0, add.stdout + add.stderr);
      // EnableNFTables is false (flanneld's default): the agent's rules are flanneld's chains in iptables.
      await waitFor(
        "the agent's FLANNEL-FWD chain",
        20_000,
        async () =>
          /-A FORWARD .*-j FLANNEL-FWD/.test(await text(n0.netns, ["iptables-save", "-t", "filter"])),
      );
      const during = await snapshot(n0.netns);
      assert.match(during["ip link"]!, /flannel\.1:.*\n(.|\n)*cni0:/, "weft made its devices");
      assert.match(during["nft list ruleset"]!, /table ip weft-cni \{/);
      assert.match(during["iptables-save"]!, /FLANNEL-FWD/);
      assert.match(during["ip route"]!, /proto 87/);

      await t.step(
        "while the agent runs: a dry run lists everything and says why not now; --yes refuses",
        async () => {
          const dry = await weft(n0.netns, ["cleanup", `--subnet-file=${a0.subnetFile}`]);
          assert.equal(dry.code, 0, dry.stderr);
          assert.match(dry.stdout, /dry run, nothing changed/);
          for (
            const what of [
              "link flannel.1",
              "route",
              "FLANNEL-FWD",
              "table ip weft-cni",
            ]
          ) {
            assert.ok(dry.stdout.includes(what), `${what} in:\n${dry.stdout}`);
          }
          assert.match(dry.stdout, /link cni0: 1 pod interface still attached .*drain the node first/);
          assert.match(dry.stdout, /not now:\n {2}a weft agent runs in this network namespace \(pid \d+\)/);
          const refused = await weft(n0.netns, ["cleanup", "--yes", `--subnet-file=${a0.subnetFile}`]);
          assert.equal(refused.code, 3, refused.stdout + refused.stderr);
          // (IPv6 link-local routes of the fresh cni0 and veth come and go on the kernel's own time.)
          const { ["ip -6 route"]: _, ...now } = await snapshot(n0.netns);
          const { ["ip -6 route"]: __, ...then } = during;
          assert.deepEqual(now, then, "nothing changed");
        },
      );

      await t.step("agent stopped, pod still attached: everything goes but cni0", async () => {
        await a0.stop();
        const r = await weft(n0.netns, ["cleanup", "--yes", `--subnet-file=${a0.subnetFile}`]);
        assert.equal(r.code, 0, r.stdout + r.stderr);
        assert.doesNotMatch(r.stdout, /✗/);
        assert.match(r.stdout, /kept:(.|\n)*link cni0: 1 pod interface still attached/);
        assert.match(r.stdout, /subnet\.env: --subnet-env removes it/);
        using nl = Netlink.open({ netns: n0.netns });
        assert.ok(nl.linkGet("cni0"), "the pod keeps its bridge");
        assert.equal(nl.linkGet("flannel.1"), undefined);
        assert.deepEqual(nl.routeList({ protocol: 87, table: 0 }), []);
        assert.throws(() => Deno.lstatSync(`${a0.subnetFile}.weft-cni.sock`), Deno.errors.NotFound);
      });

      await t.step("after the pod's DEL (a drain), the node is as before weft, byte for byte", async () => {
        const del = await cni(n0.netns, { command: "DEL", ...call }, conf);
        assert.equal(del.code, 0, del.stdout + del.stderr);
        const r = await weft(n0.netns, [
          "cleanup",
          "--yes",
          "--subnet-env",
          `--subnet-file=${a0.subnetFile}`,
        ]);
        assert.equal(r.code, 0, r.stdout + r.stderr);
        assert.match(r.stdout, /✓ link cni0/);
        assert.deepEqual(await snapshot(n0.netns), before);
        assert.throws(() => Deno.statSync(a0.subnetFile), Deno.errors.NotFound, "--subnet-env");
        assert.equal(env.subnet!.prefix, 24);
        const again = await weft(n0.netns, ["cleanup", `--subnet-file=${a0.subnetFile}`]);
        assert.match(again.stdout, /nothing of weft's to remove/);
      });
    } finally {
      await a0.stop();
      await a1.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  },
});

Deno.test({
  name:
    "weft cleanup --flannel removes flanneld's leftovers (both iptables backends); --keep-overlay keeps what " +
    "flanneld adopts",
  ignore: !ROOT,
  async fn(t) {
    const legacy = (() => {
      try {
        Deno.statSync("/proc/net/ip_tables_names");
        return true;
      } catch {
        return false;
      }
    })();
    await withScratchNetns("clf", async (ns, nl) => {
      nl.linkSetUp("lo");
      const before = await snapshot(ns);
      const leftovers = async () => {
        const vx = nl.linkAddVxlan({ name: "flannel.1", vni: 1, port: 8472, learning: false });
        nl.linkSetUp(vx.index);
        nl.addrReplace(vx.index, "10.244.3.0/32");
        // flanneld's own routes carry no protocol of weft's: they go with the device.
        nl.routeReplace({
          dst: "10.244.4.0/24",
          gateway: "10.244.4.0",
          dev: vx.index,
          onlink: true,
          protocol: 3,
        });
        nl.linkAddBridge({ name: "cni0" });
        await text(ns, ["nft", "add table ip flannel-ipv4; add chain ip flannel-ipv4 postrtg"]);
        const extra = FLANNEL_CHAINS.replace(
          "*filter\n",
          "*filter\n:FLANNEL-OLD - [0:0]\n-A FORWARD -j FLANNEL-OLD\n",
        );
        for (const bin of ["iptables-nft-restore", ...(legacy ? ["iptables-legacy-restore"] : [])]) {
          const r = await runIn(ns, [bin, "--noflush"], { stdin: extra });
          assert.equal(r.code, 0, `${bin}: ${r.stderr}`);
        }
      };
      await leftovers();
      await t.step("--keep-overlay: flanneld's device, bridge and chains stay", async () => {
        const r = await weft(ns, [
          "cleanup",
          "--yes",
          "--keep-overlay",
          "--subnet-file=/nonexistent/subnet.env",
        ]);
        assert.equal(r.code, 0, r.stdout + r.stderr);
        assert.ok(nl.linkGet("flannel.1") && nl.linkGet("cni0"));
        assert.match((await snapshot(ns))["iptables-save"]!, /FLANNEL-POSTRTG/);
      });
      await t.step("without --flannel, flanneld's own table and unknown FLANNEL-* chains stay", async () => {
        const r = await weft(ns, ["cleanup", "--subnet-file=/nonexistent/subnet.env"]);
        assert.doesNotMatch(r.stdout, /flannel-ipv4|FLANNEL-OLD/);
        assert.match(r.stdout, /FLANNEL-POSTRTG/);
      });
      await t.step(
        "--flannel-only (weft running after a switch): only flanneld's own nftables table goes",
        async () => {
          const r = await weft(ns, [
            "cleanup",
            "--yes",
            "--flannel-only",
            "--subnet-file=/nonexistent/subnet.env",
          ]);
          assert.equal(r.code, 0, r.stdout + r.stderr);
          assert.match(r.stdout, /✓ nftables table ip flannel-ipv4/);
          const now = await snapshot(ns);
          assert.doesNotMatch(now["nft list ruleset"]!, /flannel-ipv4/);
          assert.match(now["iptables-save"]!, /FLANNEL-POSTRTG/);
          assert.ok(nl.linkGet("flannel.1") && nl.linkGet("cni0"));
        },
      );
      await t.step(
        "--flannel: every FLANNEL-* chain in both backends, its table, flannel.1 and cni0 go",
        async () => {
          const r = await weft(ns, [
            "cleanup",
            "--yes",
            "--flannel",
            "--subnet-file=/nonexistent/subnet.env",
          ]);
          assert.equal(r.code, 0, r.stdout + r.stderr);
          assert.doesNotMatch(r.stdout, /✗/);
          if (legacy) assert.match(r.stdout, /iptables-legacy-restore: chains .*FLANNEL-OLD/);
          assert.deepEqual(await snapshot(ns), before);
          if (legacy) {
            assert.doesNotMatch(await text(ns, ["iptables-legacy-save"]), /FLANNEL/);
          }
        },
      );
    });
  },
});

Deno.test({
  name: "weft cleanup stops the wireguard-go behind a userspace flannel-wg, and its device and socket go",
  ignore: skipUnless(ROOT && hasBinary("wireguard-go"), "needs root and wireguard-go"),
  async fn() {
    await withScratchNetns("clw", async (ns, nl) => {
      // A private /var/run/wireguard (its own mount namespace), as each node has its own: no other test's
      // socket is ever in sight.
      const script = [
        "mkdir -p /var/run/wireguard && mount -t tmpfs tmpfs /var/run/wireguard",
        `ip netns exec ${ns} wireguard-go flannel-wg`,
        "ls /var/run/wireguard",
        `ip netns exec ${ns} "$0" run -A --no-check "$1" cleanup --yes --subnet-file=/nonexistent/subnet.env`,
        "echo AFTER; ls /var/run/wireguard",
      ].join(" && ");
      const r = await runIn(undefined, [
        ...PRIVATE_MOUNTS_SH,
        script,
        Deno.execPath(),
        MAIN,
      ]);
      assert.equal(r.code, 0, r.stdout + r.stderr);
      assert.match(r.stdout, /^flannel-wg\.sock\n/, "wireguard-go was up");
      assert.match(r.stdout, /✓ process \d+ \(wireguard-go flannel-wg\)/);
      assert.match(r.stdout, /✓ link flannel-wg/);
      assert.match(r.stdout, /AFTER\n$/, "its socket is gone");
      assert.equal(nl.linkGet("flannel-wg"), undefined);
    });
  },
});
