/**
 * flannel's `dataDir` behaviour: on ADD the plugin saves the bridge + host-local config it rendered under
 * `<dataDir>/<containerID>` (0600, folder 0700) and on DEL replays that file, not today's config, then
 * removes it. weft writes the very document flannel would render, so the two stay interchangeable on a
 * node: flannel's plugin can DEL a pod weft added (it hands the file to `bridge`), and weft can DEL a pod
 * flannel added (it reads the bridge, network name and IPAM folder from the file).
 *
 * weft adds one key of its own, `weftAttachment` ({@linkcode AttachmentRecord}: the interface, its host
 * veth and its addresses), which bridge and host-local ignore. It lets DEL find exactly what ADD made
 * without scanning the whole IPAM store, and tells DEL that a missing host veth really is gone (the pair
 * was weft's, with a name derived from the container) rather than a foreign one it cannot see.
 *
 * @module
 */
import { formatNet } from "../net/ip.ts";
import type { SubnetEnv } from "../config/subnet_env.ts";
import { DEFAULT_IPAM_DIR, safeName } from "../ipam/store.ts";
import type { CniConfig } from "./config.ts";

/** The key under which weft records its attachment in the saved config. */
export const RECORD_KEY = "weftAttachment";

/** What weft's ADD made for one (container, ifname). */
export interface AttachmentRecord {
  /** CNI_IFNAME. */
  ifname: string;
  /** The node-side veth. */
  hostVeth: string;
  /** Allocated addresses, without prefix. */
  ips: string[];
}

/** What DEL needs from a saved config. */
export interface SavedConf {
  /** Network name (IPAM store folder). */
  name: string;
  /** Bridge name. */
  bridge: string;
  /** IPAM store root. */
  ipamDataDir: string;
  /** Whether ADD installed per-pod masquerading. */
  ipMasq: boolean;
  /** weft's record of the attachment; absent in flannel's files (and in malformed ones). */
  record?: AttachmentRecord;
}

/** Path of the saved config of a container. */
export function savedConfPath(dataDir: string, containerId: string): string {
  return `${dataDir}/${safeName("container ID", containerId)}`;
}

/** The delegate config flannel's plugin would render for `cfg` and subnet.env `env`. */
export function renderDelegate(
  cfg: CniConfig,
  env: SubnetEnv,
  mtu: number,
  ipMasq: boolean,
): Record<string, unknown> {
  const ranges: { subnet: string }[][] = [];
  const routes: { dst: string }[] = [];
  if (env.subnet) ranges.push([{ subnet: formatNet(env.subnet) }]);
  if (env.ipv6Subnet) ranges.push([{ subnet: formatNet(env.ipv6Subnet) }]);
  if (env.network) routes.push({ dst: formatNet(env.network) });
  if (env.ipv6Network) routes.push({ dst: formatNet(env.ipv6Network) });
  const userIpam = (cfg.delegate.ipam ?? {}) as Record<string, unknown>;
  const ipam: Record<string, unknown> = { ...userIpam, type: "host-local", ranges, routes };
  if (cfg.ipamDataDir !== DEFAULT_IPAM_DIR) ipam.dataDir = cfg.ipamDataDir;
  return {
    ...cfg.delegate,
    name: cfg.name,
    type: "bridge",
    cniVersion: cfg.cniVersion,
    bridge: cfg.bridge,
    mtu,
    ipMasq,
    isGateway: true,
    isDefaultGateway: cfg.isDefaultGateway,
    hairpinMode: cfg.hairpinMode,
    ipam,
  };
}

/**
 * Writes the saved config (0600 in a 0700 folder), as flannel does before delegating, with weft's
 * `record` of the attachment when given.
 */
export function saveConf(
  dataDir: string,
  containerId: string,
  doc: Record<string, unknown>,
  record?: AttachmentRecord,
): void {
  Deno.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const out = record ? { ...doc, [RECORD_KEY]: record } : doc;
  Deno.writeTextFileSync(savedConfPath(dataDir, containerId), JSON.stringify(out), { mode: 0o600 });
}

function recordOf(v: unknown): AttachmentRecord | undefined {
  if (!v || typeof v !== "object") return undefined;
  const r = v as Record<string, unknown>;
  if (typeof r.ifname !== "string" || typeof r.hostVeth !== "string" || !Array.isArray(r.ips)) {
    return undefined;
  }
  const ips = r.ips.filter((ip): ip is string => typeof ip === "string");
  return ips.length === r.ips.length ? { ifname: r.ifname, hostVeth: r.hostVeth, ips } : undefined;
}

/** Reads a saved config (weft's or flannel's); `undefined` when there is none or it is unreadable. */
export function loadConf(dataDir: string, containerId: string): SavedConf | undefined {
  let doc: Record<string, unknown>;
  try {
    doc = JSON.parse(Deno.readTextFileSync(savedConfPath(dataDir, containerId)));
  } catch {
    return undefined; // flannel, too, carries on when the file is missing or corrupt
  }
  if (!doc || typeof doc !== "object" || Array.isArray(doc)) return undefined;
  const ipam = (doc.ipam && typeof doc.ipam === "object" ? doc.ipam : {}) as Record<string, unknown>;
  const str = (v: unknown, dflt: string) => (typeof v === "string" && v ? v : dflt);
  const out: SavedConf = {
    name: str(doc.name, ""),
    bridge: str(doc.bridge, "cni0"),
    ipamDataDir: str(ipam.dataDir, DEFAULT_IPAM_DIR),
    ipMasq: doc.ipMasq === true,
  };
  const record = recordOf(doc[RECORD_KEY]);
  if (record) out.record = record;
  return out;
}

/** Removes a saved config; absent is fine. */
export function removeConf(dataDir: string, containerId: string): void {
  try {
    Deno.removeSync(savedConfPath(dataDir, containerId));
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}
