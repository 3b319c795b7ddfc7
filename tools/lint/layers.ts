/**
 * Which part of weft may import which (ARCHITECTURE.md says why). Pure functions over repo-relative
 * paths, used by the `weft/layers` lint rule (tools/lint/plugin.ts) and tested on their own.
 *
 * @module
 */

/** Files every part may use: logging, the version, the waiting helpers. */
const BASE = ["src/log.ts", "src/version.ts", "src/async.ts"];

/** One folder per backend: each may use the shared files of src/backend/, never another backend. */
const BACKENDS = ["src/backend/vxlan", "src/backend/hostgw", "src/backend/udp", "src/backend/wireguard"];

/**
 * Each part (a folder, or a file at src/'s top) and what it may import besides itself and {@linkcode BASE}.
 * An entry ending in `.ts` allows that file, `folder/*` the files directly in that folder, any other
 * entry the whole folder. `*` allows everything.
 */
export const LAYERS: Record<string, string[]> = {
  "ffi": [],
  "src/base": [],
  "src/self_command.ts": [],
  "src/net": ["ffi"],
  "src/config": ["src/net"],
  // The Kubernetes API client (requests, watches, credentials), shared by the lease store and policy.
  "src/kube": ["src/config", "src/net"],
  // What every lease store shares: the lease, the LeaseSource seam, the pure rules and the filter.
  "src/lease": ["src/config", "src/net"],
  "src/lease/etcd": ["src/lease/*", "src/config", "src/net"],
  "src/lease/kube": ["src/lease/*", "src/kube", "src/config", "src/net"],
  "src/datapath": ["ffi", "src/net", "src/config", "src/lease/lease.ts"],
  // The Backend interface and the registry of kinds; each backend's folder below it.
  "src/backend": ["ffi", "src/net", "src/config", "src/datapath", "src/lease/lease.ts", ...BACKENDS],
  ...Object.fromEntries(
    BACKENDS.map((
      b,
    ) => [b, ["ffi", "src/net", "src/config", "src/datapath", "src/lease/lease.ts", "src/backend/*"]]),
  ),
  "src/policy": ["ffi", "src/net", "src/config", "src/datapath", "src/kube"],
  "src/ipam": ["ffi", "src/net", "src/config"],
  "src/cni": ["ffi", "src/net", "src/config", "src/ipam"],
  // The agent sees the lease seam only, never a store's own code (src/lease/etcd, src/lease/kube).
  "src/agent": [
    "ffi",
    "src/net",
    "src/config",
    "src/datapath",
    "src/backend/*",
    "src/policy",
    "src/lease/*",
  ],
  "src/lab": ["ffi", "src/net", "src/config", "src/self_command.ts"],
  "src/cli": ["*"],
  "main.ts": ["src/cli", "src/cni"],
};

/** npm packages and the only parts that may load them (everything else stays free of their cost). */
export const PACKAGES: Record<string, string[]> = {
  "etcd3": ["src/lease/etcd/etcd_registry.ts"],
  "commander": ["src/cli"],
  "@commander-js/extra-typings": ["src/cli"],
};

/** The part a repo-relative path belongs to, or undefined for files outside the layering (tests, …). */
export function partOf(path: string): string | undefined {
  if (path === "main.ts") return "main.ts";
  if (path.startsWith("ffi/")) return "ffi";
  if (!path.startsWith("src/")) return undefined;
  if (BASE.includes(path)) return "src/base";
  const parts = path.split("/");
  if (parts.length === 2) return path;
  // The deepest folder that is a part of its own (src/lease/etcd before src/lease).
  for (let n = parts.length - 1; n > 2; n--) {
    const folder = parts.slice(0, n).join("/");
    if (folder in LAYERS) return folder;
  }
  return `src/${parts[1]}`;
}

/**
 * Whether an entry allows `target`: a file (`….ts`), a folder and all beneath it, or `folder/*`: the
 * files directly in that folder (not its sub-folders).
 */
function allows(entries: string[], target: string): boolean {
  return entries.some((e) => {
    if (e === "*") return true;
    if (e.endsWith(".ts")) return target === e;
    if (e.endsWith("/*")) {
      return target.startsWith(e.slice(0, -1)) && !target.slice(e.length - 1).includes("/");
    }
    return target.startsWith(`${e}/`);
  });
}

/**
 * Why `from` (repo-relative) may not import `spec` (as written; relative specifiers resolved against
 * `from`), or undefined when it may. Test files (`_test.ts`) are not layered.
 */
export function layerViolation(from: string, spec: string): string | undefined {
  const part = partOf(from);
  if (!part || from.endsWith("_test.ts")) return undefined;
  if (!spec.startsWith(".")) {
    const pkg = Object.keys(PACKAGES).find((p) =>
      spec === p || spec.startsWith(`${p}/`) || spec === `npm:${p}`
    );
    if (!pkg) return undefined;
    const ok = PACKAGES[pkg]!.some((e) => e.endsWith(".ts") ? from === e : from.startsWith(`${e}/`));
    return ok ? undefined : `${from} may not load ${pkg} (only ${PACKAGES[pkg]!.join(", ")})`;
  }
  const target = new URL(spec, `file:///${from}`).pathname.slice(1);
  const targetPart = partOf(target);
  if (!targetPart || targetPart === part || BASE.includes(target)) return undefined;
  if (allows(LAYERS[part] ?? [], target)) return undefined;
  return `${part} may not import ${target} (allowed: ${[...(LAYERS[part] ?? []), "itself"].join(", ")})`;
}
