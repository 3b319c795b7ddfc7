/**
 * The demo cluster behind `weft demo up|down`: N nodes as network namespaces on an underlay bridge that
 * lives in its own namespace, a real etcd in the underlay namespace, one `weft agent` per node, and pods
 * created through weft's CNI mode — the same entry point kubelet execs.
 *
 * Everything it makes is recorded in a state file first, so `down` (or the next `up`) removes it even
 * after a crash. The root namespace is never touched.
 *
 * @module
 */
import { Netlink, netnsCreate, netnsList, netnsPath } from "../../ffi/mod.ts";
import { addNode, alive, createUnderlay, deleteNamespaces, runIn, spawnDetached, stopPid } from "./lab.ts";
import { readSubnetEnv } from "../config/subnet_env.ts";
import { formatNet } from "../net/ip.ts";
import { selfCommand } from "../self_command.ts";

/** What every demo namespace name starts with. */
export const DEMO_PREFIX = "weft-demo-";
/** Where the demo keeps its state, logs and per-node files. */
export const DEMO_DIR = "/run/weft-demo";
const STATE_FILE = `${DEMO_DIR}/state.json`;
const UNDERLAY = `${DEMO_PREFIX}ul`;
const UNDERLAY_NET = "192.168.100";
const ETCD_IP = `${UNDERLAY_NET}.1`;
const ETCD_URL = `http://${ETCD_IP}:2379`;
const CLUSTER_NETWORK = "10.244.0.0/16";

/** Options of `weft demo up`. */
export interface DemoOptions {
  /** Number of nodes (1–9). */
  nodes: number;
  /** Pods per node (0–9). */
  pods: number;
  /** `vxlan`, `host-gw` or `udp` (wireguard would need each node's own /run/wireguard: not in the demo). */
  backend: "vxlan" | "host-gw" | "udp";
  /** Progress callback. */
  progress: (msg: string) => void;
  /** How long to wait for agents and etcd, ms. */
  timeoutMs?: number;
}

/** One pod of the demo. */
export interface DemoPod {
  /** Pod name (also its namespace suffix). */
  name: string;
  /** Its namespace. */
  netns: string;
  /** Its IPv4 address (without prefix). */
  ip: string;
}

/** One node of the demo. */
export interface DemoNode {
  /** Node name. */
  name: string;
  /** Its namespace. */
  netns: string;
  /** Underlay address. */
  publicIP: string;
  /** Leased subnet, from subnet.env. */
  subnet: string;
  /** subnet.env path. */
  subnetFile: string;
  /** Agent health port. */
  healthPort: number;
  /** Agent pid. */
  agentPid: number;
  /** Pods on the node. */
  pods: DemoPod[];
}

/** The recorded state of a demo cluster. */
export interface DemoState {
  /** Backend type. */
  backend: string;
  /** etcd client URL. */
  etcd: string;
  /** Every namespace created. */
  namespaces: string[];
  /** Every process started (pid, what). */
  pids: { pid: number; what: string }[];
  /** Nodes. */
  nodes: DemoNode[];
}

function saveState(state: DemoState): void {
  Deno.mkdirSync(DEMO_DIR, { recursive: true });
  Deno.writeTextFileSync(`${STATE_FILE}.tmp`, JSON.stringify(state, null, 2));
  Deno.renameSync(`${STATE_FILE}.tmp`, STATE_FILE);
}

/** Reads the state of a running demo, if any. */
export function loadState(): DemoState | undefined {
  try {
    return JSON.parse(Deno.readTextFileSync(STATE_FILE)) as DemoState;
  } catch {
    return undefined;
  }
}

/**
 * Removes everything a demo made: its processes, every `weft-demo-*` namespace, and its state folder.
 * Safe to call when nothing is there. Returns what it removed.
 */
export async function demoDown(): Promise<{ processes: number; namespaces: number }> {
  const state = loadState();
  let processes = 0;
  for (const { pid } of state?.pids ?? []) {
    if (alive(pid)) processes++;
    await stopPid(pid);
  }
  let namespaces = 0;
  const names = new Set([
    ...(state?.namespaces ?? []),
    ...netnsList().filter((n) => n.startsWith(DEMO_PREFIX)),
  ]);
  namespaces += deleteNamespaces(names);
  await Deno.remove(DEMO_DIR, { recursive: true }).catch(() => {});
  return { processes, namespaces };
}

async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`);
}

function buildUnderlay(state: DemoState): void {
  state.namespaces.push(UNDERLAY);
  saveState(state);
  createUnderlay(UNDERLAY, `${ETCD_IP}/24`);
}

function buildNode(state: DemoState, i: number): { netns: string; publicIP: string } {
  const netns = `${DEMO_PREFIX}n${i}`;
  state.namespaces.push(netns);
  saveState(state);
  const node = addNode(UNDERLAY, netns, `n${i}`, `${UNDERLAY_NET}.${10 + i}/24`);
  return { netns, publicIP: node.ip };
}

/** The CNI config each node's kubelet would pass: kube-flannel's plugin entry, per-node paths. */
export function demoCniConfig(node: { subnetFile: string; dir: string }): Record<string, unknown> {
  return {
    cniVersion: "1.0.0",
    name: "cbr0",
    type: "flannel",
    subnetFile: node.subnetFile,
    dataDir: `${node.dir}/cni-flannel`,
    delegate: { hairpinMode: true, isDefaultGateway: true, ipam: { dataDir: `${node.dir}/cni-networks` } },
  };
}

async function addPod(node: DemoNode, dir: string, j: number, state: DemoState): Promise<DemoPod> {
  const name = `${node.name}-p${j}`;
  const netns = `${DEMO_PREFIX}${name}`;
  state.namespaces.push(netns);
  saveState(state);
  netnsCreate(netns);
  {
    using nl = Netlink.open({ netns });
    nl.linkSetUp("lo");
  }
  const [exe, ...pre] = selfCommand();
  const env = {
    CNI_COMMAND: "ADD",
    CNI_CONTAINERID: `demo-${name}`,
    CNI_NETNS: netnsPath(netns),
    CNI_IFNAME: "eth0",
    CNI_PATH: "/opt/cni/bin:/usr/lib/cni",
    CNI_ARGS: `IgnoreUnknown=1;K8S_POD_NAMESPACE=demo;K8S_POD_NAME=${name}`,
    PATH: Deno.env.get("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin",
  };
  const res = await runIn(node.netns, [exe, ...pre], {
    env,
    stdin: JSON.stringify(demoCniConfig({ subnetFile: node.subnetFile, dir })),
  });
  if (res.code !== 0) {
    throw new Error(`CNI ADD for ${name} failed: ${res.stdout.trim()} ${res.stderr.trim()}`);
  }
  const result = JSON.parse(res.stdout) as { ips?: { address: string }[] };
  const ip = result.ips?.[0]?.address.split("/")[0];
  if (!ip) throw new Error(`CNI ADD for ${name} returned no IP: ${res.stdout}`);
  return { name, netns, ip };
}

async function readyz(node: DemoNode): Promise<boolean> {
  const child = await runIn(node.netns, [
    ...selfCommand(),
    "status",
    "--healthz-port",
    String(node.healthPort),
    "--json",
  ]).catch(() => undefined);
  return child?.code === 0;
}

/** Starts etcd in the underlay namespace, builds the node namespaces, writes the network config. */
async function startEtcdAndNodes(
  opts: DemoOptions,
  state: DemoState,
  timeout: number,
): Promise<{ netns: string; publicIP: string }[]> {
  opts.progress(`etcd: starting in the underlay namespace at ${ETCD_URL}`);
  const etcdDir = `${DEMO_DIR}/etcd`;
  const etcdPid = spawnDetached(UNDERLAY, [
    "etcd",
    "--name=demo",
    `--data-dir=${etcdDir}`,
    `--listen-client-urls=${ETCD_URL}`,
    `--advertise-client-urls=${ETCD_URL}`,
    `--listen-peer-urls=http://${ETCD_IP}:2380`,
    `--initial-advertise-peer-urls=http://${ETCD_IP}:2380`,
    `--initial-cluster=demo=http://${ETCD_IP}:2380`,
  ], `${DEMO_DIR}/logs/etcd.log`);
  state.pids.push({ pid: etcdPid, what: "etcd" });
  saveState(state);

  const nodes: { netns: string; publicIP: string }[] = [];
  for (let i = 1; i <= opts.nodes; i++) {
    opts.progress(`node n${i}: namespace, eth0 on the underlay`);
    nodes.push(buildNode(state, i));
  }

  // The root namespace cannot reach the underlay: talk to etcd from inside it.
  await waitFor("etcd", timeout, async () => {
    const r = await runIn(UNDERLAY, ["etcdctl", `--endpoints=${ETCD_URL}`, "endpoint", "health"]);
    return r.code === 0 ? true : undefined;
  });
  const config = JSON.stringify({ Network: CLUSTER_NETWORK, Backend: { Type: opts.backend } });
  const put = await runIn(UNDERLAY, [
    "etcdctl",
    `--endpoints=${ETCD_URL}`,
    "put",
    "/coreos.com/network/config",
    config,
  ], {
    env: { ETCDCTL_API: "3", PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin" },
  });
  if (put.code !== 0) throw new Error(`writing the network config failed: ${put.stderr}`);
  opts.progress(`network config: ${config}`);
  return nodes;
}

/** Starts node `i`'s agent and records it in the state. */
function startAgent(
  opts: DemoOptions,
  state: DemoState,
  n: { netns: string; publicIP: string },
  i: number,
): void {
  const dir = `${DEMO_DIR}/n${i}`;
  Deno.mkdirSync(dir, { recursive: true });
  const node: DemoNode = {
    name: `n${i}`,
    netns: n.netns,
    publicIP: n.publicIP,
    subnet: "",
    subnetFile: `${dir}/subnet.env`,
    healthPort: 8471,
    agentPid: 0,
    pods: [],
  };
  opts.progress(`node ${node.name}: starting weft agent (${opts.backend})`);
  const agentPid = spawnDetached(node.netns, [
    ...selfCommand(),
    "agent",
    `--etcd-endpoints=${ETCD_URL}`,
    "--iface=eth0",
    `--subnet-file=${node.subnetFile}`,
    "--ip-masq",
    "--healthz-ip=127.0.0.1",
    `--healthz-port=${node.healthPort}`,
  ], `${DEMO_DIR}/logs/agent-${node.name}.log`);
  node.agentPid = agentPid;
  state.pids.push({ pid: agentPid, what: `agent ${node.name}` });
  state.nodes.push(node);
  saveState(state);
}

/** Builds the demo cluster (after removing any leftovers) and returns its state. */
export async function demoUp(opts: DemoOptions): Promise<DemoState> {
  const timeout = opts.timeoutMs ?? 60_000;
  const leftovers = await demoDown();
  if (leftovers.namespaces || leftovers.processes) {
    opts.progress(
      `removed leftovers of an earlier demo (${leftovers.namespaces} namespaces, ${leftovers.processes} processes)`,
    );
  }
  Deno.mkdirSync(`${DEMO_DIR}/logs`, { recursive: true });
  const state: DemoState = { backend: opts.backend, etcd: ETCD_URL, namespaces: [], pids: [], nodes: [] };
  saveState(state);

  opts.progress("underlay: bridge br0 in its own namespace");
  buildUnderlay(state);

  const nodes = await startEtcdAndNodes(opts, state, timeout);

  for (const [k, n] of nodes.entries()) startAgent(opts, state, n, k + 1);

  for (const node of state.nodes) {
    const env = await waitFor(`agent ${node.name} to write ${node.subnetFile}`, timeout, () => {
      try {
        return Promise.resolve(readSubnetEnv(node.subnetFile));
      } catch {
        return Promise.resolve(undefined);
      }
    });
    node.subnet = env.subnet ? formatNet(env.subnet) : "";
    opts.progress(`node ${node.name}: lease ${node.subnet}`);
  }
  saveState(state);

  for (const node of state.nodes) {
    for (let j = 1; j <= opts.pods; j++) {
      const pod = await addPod(node, `${DEMO_DIR}/${node.name}`, j, state);
      node.pods.push(pod);
      opts.progress(`pod ${pod.name}: ${pod.ip} (CNI ADD through weft)`);
      saveState(state);
    }
  }
  return state;
}

/** One cell of the ping matrix. */
export interface PingResult {
  /** From pod. */
  from: string;
  /** To pod. */
  to: string;
  /** Whether a reply came back. */
  ok: boolean;
  /** Average round trip, ms. */
  rttMs?: number;
}

/** Pings every pod from every other pod (3 tries each, so a first ARP miss does not count as a loss). */
export async function pingMatrix(state: DemoState): Promise<PingResult[]> {
  const pods = state.nodes.flatMap((n) => n.pods);
  const jobs: Promise<PingResult>[] = [];
  for (const a of pods) {
    for (const b of pods) {
      if (a === b) continue;
      jobs.push(
        runIn(a.netns, ["ping", "-c", "3", "-i", "0.2", "-W", "2", b.ip]).then((r) => {
          const m = r.stdout.match(/= [\d.]+\/([\d.]+)\//);
          const res: PingResult = { from: a.name, to: b.name, ok: / [1-9]\d* received/.test(r.stdout) };
          if (m) res.rttMs = Number(m[1]);
          return res;
        }),
      );
    }
  }
  return await Promise.all(jobs);
}

/** Whether each node's agent answers its health endpoint (via `weft status` inside the node). */
export async function agentsReady(state: DemoState): Promise<Map<string, boolean>> {
  const out = new Map<string, boolean>();
  for (const n of state.nodes) out.set(n.name, await readyz(n));
  return out;
}
