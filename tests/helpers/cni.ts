/**
 * Running weft's CNI mode the way kubelet does: `deno run -A main.ts` (the entry point the binary is
 * built from) with the CNI_* environment and the config on stdin, started inside a node namespace with
 * `ip netns exec`; stdout parsed as JSON. Plus {@linkcode cniLab}: a node namespace with subnet.env and
 * the IPAM/flannel data folders in a temp dir, and throw-away pod namespaces, all removed on dispose.
 *
 * @module
 */
import { netnsCreate, netnsDelete } from "../../ffi/mod.ts";
import { uniqueNetnsName } from "./names.ts";

/** main.ts of this checkout. */
export const MAIN = new URL("../../main.ts", import.meta.url).pathname;

/** What one CNI call returned. */
export interface CniCall {
  /** Exit code. */
  code: number;
  /** Parsed stdout (undefined when empty). */
  out: Record<string, unknown> | undefined;
  /** Raw stdout. */
  stdout: string;
  /** stderr (logs). */
  stderr: string;
  /** Wall time of the call, ms. */
  ms: number;
}

/** Env for one call. */
export interface CniCallEnv {
  /** CNI_COMMAND. */
  command: string;
  /** CNI_CONTAINERID. */
  containerId?: string | undefined;
  /** CNI_NETNS. */
  netns?: string | undefined;
  /** CNI_IFNAME. */
  ifname?: string | undefined;
  /** CNI_ARGS. */
  args?: string;
  /** Anything else (or overrides). */
  extra?: Record<string, string>;
}

/** Builds the CNI environment for a call (of the test's own environment only PATH, HOME, DENO_DIR). */
export function cniEnv(e: CniCallEnv): Record<string, string> {
  const env: Record<string, string> = {
    PATH: Deno.env.get("PATH") ?? "/usr/bin:/bin",
    CNI_COMMAND: e.command,
    CNI_PATH: "/opt/cni/bin:/usr/lib/cni",
  };
  if (e.containerId !== undefined) env.CNI_CONTAINERID = e.containerId;
  if (e.netns !== undefined) env.CNI_NETNS = e.netns;
  if (e.ifname !== undefined) env.CNI_IFNAME = e.ifname;
  if (e.args !== undefined) env.CNI_ARGS = e.args;
  // libcni passes the runtime's own environment through; HOME/DENO_DIR keep deno's module cache.
  for (const k of ["HOME", "DENO_DIR"]) {
    const v = Deno.env.get(k);
    if (v) env[k] = v;
  }
  return { ...env, ...(e.extra ?? {}) };
}

/** The command line that runs weft's CNI mode inside `node`. */
export function cniCommand(node: string, plugin: string[] = [Deno.execPath(), "run", "-A", MAIN]): string[] {
  return ["ip", "netns", "exec", node, ...plugin];
}

/** Spawns one CNI call in node namespace `node` (for tests that need the child, e.g. to kill it). */
export function spawnCni(
  node: string,
  e: CniCallEnv,
  stdin: string | Record<string, unknown>,
  plugin?: string[],
): Deno.ChildProcess {
  const [cmd, ...args] = cniCommand(node, plugin);
  const child = new Deno.Command(cmd!, {
    args,
    env: cniEnv(e),
    clearEnv: true,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const w = child.stdin.getWriter();
  w.write(new TextEncoder().encode(typeof stdin === "string" ? stdin : JSON.stringify(stdin)))
    .then(() => w.close())
    .catch(() => {/* the child died before reading: the test sees it in the exit code */});
  return child;
}

/** Runs one CNI call in node namespace `node` (weft's, or `plugin` given as a command line). */
export async function cni(
  node: string,
  e: CniCallEnv,
  stdin: string | Record<string, unknown>,
  plugin?: string[],
): Promise<CniCall> {
  const t0 = performance.now();
  const out = await spawnCni(node, e, stdin, plugin).output();
  const ms = performance.now() - t0;
  const dec = new TextDecoder();
  const stdout = dec.decode(out.stdout);
  let parsed: Record<string, unknown> | undefined;
  if (stdout.trim()) {
    try {
      parsed = JSON.parse(stdout);
    } catch {
      throw new Error(`CNI ${e.command} printed something that is not JSON: ${stdout}`);
    }
  }
  return { code: out.code, out: parsed, stdout, stderr: dec.decode(out.stderr), ms };
}

/** Runs a command inside a namespace with `ip netns exec`. */
export async function nsExec(ns: string, cmd: string[]): Promise<{ code: number; stdout: string }> {
  const out = await new Deno.Command("ip", { args: ["netns", "exec", ns, ...cmd], stderr: "piped" }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout) + dec.decode(out.stderr) };
}

/** Where {@linkcode flannelConf}'s plugin entry reads and keeps its files. */
export interface FlannelConfOptions {
  /** subnet.env the plugin reads. */
  subnetFile: string;
  /** flannel's saved configs (`dataDir`). */
  dataDir: string;
  /** The IPAM store (`delegate.ipam.dataDir`). */
  ipamDir: string;
  /** `delegate.hairpinMode`, as kube-flannel's conflist sets it. */
  hairpin?: boolean;
}

/** kube-flannel's plugin entry (network `cbr0`, type `flannel`, default gateway) at CNI `version`. */
export function flannelConf(version: string, o: FlannelConfOptions): Record<string, unknown> {
  return {
    cniVersion: version,
    name: "cbr0",
    type: "flannel",
    subnetFile: o.subnetFile,
    dataDir: o.dataDir,
    delegate: {
      ...(o.hairpin ? { hairpinMode: true } : {}),
      isDefaultGateway: true,
      ipam: { dataDir: o.ipamDir },
    },
  };
}

/** A node namespace with subnet.env and CNI data folders in a temp dir, plus pod namespaces. */
export interface CniLab extends AsyncDisposable {
  /** Node namespace name. */
  node: string;
  /** Temp dir (subnet.env, `networks/`, `flannel/`). */
  dir: string;
  /** Node subnet prefix, e.g. `10.244.7` (the subnet is `.0/24`, the gateway `.1`). */
  net: string;
  /** kube-flannel's plugin entry for this lab at `version`, with `extra` merged at top level. */
  conf(version: string, extra?: Record<string, unknown>): Record<string, unknown>;
  /** A fresh pod namespace (removed on dispose); returns its /run/netns path. */
  pod(): string;
  /** Addresses allocated in the lab's IPAM store (file names). */
  allocated(network?: string): string[];
}

/** Options of {@linkcode cniLab}. */
export interface CniLabOptions {
  /** First three octets of the node's /24, default `10.244.7`. */
  net?: string;
  /** Extra subnet.env lines (e.g. IPv6). */
  subnetEnvExtra?: string;
  /** FLANNEL_IPMASQ, default true (the agent masquerades, the plugin does not). */
  agentMasq?: boolean;
}

/** Creates a lab; `await using` it. */
export async function cniLab(opts: CniLabOptions = {}): Promise<CniLab> {
  const net = opts.net ?? "10.244.7";
  const node = uniqueNetnsName("cn");
  const dir = await Deno.makeTempDir({ prefix: "weft-cni-" });
  netnsCreate(node);
  await Deno.writeTextFile(
    `${dir}/subnet.env`,
    `FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=${net}.1/24\n${opts.subnetEnvExtra ?? ""}` +
      `FLANNEL_MTU=1450\nFLANNEL_IPMASQ=${opts.agentMasq ?? true}\n`,
  );
  const pods: string[] = [];
  return {
    node,
    dir,
    net,
    conf: (version, extra = {}) => ({
      ...flannelConf(version, {
        subnetFile: `${dir}/subnet.env`,
        dataDir: `${dir}/flannel`,
        ipamDir: `${dir}/networks`,
        hairpin: true,
      }),
      ...extra,
    }),
    pod() {
      const p = uniqueNetnsName("pod");
      netnsCreate(p);
      pods.push(p);
      return `/run/netns/${p}`;
    },
    allocated(network = "cbr0") {
      try {
        return [...Deno.readDirSync(`${dir}/networks/${network}`)]
          .map((e) => e.name)
          .filter((n) => /^[0-9a-f]*[.:]/.test(n) && !n.startsWith("last_reserved_ip"))
          .sort();
      } catch {
        return [];
      }
    },
    async [Symbol.asyncDispose]() {
      for (const p of pods) netnsDelete(p);
      netnsDelete(node);
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/** The agent's CNI server of this checkout, run on its own (`deno run -A … <socket>`). */
export const CNI_SERVER = new URL("../../src/cni/agent_server.ts", import.meta.url).pathname;

/**
 * Starts a CNI server (`server`: this checkout's, or another build's file) in namespace `ns`, optionally
 * behind a shell prefix, and waits until it listens (its socket gets mode 0600 right after listen()).
 */
export async function startCniServer(
  ns: string,
  sock: string,
  opts: { wrap?: string[]; server?: string } = {},
): Promise<Deno.ChildProcess> {
  const child = new Deno.Command("ip", {
    args: [
      "netns",
      "exec",
      ns,
      ...(opts.wrap ?? []),
      Deno.execPath(),
      "run",
      "-A",
      opts.server ?? CNI_SERVER,
      sock,
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  for (let i = 0; i < 600; i++) { // 30 s at most
    try {
      if (((Deno.statSync(sock).mode ?? 0) & 0o777) === 0o600) return child;
    } catch { /* not yet */ }
    await new Promise((r) => setTimeout(r, 50));
  }
  child.kill("SIGKILL");
  throw new Error(`the CNI server did not start: ${new TextDecoder().decode((await child.output()).stderr)}`);
}

/** Stops a server started by {@linkcode startCniServer}. */
export async function stopCniServer(child: Deno.ChildProcess): Promise<void> {
  try {
    child.kill("SIGTERM");
  } catch { /* gone */ }
  await child.status;
  await child.stderr.cancel().catch(() => {});
}

/** The pid in a call's log line (`weft-cni[PID]`): the server's when it served the call. */
export function loggedPid(r: CniCall): number {
  const m = /weft-cni\[(\d+)\]/.exec(r.stderr);
  if (!m) throw new Error(`no log line in: ${r.stderr}`);
  return Number(m[1]);
}
