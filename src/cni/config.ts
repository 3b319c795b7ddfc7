/**
 * CNI network configuration. Two forms, the same keys:
 *
 * - kube-flannel's plugin entry, unchanged: `{"type":"flannel","delegate":{"hairpinMode":true,
 *   "isDefaultGateway":true}}` — the bridge options live in `delegate` (`hairpinMode`, `isDefaultGateway`,
 *   `mtu`, `bridge`, `ipMasq`, `ipam.dataDir`), `subnetFile` and `dataDir` at top level;
 * - the native form, `{"type":"weft", …}`, with the bridge options at top level.
 *
 * Unknown fields are ignored. Bad JSON is code 6, a bad field code 7, an unsupported version code 1.
 *
 * @module
 */
import { DEFAULT_SUBNET_FILE } from "../config/subnet_env.ts";
import { DEFAULT_IPAM_DIR } from "../ipam/store.ts";
import { isContainerId, isIfname } from "../net/names.ts";
import { CNI_ERR, CniError, SUPPORTED_VERSIONS } from "./types.ts";

/** flannel's default folder for the per-container saved config. */
export const DEFAULT_FLANNEL_DATA_DIR = "/var/lib/cni/flannel";

/** An attachment named in GC's `cni.dev/valid-attachments`. */
export interface Attachment {
  /** Container ID. */
  containerID: string;
  /** Interface name. */
  ifname: string;
}

/** A validated plugin config. */
export interface CniConfig {
  /** Requested spec version. */
  cniVersion: string;
  /** Network name (the IPAM store folder). */
  name: string;
  /** `flannel`, `weft`, or whatever name the binary was installed under. */
  type: string;
  /** subnet.env path. */
  subnetFile: string;
  /** Folder for the per-container saved config (flannel's `dataDir`). */
  dataDir: string;
  /** Bridge name. */
  bridge: string;
  /** MTU override (else FLANNEL_MTU). */
  mtu?: number;
  /** Hairpin mode on the bridge port. */
  hairpinMode: boolean;
  /** Default route via the bridge (else only the route to the cluster network). */
  isDefaultGateway: boolean;
  /** Masquerade pod traffic leaving the node subnet; absent ⇒ `!FLANNEL_IPMASQ`, as flannel does. */
  ipMasq?: boolean;
  /** IPAM store root (host-local's `ipam.dataDir`). */
  ipamDataDir: string;
  /** Optional log file (appended to, besides stderr). */
  logFile?: string;
  /** Result of the previous plugin in a chain. */
  prevResult?: Record<string, unknown>;
  /** GC: attachments to keep (`cni.dev/valid-attachments`, or the older `cni.dev/attachments`). */
  validAttachments?: Attachment[];
  /** The delegate object as given (flannel form) or `{}`, copied into the saved config. */
  delegate: Record<string, unknown>;
  /** The agent's socket when the config names one (`agentSocket`; `""`: none), else beside subnetFile. */
  agentSocket?: string;
}

type Kind = "string" | "number" | "boolean" | "object";

function field<T>(obj: Record<string, unknown>, key: string, type: Kind, where = ""): T | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== type || (type === "object" && Array.isArray(v))) {
    throw new CniError(
      CNI_ERR.INVALID_CONFIG,
      `config: ${where}${key} must be ${type === "object" ? "an" : "a"} ${type}, not ${JSON.stringify(v)}`,
    );
  }
  return v as T;
}

function decode(text: string): Record<string, unknown> {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new CniError(CNI_ERR.DECODE, `cannot decode the network configuration: ${(err as Error).message}`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new CniError(CNI_ERR.DECODE, "cannot decode the network configuration: not a JSON object");
  }
  return raw as Record<string, unknown>;
}

/** Checks `cniVersion`: required (code 7), one of {@linkcode SUPPORTED_VERSIONS} (code 1). */
export function checkVersion(o: Record<string, unknown>): string {
  const v = field<string>(o, "cniVersion", "string");
  if (!v) throw new CniError(CNI_ERR.INVALID_CONFIG, "config: cniVersion is required");
  if (!(SUPPORTED_VERSIONS as readonly string[]).includes(v)) {
    throw new CniError(
      CNI_ERR.INCOMPATIBLE_VERSION,
      `incompatible CNI version ${v}: weft supports ${SUPPORTED_VERSIONS.join(", ")}`,
    );
  }
  return v;
}

function attachments(o: Record<string, unknown>): Attachment[] | undefined {
  const key = o["cni.dev/valid-attachments"] !== undefined
    ? "cni.dev/valid-attachments"
    : "cni.dev/attachments";
  const list = o[key];
  if (list === undefined) return undefined;
  if (!Array.isArray(list)) throw new CniError(CNI_ERR.INVALID_CONFIG, `config: ${key} must be a list`);
  return list.map((a, i) => {
    const e = (a ?? {}) as Record<string, unknown>;
    if (typeof e.containerID !== "string" || typeof e.ifname !== "string") {
      throw new CniError(CNI_ERR.INVALID_CONFIG, `config: ${key}[${i}] needs containerID and ifname`);
    }
    return { containerID: e.containerID, ifname: e.ifname };
  });
}

/** Parses the config on stdin. */
export function parseCniConfig(text: string): CniConfig {
  const o = decode(text);
  const cniVersion = checkVersion(o);
  const name = field<string>(o, "name", "string") ?? "";
  if (!isContainerId(name)) {
    throw new CniError(
      CNI_ERR.INVALID_CONFIG,
      `config: name ${JSON.stringify(name)} must match [A-Za-z0-9][A-Za-z0-9_.-]*`,
    );
  }
  const type = field<string>(o, "type", "string") ?? "weft";
  // flannel form: options in `delegate`; native form: at top level. `delegate` wins where both are set.
  const delegate = field<Record<string, unknown>>(o, "delegate", "object") ?? {};
  const dtype = field<string>(delegate, "type", "string", "delegate.");
  if (dtype !== undefined && dtype !== "bridge") {
    throw new CniError(
      CNI_ERR.INVALID_CONFIG,
      `config: delegate.type ${JSON.stringify(dtype)} is not supported: weft sets up a bridge itself`,
    );
  }
  const pick = <T>(key: string, t: Kind) => field<T>(delegate, key, t, "delegate.") ?? field<T>(o, key, t);
  const ipam = pick<Record<string, unknown>>("ipam", "object") ?? {};
  const ipamType = field<string>(ipam, "type", "string", "ipam.");
  if (ipamType !== undefined && ipamType !== "host-local") {
    throw new CniError(
      CNI_ERR.INVALID_CONFIG,
      `config: ipam.type ${JSON.stringify(ipamType)} is not supported: weft allocates host-local style`,
    );
  }
  const mtu = pick<number>("mtu", "number");
  if (mtu !== undefined && (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535)) {
    throw new CniError(CNI_ERR.INVALID_CONFIG, `config: mtu ${mtu} must be an integer 68–65535`);
  }
  const bridge = pick<string>("bridge", "string") ?? "cni0";
  if (!isIfname(bridge)) {
    throw new CniError(
      CNI_ERR.INVALID_CONFIG,
      `config: bridge ${JSON.stringify(bridge)} is not a valid interface name`,
    );
  }
  const cfg: CniConfig = {
    cniVersion,
    name,
    type,
    subnetFile: field<string>(o, "subnetFile", "string") ?? DEFAULT_SUBNET_FILE,
    dataDir: field<string>(o, "dataDir", "string") ?? DEFAULT_FLANNEL_DATA_DIR,
    bridge,
    hairpinMode: pick<boolean>("hairpinMode", "boolean") ?? false,
    // The flannel form keeps the bridge plugin's default (no default route, only the cluster route); the
    // native form defaults to a default route, since a pod without one is rarely what is wanted.
    isDefaultGateway: pick<boolean>("isDefaultGateway", "boolean") ?? type !== "flannel",
    ipamDataDir: field<string>(ipam, "dataDir", "string", "ipam.") ?? DEFAULT_IPAM_DIR,
    delegate,
  };
  if (mtu !== undefined) cfg.mtu = mtu;
  const ipMasq = pick<boolean>("ipMasq", "boolean");
  if (ipMasq !== undefined) cfg.ipMasq = ipMasq;
  const logFile = field<string>(o, "logFile", "string");
  if (logFile) cfg.logFile = logFile;
  const agentSocket = field<string>(o, "agentSocket", "string");
  if (agentSocket !== undefined) cfg.agentSocket = agentSocket;
  const prev = field<Record<string, unknown>>(o, "prevResult", "object");
  if (prev) cfg.prevResult = prev;
  const valid = attachments(o);
  if (valid) cfg.validAttachments = valid;
  return cfg;
}
