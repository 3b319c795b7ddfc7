/**
 * Whether every native library weft binds loads here, with every symbol of its FFI table resolved (a
 * library of the wrong version, or missing a symbol, fails now instead of at its first use): the check
 * behind `weft doctor --preflight`, which the release workflow runs against the image.
 *
 * @module
 */
import { c, genl, nl, rtnl } from "./loader.ts";
import { loadNftables } from "./nftables.ts";

/** One library's outcome. */
export interface LibraryCheck {
  /** The soname, e.g. `libnl-route-3.so.200`. */
  library: string;
  /** What needs it. */
  usedBy: string;
  /** Why it did not load (undefined: it did, every symbol bound). */
  error?: string;
}

function bindAll(symbols: Record<string, unknown>): void {
  for (const name of Object.keys(symbols)) void symbols[name];
}

/** Loads each library and binds each of its symbols. */
export function checkLibraries(): LibraryCheck[] {
  const libs: [string, string, () => Record<string, unknown>][] = [
    ["libc.so.6", "every mode; CNI mode needs nothing else", () => c()],
    ["libnl-3.so.200", "the agent (every backend)", () => nl()],
    ["libnl-route-3.so.200", "the agent (every backend)", () => rtnl()],
    ["libnl-genl-3.so.200", "the wireguard backend (kernel WireGuard)", () => genl()],
    [
      "libnftables.so.1",
      "EnableNFTables: true, --network-policy, the host firewall check",
      () => loadNftables(),
    ],
  ];
  return libs.map(([library, usedBy, load]) => {
    try {
      bindAll(load());
      return { library, usedBy };
    } catch (err) {
      return { library, usedBy, error: (err as Error).message };
    }
  });
}
