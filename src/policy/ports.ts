/**
 * NetworkPolicy `ports` entries, checked: protocol TCP (default), UDP or SCTP; a port number, a range
 * `port..endPort`, a container port name, or none (every port of the protocol). What the API would
 * reject or weft cannot enforce is reported and allows nothing.
 *
 * @module
 */
import { PROTOS } from "./cluster_index.ts";
import type { Proto } from "./rule_set.ts";
import type { NetworkPolicyPort } from "./types.ts";

/** One checked port entry. */
export type PortSpec =
  | { kind: "range"; proto: Proto; first?: number; last?: number }
  | { kind: "named"; proto: Proto; name: string };

/** Reports a problem at a path of the policy. */
export type Problem = (path: string, message: string) => void;

function validPort(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && n <= 65535;
}

function portSpec(p: NetworkPolicyPort, at: string, problem: Problem): PortSpec | undefined {
  const protoText = p.protocol ?? "TCP";
  const proto = PROTOS[protoText];
  if (!proto) {
    problem(
      `${at}.protocol`,
      `unsupported protocol ${JSON.stringify(protoText)} (TCP, UDP or SCTP): this port allows nothing`,
    );
    return undefined;
  }
  if (p.port === undefined || p.port === null) {
    if (p.endPort === undefined) return { kind: "range", proto };
    problem(`${at}.endPort`, "endPort needs a numeric port: this port allows nothing");
    return undefined;
  }
  if (typeof p.port === "string") {
    if (p.endPort === undefined) return { kind: "named", proto, name: p.port };
    problem(`${at}.endPort`, "endPort needs a numeric port, not a named one: this port allows nothing");
    return undefined;
  }
  if (!validPort(p.port)) {
    problem(`${at}.port`, `port ${p.port} is not in 1-65535: this port allows nothing`);
    return undefined;
  }
  const last = p.endPort ?? p.port;
  if (!validPort(last) || last < p.port) {
    problem(`${at}.endPort`, `endPort ${p.endPort} must be in ${p.port}-65535: this port allows nothing`);
    return undefined;
  }
  return { kind: "range", proto, first: p.port, last };
}

/** Checks a rule's `ports`: `"any"` when absent or empty, else the valid entries (maybe none). */
export function compilePorts(
  ports: NetworkPolicyPort[] | undefined,
  path: string,
  problem: Problem,
): "any" | PortSpec[] {
  if (!ports || ports.length === 0) return "any";
  const out: PortSpec[] = [];
  for (const [i, p] of ports.entries()) {
    const s = portSpec(p, `${path}[${i}]`, problem);
    if (s) out.push(s);
  }
  return out;
}
