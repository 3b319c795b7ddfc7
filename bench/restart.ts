/**
 * Restart disruption: packets lost by `ping -i 0.005` between two nodes' subnets while one agent is
 * restarted with SIGTERM, and with SIGKILL; and the time from deleting `flannel.1` by hand to traffic
 * flowing again (repair by the periodic resync, default 10 s, here `--resync-interval` 10 and 2).
 *
 * Reference in the same run: the same ping with no restart (the loss floor of the topology).
 *
 * Run: `deno run -A bench/restart.ts`. Needs root.
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

async function scenario(resync: number): Promise<Record<string, string>> {
  await using topo = await createTopology({ nodes: 2 });
  await using etcd = await startEtcd({ netns: topo.underlay, host: topo.underlayIP });
  const dir = await Deno.makeTempDir({ prefix: "weft-restart-" });
  const r = await runIn(topo.underlay, [
    "etcdctl",
    `--endpoints=${etcd.endpoint}`,
    "put",
    "/coreos.com/network/config",
    '{"Network":"10.244.0.0/16"}',
  ], {
    env: { ETCDCTL_API: "3", PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" },
  });
  if (r.code !== 0) throw new Error(r.stderr);
  const agents = topo.nodes.map((n) =>
    startAgent(n, { etcd: etcd.endpoint, dir, args: [`--resync-interval=${resync}`] })
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
    await topo.exec(topo.nodes[0]!.netns, ["ip", "link", "del", "flannel.1"]);
    const t0 = performance.now();
    await waitFor(
      "repair",
      60_000,
      () => topo.ping(topo.nodes[0]!.netns, gw(envs[1]!), { source: gw(envs[0]!), timeoutS: 1 }),
    );
    const repairMs = performance.now() - t0;
    return {
      resync_s: String(resync),
      no_restart_lost: `${floor.lost}/${floor.sent}`,
      sigterm_restart_lost: `${term.lost}/${term.sent}`,
      sigkill_restart_lost: `${kill.lost}/${kill.sent}`,
      flannel1_deleted_repair_ms: repairMs.toFixed(0),
    };
  } finally {
    await Promise.all(agents.map((a) => a.stop("SIGKILL")));
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) {
  if (Deno.uid() !== 0) {
    console.error("bench/restart.ts needs root");
    Deno.exit(1);
  }
  for (const resync of [10, 2]) console.log(JSON.stringify(await scenario(resync)));
}
