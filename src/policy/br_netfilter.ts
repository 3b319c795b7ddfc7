/**
 * br_netfilter's switches: with `net.bridge.bridge-nf-call-iptables` (and `…-ip6tables`) on, IP packets
 * bridged between two pods of one node pass the inet hooks — and so weft's policy table — with
 * connection tracking. They are per network namespace; kube-proxy needs them on too.
 *
 * @module
 */

const KEYS = ["bridge-nf-call-iptables", "bridge-nf-call-ip6tables"];
const DIR = "/proc/sys/net/bridge";

/** br_netfilter is not loaded (no /proc/sys/net/bridge in this namespace). */
export class BridgeNetfilterError extends Error {
  /** Creates the error. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "BridgeNetfilterError";
  }
}

/**
 * Turns both switches on in the calling thread's namespace where they are off; returns the keys it
 * changed. Throws {@linkcode BridgeNetfilterError} when br_netfilter is not loaded.
 */
export function ensureBridgeNetfilter(): string[] {
  const changed: string[] = [];
  for (const k of KEYS) {
    const path = `${DIR}/${k}`;
    let now: string;
    try {
      now = Deno.readTextFileSync(path).trim();
    } catch (err) {
      throw new BridgeNetfilterError(
        `network policy needs br_netfilter (${path} is missing): run 'modprobe br_netfilter'`,
        { cause: err },
      );
    }
    if (now !== "1") {
      Deno.writeTextFileSync(path, "1");
      changed.push(`net.bridge.${k}`);
    }
  }
  return changed;
}
