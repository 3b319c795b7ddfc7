/**
 * What a pod gets on this node, from subnet.env: per address family the node subnet, the bridge's gateway
 * address, the cluster network its route points to. Shared by ADD (which builds it) and CHECK (which
 * compares the container against it).
 *
 * subnet.env is input like any other: a FLANNEL_SUBNET outside FLANNEL_NETWORK, of the wrong family, or
 * too small to hold a pod is refused here (code 7), before anything touches the kernel or the IPAM store.
 *
 * @module
 */
import { parseSubnetEnv, readSubnetEnv, type SubnetEnv, SubnetEnvError } from "../config/subnet_env.ts";
import { addIP, formatIP, formatNet, type IPNet, netContainsNet } from "../net/ip.ts";
import type { CniConfig } from "./config.ts";
import { isIoError } from "./io.ts";
import { CNI_ERR, CniError } from "./types.ts";

/** One address family to configure. */
export interface FamilyPlan {
  /** 4 or 6. */
  family: 4 | 6;
  /** Node subnet. */
  subnet: IPNet;
  /** Bridge address (the subnet's first host). */
  gateway: string;
  /** Cluster network (the route every pod gets via the gateway). */
  network?: IPNet;
  /** host-local range-set index (`last_reserved_ip.<range>`): position in subnet.env's order. */
  range: number;
}

/** The longest subnet prefix that still leaves a pod address besides the gateway (host-local's rules). */
const MAX_PREFIX = { 4: 30, 6: 126 } as const;

function subnetLine(net: IPNet): string {
  return `${formatIP(addIP(net.ip, 1))}/${net.prefix}`;
}

/**
 * Checks what subnet.env says (code 7 with the key and the rule when it is unusable) and returns the
 * families in flannel's order (IPv4 first).
 */
export function plansOf(env: SubnetEnv, path: string): FamilyPlan[] {
  const out: FamilyPlan[] = [];
  const keys = {
    4: ["FLANNEL_SUBNET", "FLANNEL_NETWORK"],
    6: ["FLANNEL_IPV6_SUBNET", "FLANNEL_IPV6_NETWORK"],
  } as const;
  for (
    const [family, subnet, network] of [[4, env.subnet, env.network], [
      6,
      env.ipv6Subnet,
      env.ipv6Network,
    ]] as const
  ) {
    if (!subnet) continue;
    const [sk, nk] = keys[family];
    const bad = (why: string): never => {
      throw new CniError(CNI_ERR.INVALID_CONFIG, `${path}: ${sk}=${subnetLine(subnet)} ${why}`);
    };
    if (subnet.ip.family !== family) bad(`must be an IPv${family} subnet`);
    if (subnet.prefix > MAX_PREFIX[family]) {
      bad(`leaves no address for a pod (at most /${MAX_PREFIX[family]})`);
    }
    if (network) {
      if (network.ip.family !== family) {
        throw new CniError(
          CNI_ERR.INVALID_CONFIG,
          `${path}: ${nk}=${formatNet(network)} must be IPv${family}`,
        );
      }
      if (!netContainsNet(network, subnet)) bad(`lies outside ${nk}=${formatNet(network)}`);
    }
    out.push({
      family,
      subnet,
      gateway: formatIP(addIP(subnet.ip, 1)),
      range: out.length,
      ...(network ? { network } : {}),
    });
  }
  return out;
}

/** Parses and checks subnet.env text (what the fuzz test drives; {@linkcode plansFor} reads the file). */
export function plansFromText(text: string, path: string): FamilyPlan[] {
  try {
    return plansOf(parseSubnetEnv(text, path), path);
  } catch (err) {
    if (err instanceof SubnetEnvError) throw new CniError(CNI_ERR.INVALID_CONFIG, err.message);
    throw err;
  }
}

/** What {@linkcode plansFor} returns. */
export interface NodePlan {
  /** subnet.env as read. */
  env: SubnetEnv;
  /** Its families, checked. */
  families: FamilyPlan[];
}

/**
 * Reads subnet.env for CNI. Missing or incomplete is code 11, "try again later" (the agent is not ready
 * yet); unreadable for another reason (permissions, a directory) is code 5; a malformed or unusable value
 * is code 7.
 */
export function plansFor(cfg: CniConfig): NodePlan {
  let env: SubnetEnv;
  try {
    env = readSubnetEnv(cfg.subnetFile);
  } catch (err) {
    if (!(err instanceof SubnetEnvError)) throw err;
    const cause = err.cause;
    if (cause === undefined || cause instanceof Deno.errors.NotFound) {
      // Missing or without a subnet: the agent has not written it yet.
      throw new CniError(CNI_ERR.TRY_AGAIN_LATER, `the weft agent is not ready on this node: ${err.message}`);
    }
    if (isIoError(cause)) throw new CniError(CNI_ERR.IO, `cannot read ${cfg.subnetFile}: ${cause.message}`);
    throw new CniError(CNI_ERR.INVALID_CONFIG, err.message); // a malformed value, named by the message
  }
  return { env, families: plansOf(env, cfg.subnetFile) };
}

/** The route destinations a pod gets for `f`: the cluster network, plus the default route if asked. */
export function podRoutes(cfg: CniConfig, f: FamilyPlan): string[] {
  const out = f.network ? [formatNet(f.network)] : [];
  if (cfg.isDefaultGateway) out.push(f.family === 4 ? "0.0.0.0/0" : "::/0");
  return out;
}
