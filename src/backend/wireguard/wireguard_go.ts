/**
 * Running userspace WireGuard (`wireguard-go`, Debian's package) for a device when the kernel has no
 * WireGuard: the agent starts it in the foreground (`-f`), in its own session (detached), with no pipes to
 * the agent — so it outlives the agent: across an agent restart the device, its keys and its peers stay
 * and forwarding never stops. The next agent finds the device answering on its UAPI socket and adopts
 * it, then reconciles its peers like any other entries.
 *
 * Its lifetime: started when the device is missing; left running when the agent exits (like the vxlan
 * device, the datapath stays in place); started again by the next full pass if it dies (its TUN device
 * goes with it, so the device is "created" and every peer is replayed). A supervisor that kills the
 * agent's whole process group or cgroup (systemd's default KillMode=control-group) kills it too: see
 * deploy/weft.service.
 *
 * @module
 */
import { log } from "../../log.ts";
import { UapiControl } from "./uapi.ts";

const logger = log("backend", "wireguard");

/** How to run wireguard-go. */
export interface WireguardGoOptions {
  /** The binary; default `WEFT_WIREGUARD_GO` or `wireguard-go` (on PATH). */
  binary?: string;
  /** How long to wait for its UAPI socket, ms. */
  startTimeoutMs?: number;
}

/** Blocks the thread for `ms` (the backend's device calls are synchronous, like netlink's). */
function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Starts wireguard-go for device `name` (in the calling thread's network namespace) and waits until its
 * UAPI socket answers; returns its pid. Throws when it exits or does not answer in time.
 */
export function startWireguardGo(name: string, control: UapiControl, opts: WireguardGoOptions = {}): number {
  const binary = opts.binary ?? (Deno.env.get("WEFT_WIREGUARD_GO") || "wireguard-go");
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(binary, {
      args: ["-f", name],
      // No pipes: the agent may exit first, and a write to a closed pipe would kill it (SIGPIPE).
      stdin: "null",
      stdout: "null",
      stderr: "null",
      env: { LOG_LEVEL: "error", WG_PROCESS_FOREGROUND: "1" },
      detached: true,
    }).spawn();
  } catch (err) {
    throw new Error(
      `cannot run ${binary} for ${name} (the kernel has no WireGuard, so weft needs userspace WireGuard: ` +
        `apt-get install wireguard-go): ${(err as Error).message}`,
    );
  }
  child.unref();
  let exited: Deno.CommandStatus | undefined;
  child.status.then((s) => {
    exited = s;
    logger.warn("wireguard-go for {name} (pid {pid}) exited with {how}; the next full pass restarts it", {
      name,
      pid: child.pid,
      how: s.signal ? `signal ${s.signal}` : `code ${s.code}`,
    });
  });
  const deadline = Date.now() + (opts.startTimeoutMs ?? 5000);
  for (;;) {
    if (control.alive()) break;
    // The status callback only runs between tasks; a dead pid is seen through /proc at once.
    if (exited || !processAlive(child.pid)) {
      throw new Error(`wireguard-go for ${name} exited at start (is ${name} held by another process?)`);
    }
    if (Date.now() > deadline) {
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      throw new Error(`wireguard-go for ${name} did not answer on ${control.socketPath} in time`);
    }
    sleepSync(10);
  }
  logger.info("started wireguard-go for {name} (pid {pid}, userspace WireGuard)", { name, pid: child.pid });
  return child.pid;
}

function processAlive(pid: number): boolean {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    return stat[stat.lastIndexOf(")") + 2] !== "Z";
  } catch {
    return false;
  }
}
