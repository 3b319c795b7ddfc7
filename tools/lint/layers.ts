/**
 * Which part of weft may import which (ARCHITECTURE.md says why). Pure functions over repo-relative
 * paths, used by the `weft/layers` lint rule (tools/lint/plugin.ts) and tested on their own.
 *
 * @module
 */

/** Files every part may use: logging, the version, the waiting helpers. */
const BASE = ["src/log.ts", "src/version.ts", "src/async.ts"];

/**
 * Each part (a folder, or a file at src/'s top) and what it may import besides itself and {@linkcode BASE}.
 * An entry ending in `.ts` allows that file, otherwise the whole folder. `*` allows everything.
 */
export const LAYERS: Record<string, string[]> = {
  "ffi": ["src/net/ip.ts"],
  "src/base": [],
  "src/self_command.ts": [],
  "src/net": ["ffi"],
  "src/config": ["src/net"],
  "src/subnet": ["src/config", "src/net"],
  "src/kube": ["src/config", "src/net", "src/subnet"],
  "src/datapath": ["ffi", "src/net", "src/config", "src/subnet/lease.ts"],
  "src/backend": ["ffi", "src/net", "src/config", "src/datapath", "src/subnet/lease.ts"],
  "src/policy": ["ffi", "src/net", "src/config", "src/datapath", "src/kube"],
  "src/ipam": ["ffi", "src/net", "src/config"],
  "src/cni": ["ffi", "src/net", "src/config", "src/ipam"],
  "src/agent": [
    "ffi",
    "src/net",
    "src/config",
    "src/datapath",
    "src/backend",
    "src/policy",
    "src/subnet/lease.ts",
    "src/subnet/source.ts",
    // The pure lease rules and the filter peer sync runs them in (no store code).
    "src/subnet/validate.ts",
    "src/subnet/lease_filter.ts",
  ],
  "src/lab": ["ffi", "src/net", "src/config", "src/self_command.ts"],
  "src/cli": ["*"],
  "main.ts": ["src/cli", "src/cni"],
};

/** npm packages and the only parts that may load them (everything else stays free of their cost). */
export const PACKAGES: Record<string, string[]> = {
  "etcd3": ["src/subnet/etcd_registry.ts"],
  "@kubernetes/client-node": ["src/kube"],
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
  return parts.length === 2 ? path : `src/${parts[1]}`;
}

function allows(entries: string[], target: string): boolean {
  return entries.some((e) => e === "*" || (e.endsWith(".ts") ? target === e : target.startsWith(`${e}/`)));
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
