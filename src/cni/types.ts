/**
 * The CNI contract: versions, error codes, errors, and result shapes per spec version.
 *
 * @module
 */

/** Spec versions weft speaks. */
export const SUPPORTED_VERSIONS = ["0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"] as const;

/** The cniVersion a config asks for, best effort (to answer errors in the caller's version). */
export function requestedVersion(stdin: string): string | undefined {
  try {
    const v = (JSON.parse(stdin) as { cniVersion?: unknown })?.cniVersion;
    return typeof v === "string" && (SUPPORTED_VERSIONS as readonly string[]).includes(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/** The answer to VERSION, in the version the config asks for (stdout, with its newline). */
export function versionAnswer(stdin: string): string {
  const v = requestedVersion(stdin) ?? "1.1.0";
  return JSON.stringify({ cniVersion: v, supportedVersions: SUPPORTED_VERSIONS }) + "\n";
}

/** Well-known error codes (CNI spec). */
export const CNI_ERR = {
  INCOMPATIBLE_VERSION: 1,
  UNSUPPORTED_FIELD: 2,
  UNKNOWN_CONTAINER: 3,
  INVALID_ENV: 4,
  IO: 5,
  DECODE: 6,
  INVALID_CONFIG: 7,
  TRY_AGAIN_LATER: 11,
  NOT_AVAILABLE: 50,
  LIMITED: 51,
  /** Plugin-specific (≥ 100): CHECK found the container's network not as ADD left it. */
  CHECK_FAILED: 100,
  /** Plugin-specific: a netlink or IPAM operation failed. */
  INTERNAL: 101,
} as const;

/** An error answered to the runtime as the spec's JSON on stdout. */
export class CniError extends Error {
  /** Creates the error. */
  constructor(readonly code: number, msg: string, readonly details?: string) {
    super(msg);
    this.name = "CniError";
  }

  /** The spec's error object. */
  toJSON(cniVersion: string): Record<string, unknown> {
    return {
      cniVersion,
      code: this.code,
      msg: this.message,
      ...(this.details ? { details: this.details } : {}),
    };
  }
}

/** An interface in a result. */
export interface ResultInterface {
  /** Name. */
  name: string;
  /** MAC. */
  mac: string;
  /** MTU (1.1.0). */
  mtu?: number;
  /** Netns path for container interfaces. */
  sandbox?: string;
}

/** An address in a result. */
export interface ResultIP {
  /** `ip/prefix`. */
  address: string;
  /** Gateway. */
  gateway?: string;
  /** Index into `interfaces` (optional in the spec). */
  interface?: number;
}

/** The (1.x-shaped) result weft builds; {@linkcode resultFor} converts it per version. */
export interface Result {
  /** Interfaces. */
  interfaces: ResultInterface[];
  /** Addresses. */
  ips: ResultIP[];
  /** Routes. */
  routes: { dst: string; gw?: string }[];
  /** DNS. */
  dns: Record<string, unknown>;
}

/** Renders `r` in the shape of spec version `v`. */
export function resultFor(v: string, r: Result): Record<string, unknown> {
  const legacy = v.startsWith("0.");
  const interfaces = r.interfaces.map((i) => {
    const o: Record<string, unknown> = { name: i.name, mac: i.mac };
    if (i.mtu !== undefined && v === "1.1.0") o.mtu = i.mtu;
    if (i.sandbox !== undefined) o.sandbox = i.sandbox;
    return o;
  });
  const ips = r.ips.map((ip) => ({
    ...(legacy ? { version: ip.address.includes(":") ? "6" : "4" } : {}),
    address: ip.address,
    ...(ip.gateway ? { gateway: ip.gateway } : {}),
    ...(ip.interface !== undefined ? { interface: ip.interface } : {}),
  }));
  return { cniVersion: v, interfaces, ips, routes: r.routes, dns: r.dns };
}

/**
 * Puts a chained plugin's `prevResult` (checked by prev_result.ts) in front of `ours`: its interfaces
 * first, our address indexes shifted past them, its addresses, routes and DNS kept.
 */
export function mergePrevResult(prev: Result | undefined, ours: Result): Result {
  if (!prev) return ours;
  const shift = prev.interfaces.length;
  return {
    interfaces: [...prev.interfaces, ...ours.interfaces],
    ips: [
      ...prev.ips,
      ...ours.ips.map((i) => i.interface === undefined ? i : { ...i, interface: i.interface + shift }),
    ],
    routes: [...prev.routes, ...ours.routes],
    dns: { ...prev.dns, ...ours.dns },
  };
}
