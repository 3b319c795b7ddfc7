/**
 * The pods CNI ADD registered with the agent (src/cni/pod_registration.ts sends them over the agent's
 * socket before ADD returns): their addresses, namespace and name, known before kubelet writes the pod's
 * `status.podIP` to the API. The compiler takes a registered pod's addresses from here; a registration
 * whose pod the agent has not seen yet keeps its addresses held closed.
 *
 * A registration ends when the API has caught up (the pod's status shows those addresses), when the pod
 * it named was seen and is gone, when a newer registration takes its address or pod, on CNI DEL of its
 * container, or after {@linkcode REGISTRATION_TTL_MS} (by then the API decides alone).
 *
 * @module
 */
import { formatIP, type IPNet, netContains, tryParseIP } from "../net/ip.ts";
import type { Registration } from "./cluster_index.ts";
import type { Pod } from "./types.ts";

/** How long an unresolved registration is kept. */
export const REGISTRATION_TTL_MS = 10 * 60_000;

/** What CNI ADD sends (the `register-pod` request's `pod`). */
export interface PodRegistrationRequest {
  /** CNI_ARGS K8S_POD_NAMESPACE. */
  namespace?: string;
  /** CNI_ARGS K8S_POD_NAME. */
  name?: string;
  /** CNI_CONTAINERID. */
  containerId: string;
  /** The addresses IPAM gave the pod. */
  ips: string[];
}

/** Why a registration was refused. */
export class RegistrationError extends Error {
  /** Creates the error. */
  constructor(message: string) {
    super(message);
    this.name = "RegistrationError";
  }
}

interface Entry extends Registration {
  containerId: string;
  /** The pod was seen in the API while registered (its later absence means: deleted). */
  seen: boolean;
}

/** The registrations of this node. */
export class PodRegistry {
  #entries: Entry[] = [];
  /** Registrations accepted since start. */
  total = 0;

  /**
   * Checks and records a registration (addresses in canonical form, inside `podNets` when given);
   * returns it. A registration of the same container, pod or address replaces the older one.
   */
  add(req: PodRegistrationRequest, podNets: readonly IPNet[], now = Date.now()): Registration {
    if (typeof req?.containerId !== "string" || !Array.isArray(req.ips) || req.ips.length === 0) {
      throw new RegistrationError("a registration needs containerId and ips");
    }
    const ips: string[] = [];
    for (const t of req.ips.slice(0, 2)) {
      const ip = typeof t === "string" ? tryParseIP(t.replace(/\/\d+$/, "")) : undefined;
      if (!ip) throw new RegistrationError(`${JSON.stringify(t)} is not an address`);
      if (podNets.length && !podNets.some((n) => netContains(n, ip))) {
        throw new RegistrationError(`${formatIP(ip)} is not in this node's pod subnets`);
      }
      ips.push(formatIP(ip));
    }
    const str = (v: unknown) => (typeof v === "string" && v && v.length <= 253 ? v : undefined);
    const e: Entry = {
      ips,
      namespace: str(req.namespace),
      name: str(req.name),
      at: now,
      containerId: req.containerId,
      seen: false,
    };
    const pod = e.namespace && e.name ? `${e.namespace}/${e.name}` : undefined;
    this.#entries = this.#entries.filter((x) =>
      x.containerId !== e.containerId && !x.ips.some((ip) => ips.includes(ip)) &&
      !(pod && `${x.namespace}/${x.name}` === pod)
    );
    this.#entries.push(e);
    this.total++;
    return e;
  }

  /** Ends the registration of a container (CNI DEL). */
  remove(containerId: string): boolean {
    const n = this.#entries.length;
    this.#entries = this.#entries.filter((x) => x.containerId !== containerId);
    return this.#entries.length !== n;
  }

  /** The registrations in force. */
  values(): Registration[] {
    return [...this.#entries];
  }

  /** How many are in force. */
  get size(): number {
    return this.#entries.length;
  }

  /**
   * Ends what the API has caught up with (see the module doc), given the pods the API knows by
   * `namespace/name`.
   */
  prune(pods: ReadonlyMap<string, Pod>, now = Date.now()): void {
    this.#entries = this.#entries.filter((e) => {
      if (now - e.at > REGISTRATION_TTL_MS) return false;
      if (!e.namespace || !e.name) return true;
      const p = pods.get(`${e.namespace}/${e.name}`);
      if (!p) return !e.seen;
      e.seen = true;
      const status = (p.status?.podIPs?.map((x) => x.ip) ?? [p.status?.podIP]).filter(Boolean) as string[];
      const canon = status.map((t) => tryParseIP(t)).filter((x) => !!x).map((x) => formatIP(x!));
      return !(canon.length && e.ips.every((ip) => canon.includes(ip)));
    });
  }
}
