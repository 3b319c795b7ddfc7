/**
 * br_netfilter's switches: with `net.bridge.bridge-nf-call-iptables` (and `…-ip6tables`) on, IP packets
 * bridged between two pods of one node pass the inet hooks — and so weft's policy table — with
 * connection tracking. They are per network namespace; kube-proxy needs them on too.
 *
 * Who sets them: whatever has the right to. Under the shipped DaemonSet that is the privileged init
 * container of deploy/kube-weft-netpol.yml (`modprobe br_netfilter`, `sysctl -w …`), because the agent's
 * own container is unprivileged and its /proc/sys is read-only; on a host install, the host's
 * configuration (`weft doctor` checks it). The agent only checks, and turns them on where it can (root
 * on the host, the tests' namespaces); where it cannot, {@linkcode checkBridgeNetfilter} says why and
 * what to do, and the agent reports it (log, `weft_policy_bridge_netfilter` 0, not ready) instead of
 * failing.
 *
 * @module
 */

const KEYS = ["bridge-nf-call-iptables", "bridge-nf-call-ip6tables"];
const DIR = "/proc/sys/net/bridge";

/** What the check found. */
export interface BridgeNetfilterState {
  /** Both switches are on (now). */
  ok: boolean;
  /** Keys this call turned on. */
  changed: string[];
  /** When not ok: what is wrong and the fix. */
  problem?: string;
}

/** br_netfilter is not loaded, or a switch is off and cannot be turned on from here. */
export class BridgeNetfilterError extends Error {
  /** Creates the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "BridgeNetfilterError";
  }
}

const FIX = "run 'modprobe br_netfilter && sysctl -w net.bridge.bridge-nf-call-iptables=1 " +
  "net.bridge.bridge-nf-call-ip6tables=1' on the host (deploy/kube-weft-netpol.yml's init container does)";

/**
 * Checks both switches in the calling thread's namespace, turning on those that are off when it may
 * (`fix`); never throws.
 */
export function checkBridgeNetfilter(fix = true): BridgeNetfilterState {
  const changed: string[] = [];
  for (const k of KEYS) {
    const path = `${DIR}/${k}`;
    let now: string;
    try {
      now = Deno.readTextFileSync(path).trim();
    } catch {
      return { ok: false, changed, problem: `br_netfilter is not loaded (${path} is missing): ${FIX}` };
    }
    if (now === "1") continue;
    if (!fix) return { ok: false, changed, problem: `net.bridge.${k} is ${now}: ${FIX}` };
    try {
      Deno.writeTextFileSync(path, "1");
      changed.push(`net.bridge.${k}`);
    } catch (err) {
      return {
        ok: false,
        changed,
        problem: `net.bridge.${k} is ${now} and cannot be set from here (${(err as Error).message}): ${FIX}`,
      };
    }
  }
  return { ok: true, changed };
}

/**
 * Turns both switches on in the calling thread's namespace where they are off; returns the keys it
 * changed. Throws {@linkcode BridgeNetfilterError} when br_netfilter is not loaded or a switch cannot
 * be set (tests and tools that must have it).
 */
export function ensureBridgeNetfilter(): string[] {
  const s = checkBridgeNetfilter(true);
  if (!s.ok) throw new BridgeNetfilterError(`network policy needs br_netfilter: ${s.problem}`);
  return s.changed;
}
