/**
 * flannel's network config (net-conf.json, etcd key `<prefix>/config`): parsing, defaults, validation.
 *
 * Keys match case-insensitively, as Go's JSON decoder does for flannel. Every rejection names the key,
 * the value and the rule that failed.
 *
 * @module
 */
import {
  addIP,
  formatNet,
  type IPNet,
  lastIP,
  netContains,
  netSize,
  networkOf,
  parseNet,
} from "../net/ip.ts";

/** The backend section. */
export interface BackendConfig {
  /** `vxlan`, `host-gw`, … (lowercase). */
  type: string;
  /** Every option as written (keys lowercased); each backend reads its own (src/backend/registry.ts). */
  options: Record<string, unknown>;
}

/** A validated network config. */
export interface NetworkConfig {
  /** EnableIPv4 (default true). */
  enableIPv4: boolean;
  /** EnableIPv6 (default false). */
  enableIPv6: boolean;
  /** EnableNFTables (default false). */
  enableNFTables: boolean;
  /** Network (required with IPv4). */
  network?: IPNet;
  /** SubnetLen. */
  subnetLen: number;
  /** SubnetMin (network address of the first subnet handed out). */
  subnetMin?: IPNet;
  /** SubnetMax (the last subnet handed out). */
  subnetMax?: IPNet;
  /** IPv6Network. */
  ipv6Network?: IPNet;
  /** IPv6SubnetLen. */
  ipv6SubnetLen: number;
  /** IPv6SubnetMin. */
  ipv6SubnetMin?: IPNet;
  /** IPv6SubnetMax. */
  ipv6SubnetMax?: IPNet;
  /** Backend. */
  backend: BackendConfig;
  /**
   * True when the config has no Backend: udp then, as flanneld picks (pkg/subnet/config.go), whose udp
   * is a slow user-space loop; callers warn loudly and suggest vxlan.
   */
  backendDefaulted: boolean;
}

/**
 * The backend of a config without `Backend`: udp, as flanneld (v0.28.9 pkg/subnet/config.go
 * `parseBackendType`: an empty Backend is "udp"), although flannel's documentation says vxlan.
 */
export const DEFAULT_BACKEND = "udp";

/**
 * The warning for a config without `Backend` (udp: flanneld's choice, kept so that weft and flanneld
 * nodes reading the same config pick the same backend).
 */
export const DEFAULTED_BACKEND_WARNING =
  "the network config has no Backend: using udp, as flanneld does (its default, whatever its docs say). " +
  "udp is flannel's debugging backend, a user-space packet loop (a fraction of vxlan's throughput); " +
  'set "Backend": {"Type": "vxlan"} in the config for the kernel\'s VXLAN (on every node at once: ' +
  "nodes on different backends cannot reach each other)";

/** A config rejected for one key. */
export class ConfigError extends Error {
  /** Creates the error for `key` with `value` breaking `rule`. */
  constructor(readonly key: string, readonly value: unknown, readonly rule: string) {
    super(`network config: ${key}=${JSON.stringify(value)}: ${rule}`);
    this.name = "ConfigError";
  }
}

function lowerKeys(obj: Record<string, unknown>): Map<string, [string, unknown]> {
  const out = new Map<string, [string, unknown]>();
  for (const [k, v] of Object.entries(obj)) out.set(k.toLowerCase(), [k, v]);
  return out;
}

function bool(key: string, v: unknown, dflt: boolean): boolean {
  if (v === undefined || v === null) return dflt;
  if (typeof v !== "boolean") throw new ConfigError(key, v, "must be true or false");
  return v;
}

function int(key: string, v: unknown): number | undefined {
  if (v === undefined || v === null) return undefined;
  if (typeof v !== "number" || !Number.isInteger(v) || v < 0) {
    throw new ConfigError(key, v, "must be a non-negative integer");
  }
  return v;
}

function net(key: string, v: unknown, family: 4 | 6): IPNet | undefined {
  if (v === undefined || v === null || v === "") return undefined;
  if (typeof v !== "string") throw new ConfigError(key, v, "must be a CIDR string");
  let n: IPNet;
  try {
    n = parseNet(v);
  } catch (err) {
    throw new ConfigError(key, v, (err as Error).message);
  }
  if (n.ip.family !== family) throw new ConfigError(key, v, `must be an IPv${family} network`);
  return n;
}

function ip(key: string, v: unknown, family: 4 | 6, prefix: number): IPNet | undefined {
  if (v === undefined || v === null || v === "") return undefined;
  if (typeof v !== "string") throw new ConfigError(key, v, "must be an address string");
  const text = v.includes("/") ? v.slice(0, v.indexOf("/")) : v;
  try {
    const n = parseNet(`${text}/${family === 4 ? 32 : 128}`);
    if (n.ip.family !== family) throw new Error(`must be an IPv${family} address`);
    return { ip: n.ip, prefix };
  } catch (err) {
    throw new ConfigError(key, v, (err as Error).message);
  }
}

interface FamilyRules {
  family: 4 | 6;
  maxLen: number;
  defaultLen: number;
  maxPrefix: number;
  keys: { network: string; len: string; min: string; max: string };
}

const V4: FamilyRules = {
  family: 4,
  maxLen: 30,
  defaultLen: 24,
  maxPrefix: 28,
  keys: { network: "Network", len: "SubnetLen", min: "SubnetMin", max: "SubnetMax" },
};
const V6: FamilyRules = {
  family: 6,
  maxLen: 126,
  defaultLen: 64,
  maxPrefix: 124,
  keys: { network: "IPv6Network", len: "IPv6SubnetLen", min: "IPv6SubnetMin", max: "IPv6SubnetMax" },
};

function familyConfig(
  r: FamilyRules,
  get: (k: string) => unknown,
): { network: IPNet; len: number; min: IPNet; max: IPNet } {
  const network = net(r.keys.network, get(r.keys.network), r.family);
  if (!network) {
    throw new ConfigError(
      r.keys.network,
      get(r.keys.network) ?? null,
      "is required when the family is enabled",
    );
  }
  let len = int(r.keys.len, get(r.keys.len));
  if (len === undefined) {
    if (network.prefix > r.maxPrefix) {
      throw new ConfigError(
        r.keys.network,
        formatNet(network),
        `prefix /${network.prefix} is too small for subnets: at most /${r.maxPrefix}`,
      );
    }
    // flannel: /24 (/64) subnets when the network is big enough for 4 of them, else prefix + 2.
    len = network.prefix <= r.defaultLen - 2 ? r.defaultLen : network.prefix + 2;
  } else {
    if (len > r.maxLen) throw new ConfigError(r.keys.len, len, `must be at most ${r.maxLen}`);
    if (len < network.prefix + 2) {
      throw new ConfigError(
        r.keys.len,
        len,
        `must be at least the ${r.keys.network} prefix + 2 (${network.prefix + 2}) so it holds four subnets`,
      );
    }
  }
  const size = netSize({ ip: network.ip, prefix: len });
  const check = (key: string, n: IPNet | undefined, dflt: IPNet): IPNet => {
    if (!n) return dflt;
    if (!netContains(network, n.ip)) {
      throw new ConfigError(key, formatNet(n).split("/")[0], `is not inside ${formatNet(network)}`);
    }
    if (n.ip.value % size !== 0n) {
      throw new ConfigError(key, formatNet(n).split("/")[0], `is not on a /${len} boundary`);
    }
    return n;
  };
  const min = check(r.keys.min, ip(r.keys.min, get(r.keys.min), r.family, len), {
    ip: addIP(network.ip, size),
    prefix: len,
  });
  const max = check(
    r.keys.max,
    ip(r.keys.max, get(r.keys.max), r.family, len),
    networkOf(lastIP(network), len),
  );
  if (min.ip.value > max.ip.value) {
    throw new ConfigError(
      r.keys.min,
      formatNet(min).split("/")[0],
      `must not be above ${r.keys.max} ${formatNet(max)}`,
    );
  }
  return { network, len, min, max };
}

/**
 * Reads a backend's options (matched case-insensitively, as flannel's decoder does); every rejection is
 * a {@linkcode ConfigError} naming `Backend.<Key>`. Each backend parses its own options with it.
 */
export class BackendOptionReader {
  /** @param options the Backend section with lowercased keys (`BackendConfig.options`) */
  constructor(private readonly options: Record<string, unknown>) {}

  #get(key: string): unknown {
    return this.options[key.toLowerCase()];
  }

  /** A non-negative integer option within `[min, max]`, or `dflt` when absent. */
  int<D extends number | undefined>(
    key: string,
    dflt: D,
    min = 0,
    max = Number.MAX_SAFE_INTEGER,
  ): number | D {
    const v = int(`Backend.${key}`, this.#get(key));
    if (v === undefined) return dflt;
    if (v < min || v > max) throw new ConfigError(`Backend.${key}`, v, `must be ${min}–${max}`);
    return v;
  }

  /** A boolean option, or `dflt` when absent. */
  bool(key: string, dflt: boolean): boolean {
    return bool(`Backend.${key}`, this.#get(key), dflt);
  }

  /** A string option, or undefined when absent or empty. */
  string(key: string): string | undefined {
    const v = this.#get(key);
    if (v === undefined || v === null || v === "") return undefined;
    if (typeof v !== "string") throw new ConfigError(`Backend.${key}`, v, "must be a string");
    return v;
  }

  /** A string option that must be one of `allowed` (compared lowercased), or `dflt` when absent. */
  oneOf<T extends string>(key: string, allowed: readonly T[], dflt: T): T {
    const v = this.string(key)?.toLowerCase();
    if (v === undefined) return dflt;
    if (!(allowed as readonly string[]).includes(v)) {
      throw new ConfigError(`Backend.${key}`, v, `must be one of ${allowed.join(", ")}`);
    }
    return v as T;
  }
}

/** Parses and validates a network config from JSON text or an object. */
export function parseNetworkConfig(input: string | Record<string, unknown>): NetworkConfig {
  let obj: unknown = input;
  if (typeof input === "string") {
    try {
      obj = JSON.parse(input);
    } catch (err) {
      throw new ConfigError("(document)", input.slice(0, 40), `is not valid JSON: ${(err as Error).message}`);
    }
  }
  if (typeof obj !== "object" || obj === null || Array.isArray(obj)) {
    throw new ConfigError("(document)", obj, "must be a JSON object");
  }
  const keys = lowerKeys(obj as Record<string, unknown>);
  const get = (k: string) => keys.get(k.toLowerCase())?.[1];
  const enableIPv4 = bool("EnableIPv4", get("EnableIPv4"), true);
  const enableIPv6 = bool("EnableIPv6", get("EnableIPv6"), false);
  if (!enableIPv4 && !enableIPv6) {
    throw new ConfigError("EnableIPv4", false, "at least one of EnableIPv4/EnableIPv6 must be true");
  }
  const cfg: NetworkConfig = {
    enableIPv4,
    enableIPv6,
    enableNFTables: bool("EnableNFTables", get("EnableNFTables"), false),
    subnetLen: 0,
    ipv6SubnetLen: 0,
    backend: { type: DEFAULT_BACKEND, options: {} },
    backendDefaulted: false,
  };
  if (enableIPv4) {
    const f = familyConfig(V4, get);
    Object.assign(cfg, { network: f.network, subnetLen: f.len, subnetMin: f.min, subnetMax: f.max });
  }
  if (enableIPv6) {
    const f = familyConfig(V6, get);
    Object.assign(cfg, {
      ipv6Network: f.network,
      ipv6SubnetLen: f.len,
      ipv6SubnetMin: f.min,
      ipv6SubnetMax: f.max,
    });
  }
  const backend = get("Backend");
  if (backend === undefined) {
    cfg.backendDefaulted = true; // udp, as flanneld: a weft node and a flanneld node must agree
  } else {
    // flanneld reads `"Backend": null` or a Backend without Type as backend type "" and exits
    // ("unknown backend type"); only a config without Backend gets its default.
    if (typeof backend !== "object" || backend === null || Array.isArray(backend)) {
      throw new ConfigError("Backend", backend, 'must be an object with a Type, e.g. {"Type": "vxlan"}');
    }
    const bk = lowerKeys(backend as Record<string, unknown>);
    const type = bk.get("type")?.[1];
    if (type === undefined) {
      throw new ConfigError(
        "Backend.Type",
        null,
        'is required when Backend is given (flanneld exits with "unknown backend type"), e.g. "vxlan"',
      );
    }
    if (typeof type !== "string" || !type) {
      throw new ConfigError("Backend.Type", type, "must be a backend name");
    }
    cfg.backend = {
      type: type.toLowerCase(),
      options: Object.fromEntries([...bk.entries()].map(([k, [, v]]) => [k, v])),
    };
  }
  return cfg;
}
