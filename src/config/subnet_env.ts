/**
 * `/run/flannel/subnet.env`: the file the agent writes for the CNI plugin, in flannel's exact format.
 *
 * ```
 * FLANNEL_NETWORK=10.244.0.0/16
 * FLANNEL_SUBNET=10.244.3.1/24
 * FLANNEL_IPV6_NETWORK=fd00:10:244::/56     (only with IPv6)
 * FLANNEL_IPV6_SUBNET=fd00:10:244:3::1/64   (only with IPv6)
 * FLANNEL_MTU=1450
 * FLANNEL_IPMASQ=true
 * ```
 *
 * FLANNEL_SUBNET is the node subnet's first host address with the subnet's prefix (the bridge gateway).
 *
 * @module
 */
import { addIP, formatIP, formatNet, type IPNet, parseCIDR, parseNet } from "../net/ip.ts";

/** Default path, the same as flannel's. */
export const DEFAULT_SUBNET_FILE = "/run/flannel/subnet.env";

/** What subnet.env says. */
export interface SubnetEnv {
  /** The cluster network (FLANNEL_NETWORK). */
  network?: IPNet;
  /** This node's subnet (from FLANNEL_SUBNET, host bits zeroed). */
  subnet?: IPNet;
  /** The cluster IPv6 network (FLANNEL_IPV6_NETWORK). */
  ipv6Network?: IPNet;
  /** This node's IPv6 subnet (from FLANNEL_IPV6_SUBNET). */
  ipv6Subnet?: IPNet;
  /** FLANNEL_MTU. */
  mtu?: number;
  /** FLANNEL_IPMASQ: true when the agent masquerades, so the CNI plugin must not. */
  ipMasq?: boolean;
}

/** Thrown when subnet.env is missing, unreadable or incomplete. */
export class SubnetEnvError extends Error {
  /** Creates the error for `path`. */
  constructor(readonly path: string, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "SubnetEnvError";
  }
}

function subnetLine(net: IPNet): string {
  return `${formatIP(addIP(net.ip, 1))}/${net.prefix}`;
}

/** Renders subnet.env byte for byte as flanneld does. */
export function formatSubnetEnv(env: SubnetEnv): string {
  let out = "";
  if (env.network && env.subnet) {
    out += `FLANNEL_NETWORK=${formatNet(env.network)}\n`;
    out += `FLANNEL_SUBNET=${subnetLine(env.subnet)}\n`;
  }
  if (env.ipv6Network && env.ipv6Subnet) {
    out += `FLANNEL_IPV6_NETWORK=${formatNet(env.ipv6Network)}\n`;
    out += `FLANNEL_IPV6_SUBNET=${subnetLine(env.ipv6Subnet)}\n`;
  }
  out += `FLANNEL_MTU=${env.mtu ?? 1500}\n`;
  out += `FLANNEL_IPMASQ=${env.ipMasq ?? false}\n`;
  return out;
}

/** Parses subnet.env text; unknown keys are ignored, malformed values throw. */
export function parseSubnetEnv(text: string, path = DEFAULT_SUBNET_FILE): SubnetEnv {
  const env: SubnetEnv = {};
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line || line.startsWith("#")) continue;
    const eq = line.indexOf("=");
    if (eq < 0) continue;
    const key = line.slice(0, eq).trim();
    const value = line.slice(eq + 1).trim().replace(/^"(.*)"$/, "$1");
    try {
      switch (key) {
        case "FLANNEL_NETWORK":
          env.network = parseNet(value);
          break;
        case "FLANNEL_SUBNET":
          env.subnet = parseCIDR(value).net;
          break;
        case "FLANNEL_IPV6_NETWORK":
          env.ipv6Network = parseNet(value);
          break;
        case "FLANNEL_IPV6_SUBNET":
          env.ipv6Subnet = parseCIDR(value).net;
          break;
        case "FLANNEL_MTU": {
          const mtu = Number(value);
          if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535) {
            throw new Error("must be an integer 68–65535");
          }
          env.mtu = mtu;
          break;
        }
        case "FLANNEL_IPMASQ":
          if (value !== "true" && value !== "false") throw new Error("must be true or false");
          env.ipMasq = value === "true";
          break;
      }
    } catch (err) {
      throw new SubnetEnvError(path, `${path}: ${key}=${value}: ${(err as Error).message}`, { cause: err });
    }
  }
  return env;
}

/**
 * Reads subnet.env. A missing file or one without a subnet throws {@linkcode SubnetEnvError} whose
 * message says the agent is not ready (the usual cause), so CNI callers can answer "try again later".
 */
export function readSubnetEnv(path = DEFAULT_SUBNET_FILE): SubnetEnv {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (err) {
    const why = err instanceof Deno.errors.NotFound
      ? "does not exist"
      : `cannot be read (${(err as Error).message})`;
    throw new SubnetEnvError(
      path,
      `${path} ${why}: the weft/flannel agent on this node has not written it yet (is it running and holding a lease?)`,
      { cause: err },
    );
  }
  const env = parseSubnetEnv(text, path);
  if (!env.subnet && !env.ipv6Subnet) {
    throw new SubnetEnvError(
      path,
      `${path} has no FLANNEL_SUBNET or FLANNEL_IPV6_SUBNET: the agent is not ready`,
    );
  }
  if (env.subnet && !env.network) {
    throw new SubnetEnvError(path, `${path} has FLANNEL_SUBNET but no FLANNEL_NETWORK`);
  }
  return env;
}

/** Writes subnet.env atomically (temp file in the same folder, then rename), mode 0644. */
export function writeSubnetEnv(path: string, env: SubnetEnv): void {
  const slash = path.lastIndexOf("/");
  const dir = slash > 0 ? path.slice(0, slash) : ".";
  Deno.mkdirSync(dir, { recursive: true });
  const tmp = `${dir}/.${path.slice(slash + 1)}.${Deno.pid}.tmp`;
  Deno.writeTextFileSync(tmp, formatSubnetEnv(env), { mode: 0o644 });
  Deno.chmodSync(tmp, 0o644); // the umask may have narrowed the mode given at creation
  Deno.renameSync(tmp, path);
}
