/**
 * Namespace "labs": nodes as network namespaces joined by an underlay bridge that lives in its own
 * namespace (never the root one), and processes run inside them. Used by `weft demo` and by the tests.
 *
 * Namespaces are made through the FFI layer (ffi/netns.ts); processes are spawned with the JS thread
 * switched into the namespace, so they start inside it.
 *
 * @module
 */
import { Netlink, netnsCreate, netnsDelete, netnsPath, withNetns } from "../../ffi/mod.ts";

/** One node on the underlay. */
export interface LabNode {
  /** Namespace name. */
  netns: string;
  /** Underlay address (no prefix). */
  ip: string;
  /** The node's underlay interface name. */
  iface: string;
}

/** Creates the underlay namespace with bridge `br0` holding `gatewayCidr` (e.g. `192.168.77.1/24`). */
export function createUnderlay(netns: string, gatewayCidr: string): void {
  netnsCreate(netns);
  using nl = Netlink.open({ netns });
  nl.linkSetUp("lo");
  const br = nl.linkAddBridge({ name: "br0" });
  nl.linkSetUp(br.index);
  nl.addrReplace(br.index, gatewayCidr);
}

/**
 * Creates node namespace `netns` with `eth0` (a veth whose peer `port` is a port of the underlay's br0)
 * holding `cidr`; lo up, IPv4 forwarding on.
 */
export function addNode(underlay: string, netns: string, port: string, cidr: string, mtu = 1500): LabNode {
  netnsCreate(netns);
  {
    using ul = Netlink.open({ netns: underlay });
    const p = ul.linkAddVeth({ name: port, peerName: "eth0", peerNetns: netnsPath(netns), mtu });
    ul.linkSetMaster(p.index, "br0");
    ul.linkSetUp(p.index);
  }
  using nl = Netlink.open({ netns });
  nl.linkSetUp("lo");
  nl.addrReplace("eth0", cidr);
  nl.linkSetUp("eth0");
  setSysctl(netns, "net/ipv4/ip_forward", "1");
  return { netns, ip: cidr.split("/")[0]!, iface: "eth0" };
}

/** Writes a sysctl (path under /proc/sys) inside a namespace. */
export function setSysctl(netns: string, key: string, value: string): void {
  withNetns(netns, () => Deno.writeTextFileSync(`/proc/sys/${key.replaceAll(".", "/")}`, value));
}

/** Deletes namespaces (absent ones are fine). */
export function deleteNamespaces(names: Iterable<string>): number {
  let n = 0;
  for (const ns of names) if (netnsDelete(ns)) n++;
  return n;
}

/** Result of {@linkcode runIn}. */
export interface RunResult {
  /** Exit code. */
  code: number;
  /** Standard output. */
  stdout: string;
  /** Standard error. */
  stderr: string;
}

/**
 * Runs a command to completion inside `netns` (or in the current namespace when `netns` is undefined),
 * feeding it `stdin` when given.
 */
export async function runIn(
  netns: string | undefined,
  cmd: string[],
  opts: { env?: Record<string, string>; stdin?: string; clearEnv?: boolean } = {},
): Promise<RunResult> {
  const spawn = () =>
    new Deno.Command(cmd[0]!, {
      args: cmd.slice(1),
      stdin: opts.stdin !== undefined ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
      ...(opts.env ? { env: opts.env } : {}),
      ...(opts.clearEnv ? { clearEnv: true } : {}),
    }).spawn();
  const child = netns === undefined ? spawn() : withNetns(netns, spawn);
  if (opts.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(opts.stdin));
    await w.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/**
 * Starts a long-running process inside `netns` with its output appended to `log`. It must be able to
 * outlive its parent (the demo), so the output goes straight to the file through `sh`'s redirection and
 * `exec` keeps the pid the process's own, rather than through a pipe that closes when the parent exits.
 */
export function spawnDetached(
  netns: string,
  cmd: string[],
  log: string,
  env?: Record<string, string>,
): number {
  const child = withNetns(netns, () =>
    new Deno.Command("/bin/sh", {
      args: ["-c", 'log="$1"; shift; exec "$@" >>"$log" 2>&1 </dev/null', "sh", log, ...cmd],
      stdin: "null",
      stdout: "null",
      stderr: "null",
      ...(env ? { env } : {}),
    }).spawn());
  child.unref();
  return child.pid;
}

/** Whether a process exists and is not a zombie. */
export function alive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3) !== "Z";
  } catch {
    return false;
  }
}

/** Stops a process: `signal` first (default SIGTERM), SIGKILL after `graceMs`. */
export async function stopPid(pid: number, signal: Deno.Signal = "SIGTERM", graceMs = 3000): Promise<void> {
  if (!alive(pid)) return;
  try {
    Deno.kill(pid, signal);
  } catch {
    return;
  }
  const end = Date.now() + graceMs;
  while (alive(pid) && Date.now() < end) await new Promise((r) => setTimeout(r, 50));
  if (alive(pid)) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch { /* gone */ }
    while (alive(pid)) await new Promise((r) => setTimeout(r, 20));
  }
}

/** Sends `signal` to a child process and waits for it to exit, escalating to SIGKILL after `graceMs`. */
export async function terminateChild(
  child: Deno.ChildProcess,
  signal: Deno.Signal = "SIGTERM",
  graceMs = 5000,
): Promise<void> {
  try {
    child.kill(signal);
  } catch { /* already gone */ }
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* gone */ }
  }, graceMs);
  await child.status;
  clearTimeout(timer);
}
