/**
 * The meeting point of CNI ADD's pod registrations and the policy part: {@linkcode RegistrationSlot} is
 * made with the flags, before the agent's CNI server starts, and bound to the policy part once it
 * exists (src/agent/network_policy.ts). Kept apart, and light, so the CLI loads it without the policy
 * code.
 *
 * @module
 */
import type { RegistrationState } from "../policy/enforcer.ts";
import type { PodRegistrationRequest } from "../policy/registry.ts";

/** The answer to a pod registration (the `register-pod` reply, src/cni/pod_registration.ts). */
export type RegistrationReply =
  | { policy: "off" }
  | { policy: "on"; state: RegistrationState | "starting"; ips?: string[] }
  | { refused: string }
  | { error: string };

/** What a registration carries besides the pod (the plugin's view of its own configuration). */
export interface RegistrationRequest extends PodRegistrationRequest {
  /** The plugin masquerades this pod's traffic leaving the node (`ipMasq` in effect). */
  masquerades?: boolean;
}

/**
 * Where the agent's CNI server sends pod registrations: made with the flags, bound to the policy part
 * once it exists. A registration that arrives before waits for it (a few seconds at most: the agent is
 * starting), then is answered `starting` — the previous run's table holds unknown pods meanwhile.
 */
export class RegistrationSlot {
  #handler: ((r: RegistrationRequest) => Promise<RegistrationReply>) | undefined;
  #bound: (() => void)[] = [];

  /** @param waitMs how long an early registration waits for the policy part */
  constructor(private readonly waitMs = 5000) {}

  /** Binds the policy part's handler. */
  bind(handler: (r: RegistrationRequest) => Promise<RegistrationReply>): void {
    this.#handler = handler;
    for (const f of this.#bound.splice(0)) f();
  }

  /** Answers one registration. */
  async handle(r: RegistrationRequest): Promise<RegistrationReply> {
    if (!this.#handler) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await new Promise<void>((res) => {
        this.#bound.push(res);
        timer = setTimeout(res, this.waitMs);
      });
      clearTimeout(timer);
    }
    return this.#handler ? await this.#handler(r) : { policy: "on", state: "starting" };
  }
}

/**
 * Why a pod must not be added while policy is enforced: its traffic to other nodes would reach them
 * masqueraded, and their ingress rules would judge this node's address instead of the pod's.
 */
export const MASQUERADE_REFUSAL =
  "this node enforces NetworkPolicy (weft agent --network-policy), and this CNI configuration " +
  "masquerades pod traffic leaving the node (ipMasq: true): other nodes' ingress policies would see " +
  "the node's address instead of the pod's. Remove ipMasq from the CNI configuration (the agent " +
  "masquerades with --ip-masq, leaving pod-to-pod traffic alone)";
