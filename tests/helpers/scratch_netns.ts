/**
 * A throw-away network namespace with a netlink handle on it, for tests of one node's kernel state.
 *
 * @module
 */
import { Netlink, netnsCreate, netnsDelete } from "../../ffi/mod.ts";
import { uniqueNetnsName } from "./names.ts";

/**
 * Runs `fn` with a fresh namespace `wtst-<run>-<tag><n>` and a handle bound to it; the handle is closed
 * and the namespace deleted afterwards, also when `fn` throws.
 */
export async function withScratchNetns<T>(
  tag: string,
  fn: (ns: string, nl: Netlink) => Promise<T> | T,
): Promise<T> {
  const ns = uniqueNetnsName(tag);
  netnsCreate(ns);
  try {
    using nl = Netlink.open({ netns: ns });
    return await fn(ns, nl);
  } finally {
    netnsDelete(ns);
  }
}

/**
 * `ip`/`bridge` `-n <ns> -j <args…>` parsed (the reference the FFI layer is checked against); throws
 * with iproute2's message when the command fails.
 */
export async function iprouteJson(
  ns: string,
  tool: "ip" | "bridge",
  ...args: string[]
): Promise<Record<string, unknown>[]> {
  const out = await new Deno.Command(tool, {
    args: ["-n", ns, "-j", ...args],
    stdout: "piped",
    stderr: "piped",
  })
    .output();
  if (out.code !== 0) {
    throw new Error(`${tool} -n ${ns} -j ${args.join(" ")}: ${new TextDecoder().decode(out.stderr).trim()}`);
  }
  const text = new TextDecoder().decode(out.stdout).trim();
  return text ? JSON.parse(text) : [];
}
