/**
 * CNI configuration: kube-flannel's plugin entry (`"type": "flannel"` with `delegate`) unchanged, or the
 * native `"type": "weft"` form with the same keys at top level; plus the CNI_* environment.
 *
 * @module
 */
import { DEFAULT_SUBNET_FILE } from "../config/subnet_env.ts";
import { DEFAULT_IPAM_DIR } from "../ipam/store.ts";
import { CNI_ERR, CniError, SUPPORTED_VERSIONS } from "./types.ts";

/** flannel's default folder for the per-container saved config. */
export const DEFAULT_FLANNEL_DATA_DIR = "/var/lib/cni/flannel";

/** A validated plugin config. */
export interface CniConfig {
  /** Requested spec version. */
  cniVersion: string;
  /** Network name (the IPAM store folder). */
  name: string;
  /** `flannel` or `weft`. */
  type: string;
  /** subnet.env path. */
  subnetFile: string;
  /** Folder for the per-container saved config (flannel's dataDir). */
  dataDir: string;
  /** Bridge name. */
  bridge: string;
  /** MTU override (else FLANNEL_MTU). */
  mtu?: number;
  /** Hairpin mode on the bridge port. */
  hairpinMode: boolean;
  /** Default route via the bridge (else a route to the cluster network only). */
  isDefaultGateway: boolean;
  /** IPAM store root. */
  ipamDataDir: string;
  /** Optional log file. */
  logFile?: string;
  /** Result of the previous plugin in a chain. */
  prevResult?: Record<string, unknown>;
  /** GC: attachments to keep. */
  validAttachments?: { containerID: string; ifname: string }[];
  /** The document as given (for the saved copy). */
  raw: Record<string, unknown>;
}

function field<T>(
  obj: Record<string, unknown>,
  key: string,
  type: "string" | "number" | "boolean",
): T | undefined {
  const v = obj[key];
  if (v === undefined || v === null) return undefined;
  // deno-lint-ignore valid-typeof -- `type` is a typeof name (see the signature)
  if (typeof v !== type) {
    throw new CniError(CNI_ERR.INVALID_CONFIG, `config: ${key} must be a ${type}, not ${JSON.stringify(v)}`);
  }
  return v as T;
}

/** Parses stdin; bad JSON is code 6, bad fields code 7, an unknown version code 1. */
export function parseCniConfig(text: string): CniConfig {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new CniError(CNI_ERR.DECODE, `cannot decode the network configuration: ${(err as Error).message}`);
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new CniError(CNI_ERR.DECODE, "the network configuration must be a JSON object");
  }
  const o = raw as Record<string, unknown>;
  const cniVersion = field<string>(o, "cniVersion", "string");
  if (!cniVersion) throw new CniError(CNI_ERR.INVALID_CONFIG, "config: cniVersion is required");
  if (!(SUPPORTED_VERSIONS as readonly string[]).includes(cniVersion)) {
    throw new CniError(
      CNI_ERR.INCOMPATIBLE_VERSION,
      `incompatible CNI version ${cniVersion}: weft supports ${SUPPORTED_VERSIONS.join(", ")}`,
    );
  }
  const name = field<string>(o, "name", "string") ?? "";
  if (!name || !/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(name)) {
    throw new CniError(
      CNI_ERR.INVALID_CONFIG,
      `config: name ${JSON.stringify(name)} must match [A-Za-z0-9][A-Za-z0-9_.-]*`,
    );
  }
  const type = field<string>(o, "type", "string") ?? "weft";
  const delegate = (o.delegate && typeof o.delegate === "object" ? o.delegate : {}) as Record<
    string,
    unknown
  >;
  const pick = <T>(key: string, t: "string" | "number" | "boolean") =>
    field<T>(delegate, key, t) ?? field<T>(o, key, t);
  const ipam = (delegate.ipam ?? o.ipam ?? {}) as Record<string, unknown>;
  const mtu = pick<number>("mtu", "number");
  if (mtu !== undefined && (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535)) {
    throw new CniError(CNI_ERR.INVALID_CONFIG, `config: mtu ${mtu} must be an integer 68–65535`);
  }
  const bridge = pick<string>("bridge", "string") ?? "cni0";
  if (!/^[^\s/:]{1,15}$/.test(bridge)) {
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
    isDefaultGateway: pick<boolean>("isDefaultGateway", "boolean") ?? true,
    ipamDataDir: field<string>(ipam, "dataDir", "string") ?? DEFAULT_IPAM_DIR,
    raw: o,
  };
  if (mtu !== undefined) cfg.mtu = mtu;
  const logFile = field<string>(o, "logFile", "string");
  if (logFile) cfg.logFile = logFile;
  if (o.prevResult && typeof o.prevResult === "object") {
    cfg.prevResult = o.prevResult as Record<string, unknown>;
  }
  const valid = o["cni.dev/valid-attachments"] ?? o["cni.dev/attachments"];
  if (Array.isArray(valid)) cfg.validAttachments = valid as { containerID: string; ifname: string }[];
  return cfg;
}

/** The CNI_* environment. */
export interface CniEnv {
  /** CNI_COMMAND. */
  command: string;
  /** CNI_CONTAINERID. */
  containerId: string;
  /** CNI_NETNS (may be empty on DEL). */
  netns: string;
  /** CNI_IFNAME. */
  ifname: string;
  /** CNI_ARGS as key/values. */
  args: Record<string, string>;
  /** CNI_PATH. */
  path: string;
}

const COMMANDS = ["ADD", "DEL", "CHECK", "VERSION", "GC", "STATUS"];

/** Reads and validates the environment for the command (code 4 on any problem). */
export function readCniEnv(env: (k: string) => string | undefined = (k) => Deno.env.get(k)): CniEnv {
  const command = env("CNI_COMMAND") ?? "";
  if (!COMMANDS.includes(command)) {
    throw new CniError(
      CNI_ERR.INVALID_ENV,
      `CNI_COMMAND ${JSON.stringify(command)} is not one of ${COMMANDS.join(", ")}`,
    );
  }
  const out: CniEnv = {
    command,
    containerId: env("CNI_CONTAINERID") ?? "",
    netns: env("CNI_NETNS") ?? "",
    ifname: env("CNI_IFNAME") ?? "",
    args: {},
    path: env("CNI_PATH") ?? "",
  };
  for (const kv of (env("CNI_ARGS") ?? "").split(";")) {
    if (!kv) continue;
    const eq = kv.indexOf("=");
    if (eq <= 0) throw new CniError(CNI_ERR.INVALID_ENV, `CNI_ARGS: ${JSON.stringify(kv)} is not KEY=VALUE`);
    out.args[kv.slice(0, eq)] = kv.slice(eq + 1);
  }
  if (["ADD", "DEL", "CHECK"].includes(command)) {
    if (!out.containerId) throw new CniError(CNI_ERR.INVALID_ENV, "CNI_CONTAINERID is required");
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(out.containerId)) {
      throw new CniError(
        CNI_ERR.INVALID_ENV,
        `CNI_CONTAINERID ${JSON.stringify(out.containerId)} must match [A-Za-z0-9][A-Za-z0-9_.-]*`,
      );
    }
    if (!out.ifname) throw new CniError(CNI_ERR.INVALID_ENV, "CNI_IFNAME is required");
    if (out.ifname.length > 15 || /[\s/:]/.test(out.ifname) || out.ifname === "." || out.ifname === "..") {
      throw new CniError(
        CNI_ERR.INVALID_ENV,
        `CNI_IFNAME ${JSON.stringify(out.ifname)} is not a valid interface name`,
      );
    }
    if (command !== "DEL" && !out.netns) throw new CniError(CNI_ERR.INVALID_ENV, "CNI_NETNS is required");
  }
  return out;
}
