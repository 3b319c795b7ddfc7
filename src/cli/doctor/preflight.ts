/**
 * `weft doctor --preflight`: whether this binary (or image) has what each backend loads — every native
 * library with its whole FFI symbol table, and every helper binary (both iptables backends' save/restore
 * for IPv4 and IPv6, wireguard-go) — without looking at any node state. The release workflow runs it
 * against the image on each architecture; the suite runs it with `deno run main.ts`.
 *
 * @module
 */
import { checkLibraries } from "../../../ffi/mod.ts";
import { findBinary } from "../../datapath/iptables.ts";
import type { Finding } from "./finding.ts";

/** Debian packages of the libraries (for the fix). */
const PACKAGE: Record<string, string> = {
  "libc.so.6": "libc6",
  "libnl-3.so.200": "libnl-3-200",
  "libnl-route-3.so.200": "libnl-route-3-200",
  "libnl-genl-3.so.200": "libnl-genl-3-200",
  "libnftables.so.1": "libnftables1",
};

/** Helper binaries, what needs them, their package, and how to ask them their version. */
const BINARIES: [string, string, string, string[]][] = [
  ...(["nft", "legacy"] as const).flatMap((mode) =>
    ["iptables", "ip6tables"].flatMap((base) =>
      ["save", "restore"].map((action): [string, string, string, string[]] => [
        `${base}-${mode}-${action}`,
        `EnableNFTables: false on an iptables-${mode} host`,
        "iptables",
        ["--version"],
      ])
    )
  ),
  ["wireguard-go", "the wireguard backend on kernels without WireGuard", "wireguard-go", ["--version"]],
];

/** Runs `bin args` and says whether it started and exited 0. */
function runs(bin: string, args: string[]): string | undefined {
  try {
    const out = new Deno.Command(bin, { args, stdout: "piped", stderr: "piped" }).outputSync();
    if (out.success) return undefined;
    return new TextDecoder().decode(out.stderr).trim().split("\n")[0] || `exit ${out.code}`;
  } catch (err) {
    return (err as Error).message;
  }
}

/** Every library and binary, one finding each. */
export function runPreflight(): Finding[] {
  const libs = checkLibraries().map((l): Finding =>
    l.error
      ? {
        id: "preflight",
        status: "fail",
        message: `${l.library} (${l.usedBy}) does not load: ${l.error}`,
        fix: `apt-get install ${PACKAGE[l.library] ?? l.library}`,
      }
      : { id: "preflight", status: "ok", message: `${l.library} loads, every symbol bound (${l.usedBy})` }
  );
  const bins = BINARIES.map(([name, usedBy, pkg, args]): Finding => {
    const path = findBinary(name);
    const err = path ? runs(path, args) : "not found on PATH, /usr/sbin or /sbin";
    return err
      ? {
        id: "preflight",
        status: "fail",
        message: `${name} (${usedBy}): ${err}`,
        fix: `apt-get install ${pkg}`,
      }
      : { id: "preflight", status: "ok", message: `${path} runs (${usedBy})` };
  });
  return [...libs, ...bins];
}
