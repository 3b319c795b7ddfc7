/**
 * Datapath throughput: iperf3 TCP pod-to-pod across two nodes over weft vxlan, weft host-gw, weft udp
 * (flannel0 and weft's packet loop), weft wireguard (userspace wireguard-go here: this kernel has no
 * WireGuard), a VXLAN overlay built by hand with `ip` in the same topology — bare, and with flanneld's
 * `--ip-masq` rules (weft's agents run with `--ip-masq`, as kube-flannel's do) — and node-to-node on the
 * underlay. Ping RTT for each. Ratios: weft-vxlan / hand-vxlan (bare and with the rules), weft-host-gw / underlay, weft-host-gw /
 * hand-host-gw (host-gw built by hand with the same cni0 + veth pod plumbing), and udp and wireguard
 * against weft-vxlan (same run).
 *
 * Run: `deno run -A bench/throughput.ts [seconds]` (default 5 s per iperf3 run). Needs root, iperf3.
 *
 * @module
 */
import { withNetns } from "../ffi/mod.ts";
import { runIn } from "../src/lab/lab.ts";
import { readSubnetEnv } from "../src/config/subnet_env.ts";
import {
  FWD_CHAIN,
  FWD_JUMP,
  fwdRules,
  POSTRTG_CHAIN,
  POSTRTG_JUMP,
  postrtgRules,
} from "../src/datapath/iptables_rules.ts";
import { parseCIDR } from "../src/net/ip.ts";
import { createTopology, type Topology } from "../tests/helpers/topology.ts";
import { startEtcd } from "../tests/helpers/etcd.ts";
import { startAgent, waitSubnetEnv } from "../tests/helpers/agent.ts";
import { cni, flannelConf } from "../tests/helpers/cni.ts";
import { stopNetnsProcesses } from "../tests/helpers/netns_procs.ts";

const SECONDS = Number(Deno.args[0] ?? 5);

interface Figures {
  gbps: number;
  rttMs: number;
}

async function measure(serverNs: string, clientNs: string, ip: string): Promise<Figures> {
  const server = withNetns(
    serverNs,
    () =>
      new Deno.Command("iperf3", { args: ["-s", "-1", "-B", ip], stdout: "null", stderr: "null" }).spawn(),
  );
  try {
    await new Promise((r) => setTimeout(r, 300));
    const c = await runIn(clientNs, ["iperf3", "-c", ip, "-t", String(SECONDS), "-J"]);
    if (c.code !== 0) throw new Error(`iperf3 to ${ip}: ${c.stdout.slice(0, 300)} ${c.stderr}`);
    const j = JSON.parse(c.stdout) as { end: { sum_received: { bits_per_second: number } } };
    const p = await runIn(clientNs, ["ping", "-c", "20", "-i", "0.01", "-q", ip]);
    const rtt = Number(p.stdout.match(/= [\d.]+\/([\d.]+)\//)?.[1] ?? NaN);
    return { gbps: j.end.sum_received.bits_per_second / 1e9, rttMs: rtt };
  } finally {
    try {
      server.kill("SIGKILL");
    } catch { /* exited after one test */ }
    await server.status;
  }
}

async function sh(ns: string, ...cmds: string[]): Promise<void> {
  for (const c of cmds) {
    const r = await runIn(ns, ["sh", "-c", c]);
    if (r.code !== 0) throw new Error(`${c}: ${r.stderr}`);
  }
}

/** Two pods (one per node) created through weft's CNI mode; returns their namespaces and IPs. */
async function weftPods(
  topo: Topology,
  backend: string,
  dir: string,
): Promise<{ pods: string[]; ips: string[]; stop: () => Promise<void> }> {
  Deno.mkdirSync(dir, { recursive: true });
  const etcd = await startEtcd({ netns: topo.underlay, host: topo.underlayIP });
  const cfg = await runIn(topo.underlay, [
    "etcdctl",
    `--endpoints=${etcd.endpoint}`,
    "put",
    "/coreos.com/network/config",
    JSON.stringify({ Network: "10.244.0.0/16", Backend: { Type: backend } }),
  ], { env: { ETCDCTL_API: "3", PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" } });
  if (cfg.code !== 0) throw new Error(cfg.stderr);
  // kube-flannel runs flanneld with --ip-masq; WEFT_BENCH_AGENT_ARGS overrides (e.g. "" for none).
  const extra = (Deno.env.get("WEFT_BENCH_AGENT_ARGS") ?? "--ip-masq").split(" ").filter(Boolean);
  // wireguard: each node its own /run/wireguard (wireguard-go's sockets) and key file, as separate
  // machines have.
  const agents = topo.nodes.map((n) =>
    startAgent(n, {
      etcd: etcd.endpoint,
      dir,
      args: extra,
      ...(backend === "wireguard"
        ? {
          env: { WIREGUARD_KEY_FILE: `${dir}/${n.netns}.wgkey` },
          binds: { "/run/wireguard": `${dir}/${n.netns}-run-wireguard` },
        }
        : {}),
    })
  );
  await Promise.all(agents.map((a) => waitSubnetEnv(a)));
  const pods: string[] = [], ips: string[] = [];
  for (const [i, a] of agents.entries()) {
    const pod = await topo.addNamespace(`tp${i}`);
    const r = await cni(
      a.node.netns,
      {
        command: "ADD",
        containerId: `tp${i}`,
        netns: `/run/netns/${pod}`,
        ifname: "eth0",
      },
      flannelConf("1.0.0", {
        subnetFile: a.subnetFile,
        dataDir: `${dir}/flannel${i}`,
        ipamDir: `${dir}/ipam${i}`,
      }),
    );
    if (r.code !== 0) throw new Error(r.stdout);
    pods.push(pod);
    ips.push((r.out!.ips as { address: string }[])[0]!.address.split("/")[0]!);
    readSubnetEnv(a.subnetFile);
  }
  // Let both agents see each other's lease.
  await new Promise((r) => setTimeout(r, 1500));
  return {
    pods,
    ips,
    stop: async () => {
      await Promise.all(agents.map((a) => a.stop("SIGKILL")));
      for (const n of topo.nodes) await stopNetnsProcesses(n.netns, "wireguard-go");
      await etcd.close();
    },
  };
}

/**
 * flanneld's `--ip-masq` rules (nat FLANNEL-POSTRTG, filter FLANNEL-FWD, as src/datapath/iptables_rules.ts
 * holds them) for node subnet `net` of 10.245.0.0/16, written with iptables(8): what every packet of a
 * kube-flannel node meets — conntrack and the nat chain — so a hand-built path with them compares like with
 * like to weft run with `--ip-masq`.
 */
function flannelRules(net: number): string[] {
  const network = parseCIDR("10.245.0.0/16").net, podSubnet = parseCIDR(`10.245.${net}.0/24`).net;
  return [
    `iptables -t nat -N ${POSTRTG_CHAIN}`,
    `iptables -t nat -A POSTROUTING ${POSTRTG_JUMP}`,
    ...postrtgRules({ network, podSubnet }, true).map((r) => `iptables -t nat -A ${POSTRTG_CHAIN} ${r}`),
    `iptables -N ${FWD_CHAIN}`,
    `iptables -I FORWARD ${FWD_JUMP}`,
    ...fwdRules(network).map((r) => `iptables -A ${FWD_CHAIN} ${r}`),
  ];
}

/**
 * Two pods on hand-built datapaths (ip(8)), with the same pod plumbing weft's CNI mode gives (cni0
 * bridge + veth): `vxlan` is weft's vxlan backend done by hand, `host-gw` a route via the peer node;
 * with `rules`, flanneld's masquerade and forward rules on both nodes as well.
 */
async function handPods(
  topo: Topology,
  kind: "vxlan" | "host-gw",
  rules = false,
): Promise<{ pods: string[]; ips: string[] }> {
  const [a, b] = topo.nodes as [Topology["nodes"][0], Topology["nodes"][0]];
  const sides = [
    { n: a, net: 1, peer: b, pnet: 2, mac: "0a:00:00:00:01:01", pmac: "0a:00:00:00:02:02" },
    { n: b, net: 2, peer: a, pnet: 1, mac: "0a:00:00:00:02:02", pmac: "0a:00:00:00:01:01" },
  ];
  const mtu = kind === "vxlan" ? 1450 : 1500;
  const pods: string[] = [], ips: string[] = [];
  for (const s of sides) {
    const pod = await topo.addNamespace(`hp${s.net}`);
    const datapath = kind === "vxlan"
      ? [
        `ip link add flannel.1 type vxlan id 1 local ${s.n.ip} dev eth0 dstport 8472 nolearning`,
        `ip link set flannel.1 mtu 1450 address ${s.mac} up`,
        `ip addr add 10.245.${s.net}.0/32 dev flannel.1`,
        `ip neigh replace 10.245.${s.pnet}.0 lladdr ${s.pmac} dev flannel.1 nud permanent`,
        `bridge fdb replace ${s.pmac} dev flannel.1 dst ${s.peer.ip} self permanent`,
        `ip route replace 10.245.${s.pnet}.0/24 via 10.245.${s.pnet}.0 dev flannel.1 onlink`,
      ]
      : [`ip route replace 10.245.${s.pnet}.0/24 via ${s.peer.ip} dev eth0`];
    await sh(
      s.n.netns,
      ...datapath,
      `ip link add cni0 type bridge && ip link set cni0 mtu ${mtu} up && ip addr add 10.245.${s.net}.1/24 dev cni0`,
      // Both ends at the path MTU, as weft's CNI makes them (the pod end would otherwise keep 1500).
      `ip link add hv${s.net} mtu ${mtu} type veth peer name eth0 mtu ${mtu} netns ${pod}`,
      `ip link set hv${s.net} master cni0 up`,
      ...(rules ? flannelRules(s.net) : []),
    );
    await sh(
      pod,
      "ip link set lo up",
      "ip link set eth0 up",
      `ip addr add 10.245.${s.net}.2/24 dev eth0`,
      `ip route add default via 10.245.${s.net}.1`,
    );
    pods.push(pod);
    ips.push(`10.245.${s.net}.2`);
  }
  return { pods, ips };
}

if (import.meta.main) {
  if (Deno.uid() !== 0) {
    console.error("bench/throughput.ts needs root");
    Deno.exit(1);
  }
  const ROUNDS = Number(Deno.env.get("WEFT_BENCH_ROUNDS") ?? 3);
  const samples: Record<string, Figures[]> = {};
  const dir = await Deno.makeTempDir({ prefix: "weft-tput-" });
  // Every path stays up at once and the paths are measured in interleaved rounds: on a shared VM the
  // bandwidth drifts from minute to minute, and medians of interleaved samples compare like with like.
  const topos: Topology[] = [];
  const stops: (() => Promise<void>)[] = [];
  try {
    const paths: Record<string, () => Promise<Figures>> = {};
    const t1 = await createTopology({ nodes: 2 });
    topos.push(t1);
    paths.underlay = () => measure(t1.nodes[1]!.netns, t1.nodes[0]!.netns, t1.nodes[1]!.ip);
    const hv = await handPods(t1, "vxlan");
    paths["hand-vxlan"] = () => measure(hv.pods[1]!, hv.pods[0]!, hv.ips[1]!);
    const t2 = await createTopology({ nodes: 2 });
    topos.push(t2);
    const hh = await handPods(t2, "host-gw");
    paths["hand-host-gw"] = () => measure(hh.pods[1]!, hh.pods[0]!, hh.ips[1]!);
    // The same with flanneld's --ip-masq rules: weft's agents run with --ip-masq, as kube-flannel's do.
    const t3 = await createTopology({ nodes: 2 });
    topos.push(t3);
    const hvr = await handPods(t3, "vxlan", true);
    paths["hand-vxlan+rules"] = () => measure(hvr.pods[1]!, hvr.pods[0]!, hvr.ips[1]!);
    const backends = (Deno.env.get("WEFT_BENCH_BACKENDS") ?? "vxlan,host-gw,udp,wireguard").split(",");
    for (const backend of backends) {
      const t = await createTopology({ nodes: 2 });
      topos.push(t);
      const w = await weftPods(t, backend, `${dir}/${backend}`);
      stops.push(w.stop);
      paths[`weft-${backend}`] = () => measure(w.pods[1]!, w.pods[0]!, w.ips[1]!);
    }
    for (let r = 0; r < ROUNDS; r++) {
      for (const [name, run] of Object.entries(paths)) (samples[name] ??= []).push(await run());
    }
  } finally {
    for (const stop of stops) await stop();
    for (const t of topos) await t.cleanup();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  const median = (xs: number[]) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)]!;
  const out: Record<string, Figures> = {};
  for (const [k, v] of Object.entries(samples)) {
    out[k] = { gbps: median(v.map((x) => x.gbps)), rttMs: median(v.map((x) => x.rttMs)) };
  }
  console.log(`medians of ${ROUNDS} interleaved ${SECONDS} s runs per path`);
  console.log("path              Gbit/s  rtt_ms");
  for (const [k, v] of Object.entries(out)) {
    console.log(`${k.padEnd(16)}  ${v.gbps.toFixed(2).padStart(6)}  ${v.rttMs.toFixed(3)}`);
  }
  const ratio = (a: string, b: string) =>
    out[a] && out[b] ? (out[a]!.gbps / out[b]!.gbps).toFixed(3) : "n/a (path not measured)";
  console.log(`ratio weft-vxlan / hand-vxlan = ${ratio("weft-vxlan", "hand-vxlan")} (goal ≥ 0.97)`);
  console.log(
    `ratio weft-vxlan / hand-vxlan+rules (flanneld's --ip-masq rules) = ${
      ratio("weft-vxlan", "hand-vxlan+rules")
    }`,
  );
  console.log(
    `ratio hand-vxlan+rules / hand-vxlan (the rules' cost) = ${ratio("hand-vxlan+rules", "hand-vxlan")}`,
  );
  console.log(`ratio weft-host-gw / underlay = ${ratio("weft-host-gw", "underlay")} (goal ≥ 0.97)`);
  // The underlay path crosses no bridge or veth: the same pod plumbing by hand is the like-for-like reference.
  console.log(
    `ratio weft-host-gw / hand-host-gw (same pod plumbing) = ${ratio("weft-host-gw", "hand-host-gw")}`,
  );
  console.log(`ratio weft-udp / weft-vxlan = ${ratio("weft-udp", "weft-vxlan")}`);
  console.log(`ratio weft-wireguard / weft-vxlan = ${ratio("weft-wireguard", "weft-vxlan")}`);
}
