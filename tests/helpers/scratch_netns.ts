/**
 * A throw-away network namespace with a netlink handle on it, for tests of one node's kernel state.
 *
 * @module
 */
import { type LinkInfo, Netlink, netnsCreate, netnsDelete } from "../../ffi/mod.ts";
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
 * A node's two devices in a scratch namespace, both up: the underlay `eth0` (a bridge, addressed
 * `10.1.0.1/24`) and flannel's `flannel.1` (VNI 1, port 8472) over it.
 */
export function vxlanOverEth0(nl: Netlink): { eth: LinkInfo; vx: LinkInfo } {
  const eth = nl.linkAddBridge({ name: "eth0" });
  nl.linkSetUp(eth.index);
  nl.addrReplace(eth.index, "10.1.0.1/24");
  const vx = nl.linkAddVxlan({ name: "flannel.1", vni: 1, local: "10.1.0.1", dev: eth.index, port: 8472 });
  nl.linkSetUp(vx.index);
  return { eth, vx };
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
