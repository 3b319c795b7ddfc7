/**
 * Which part of weft may import which (ARCHITECTURE.md says why). Pure functions over repo-relative
 * paths, used by the `weft/layers` lint rule (tools/lint/plugin.ts) and tested on their own.
 *
 * @module
 */

/** Files every part may use: logging, the version, the waiting helpers. */
export const BASE = ["src/log.ts", "src/version.ts", "src/async.ts"];

/** One folder per backend: each may use the shared files of src/backend/, never another backend. */
export const BACKENDS = [
  "src/backend/vxlan",
  "src/backend/hostgw",
  "src/backend/udp",
  "src/backend/wireguard",
];

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

/**
 * Every package of deno.json's `imports` and the only parts that may load it (everything else stays free
 * of its cost). A package not listed here may not be loaded by any part (tests/architecture_test.ts
 * keeps this list and deno.json equal).
 */
export const PACKAGES: Record<string, string[]> = {
  "etcd3": ["src/lease/etcd/etcd_registry.ts"],
  "commander": ["src/cli"],
  "@commander-js/extra-typings": ["src/cli"],
  "@logtape/logtape": ["src/log.ts"],
  // kubeconfig files are YAML; read lazily, only when a kubeconfig is.
  "yaml": ["src/kube/config.ts"],
};

/**
 * The package a specifier loads — `npm:` or `jsr:` with any version and subpath
 * (`npm:@scope/pkg@1.2.3/sub` → `@scope/pkg`), or a bare name from deno.json's `imports` (`etcd3`,
 * `etcd3/sub`) — or undefined for relative paths, URLs and `node:` built-ins.
 */
export function packageOf(spec: string): string | undefined {
  const registry = /^(?:npm|jsr):\/?(.+)$/.exec(spec);
  if (!registry && (/^[a-z][a-z0-9+.-]*:/i.test(spec) || /^[./]/.test(spec))) return undefined;
  const s = registry ? registry[1]! : spec;
  const [first, second] = s.split("/");
  const name = s.startsWith("@") ? `${first}/${second ?? ""}` : first!;
  // The version: after an `@` that is not the scope's own.
  return name.replace(/^(.[^@]*)@.*$/, "$1");
}

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

/** Why `from` (in `part`) may not load package `pkg`, or undefined when it may. */
function packageViolation(from: string, spec: string, pkg: string): string | undefined {
  const allowed = PACKAGES[pkg];
  if (!allowed) {
    return `${from} may not load ${spec}: ${pkg} is not in deno.json's imports and tools/lint/layers.ts PACKAGES`;
  }
  const ok = allowed.some((e) => e.endsWith(".ts") ? from === e : from.startsWith(`${e}/`));
  return ok ? undefined : `${from} may not load ${pkg} (only ${allowed.join(", ")})`;
}

/**
 * Why `from` (repo-relative) may not import `spec` (as written; relative specifiers resolved against
 * `from`), or undefined when it may. Test files (`_test.ts`) are not layered; a layered file may import
 * nothing outside the layers (tests/, bench/, tools/, or outside the repository).
 */
export function layerViolation(from: string, spec: string): string | undefined {
  const part = partOf(from);
  if (!part || from.endsWith("_test.ts")) return undefined;
  if (!spec.startsWith("./") && !spec.startsWith("../")) {
    if (spec.startsWith("node:")) return undefined;
    const pkg = packageOf(spec);
    if (pkg !== undefined) return packageViolation(from, spec, pkg);
    return `${from} may not import ${spec}: only relative paths, node: built-ins and deno.json's packages`;
  }
  const target = new URL(spec, `file:///${from}`).pathname.slice(1);
  const targetPart = partOf(target);
  if (!targetPart) {
    return `${part} may not import ${target}: product code imports nothing outside main.ts, src/, ffi/`;
  }
  if (targetPart === part || BASE.includes(target)) return undefined;
  if (allows(LAYERS[part] ?? [], target)) return undefined;
  return `${part} may not import ${target} (allowed: ${[...(LAYERS[part] ?? []), "itself"].join(", ")})`;
}
