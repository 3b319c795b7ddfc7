/**
 * Restart disruption, per backend: packets lost by `ping -i 0.005` between two nodes' subnets while one
 * agent is restarted with SIGTERM, and with SIGKILL; and the time from deleting the backend's device by
 * hand (`flannel.1`, `flannel0`, `flannel-wg`) to traffic flowing again (repair by the periodic resync,
 * default 10 s, here `--resync-interval` 10 and 2).
 *
 * Reference in the same run: the same ping with no restart (the loss floor of the topology).
 *
 * Run: `deno run -A bench/restart.ts [backend…]` (default vxlan udp wireguard). Needs root; wireguard
 * needs wireguard-go (this kernel has no WireGuard).
 *
 * @module
 */
import { Netlink, withNetns } from "../ffi/mod.ts";
import { runIn } from "../src/lab/lab.ts";
import { formatIP } from "../src/net/ip.ts";
import type { SubnetEnv } from "../src/config/subnet_env.ts";
import { createTopology, type Topology } from "../tests/helpers/topology.ts";
import { startEtcd } from "../tests/helpers/etcd.ts";
import { agentHttp, type AgentProcess, startAgent, waitFor, waitSubnetEnv } from "../tests/helpers/agent.ts";
import { stopNetnsProcesses } from "../tests/helpers/netns_procs.ts";

/** The device each backend keeps (deleted by hand in the repair measurement). */
const DEVICE: Record<string, string> = { vxlan: "flannel.1", udp: "flannel0", wireguard: "flannel-wg" };

function gw(env: SubnetEnv): string {
  return formatIP({ family: 4, value: env.subnet!.ip.value + 1n });
}

async function pingWhile(
  topo: Topology,
  envs: SubnetEnv[],
  during: () => Promise<void>,
): Promise<{ sent: number; lost: number }> {
  const child = withNetns(
    topo.nodes[0]!.netns,
    () =>
      new Deno.Command("ping", {
        args: ["-i", "0.005", "-W", "1", "-I", gw(envs[0]!), gw(envs[1]!)],
        stdout: "piped",
        stderr: "null",
      })
        .spawn(),
  );
  await new Promise((r) => setTimeout(r, 300));
  await during();
  await new Promise((r) => setTimeout(r, 300));
  child.kill("SIGINT");
  const text = new TextDecoder().decode((await child.output()).stdout);
  const m = text.match(/(\d+) packets transmitted, (\d+) received/);
  if (!m) throw new Error(text);
  return { sent: Number(m[1]), lost: Number(m[1]) - Number(m[2]) };
}

async function ready(a: AgentProcess): Promise<void> {
  await waitFor("ready", 30_000, async () => (await agentHttp(a, "/readyz").catch(() => [0]))[0] === 200);
}

async function scenario(backend: string, resync: number): Promise<Record<string, string>> {
  await using topo = await createTopology({ nodes: 2 });
  await using etcd = await startEtcd({ netns: topo.underlay, host: topo.underlayIP });
  const dir = await Deno.makeTempDir({ prefix: "weft-restart-" });
  const r = await runIn(topo.underlay, [
    "etcdctl",
    `--endpoints=${etcd.endpoint}`,
    "put",
    "/coreos.com/network/config",
    JSON.stringify({ Network: "10.244.0.0/16", Backend: { Type: backend } }),
  ], {
    env: { ETCDCTL_API: "3", PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" },
  });
  if (r.code !== 0) throw new Error(r.stderr);
  // wireguard: each node its own /run/wireguard and key file, as separate machines have.
  const agents = topo.nodes.map((n) =>
    startAgent(n, {
      etcd: etcd.endpoint,
      dir,
      args: [`--resync-interval=${resync}`],
      ...(backend === "wireguard"
        ? {
          env: { WIREGUARD_KEY_FILE: `${dir}/${n.netns}.wgkey` },
          binds: { "/run/wireguard": `${dir}/${n.netns}-run-wireguard` },
        }
        : {}),
    })
  );
  try {
    const envs = await Promise.all(agents.map((a) => waitSubnetEnv(a)));
    for (const [i, n] of topo.nodes.entries()) {
      using nl = Netlink.open({ netns: n.netns });
      const br = nl.linkAddBridge({ name: "cni0" });
      nl.addrReplace(br.index, `${gw(envs[i]!)}/24`);
      nl.linkSetUp(br.index);
    }
    await Promise.all(agents.map(ready));
    await waitFor(
      "overlay",
      10_000,
      () => topo.ping(topo.nodes[0]!.netns, gw(envs[1]!), { source: gw(envs[0]!) }),
    );
    const floor = await pingWhile(topo, envs, () => new Promise((r) => setTimeout(r, 3000)));
    const term = await pingWhile(topo, envs, async () => {
      await agents[1]!.stop("SIGTERM");
      agents[1]!.start();
      await ready(agents[1]!);
    });
    const kill = await pingWhile(topo, envs, async () => {
      await agents[1]!.stop("SIGKILL");
      agents[1]!.start();
      await ready(agents[1]!);
    });
    await topo.exec(topo.nodes[0]!.netns, ["ip", "link", "del", DEVICE[backend]!]);
    const t0 = performance.now();
    await waitFor(
      "repair",
      60_000,
      () => topo.ping(topo.nodes[0]!.netns, gw(envs[1]!), { source: gw(envs[0]!), timeoutS: 1 }),
    );
    const repairMs = performance.now() - t0;
    return {
      backend,
      resync_s: String(resync),
      no_restart_lost: `${floor.lost}/${floor.sent}`,
      sigterm_restart_lost: `${term.lost}/${term.sent}`,
      sigkill_restart_lost: `${kill.lost}/${kill.sent}`,
      device_deleted_repair_ms: repairMs.toFixed(0),
    };
  } finally {
    await Promise.all(agents.map((a) => a.stop("SIGKILL")));
    for (const n of topo.nodes) await stopNetnsProcesses(n.netns, "wireguard-go");
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) {
  if (Deno.uid() !== 0) {
    console.error("bench/restart.ts needs root");
    Deno.exit(1);
  }
  const backends = Deno.args.length ? Deno.args : ["vxlan", "udp", "wireguard"];
  for (const backend of backends) {
    if (!DEVICE[backend]) throw new Error(`unknown backend ${backend} (${Object.keys(DEVICE).join(", ")})`);
    for (const resync of [10, 2]) console.log(JSON.stringify(await scenario(backend, resync)));
  }
}
