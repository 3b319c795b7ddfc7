/**
 * `weft doctor`'s checks of the udp and wireguard backends' devices: which WireGuard implements
 * `flannel-wg` (the kernel's, or userspace wireguard-go and its pid) and whether it answers, and whether
 * `flannel0` has the udp loop behind it.
 *
 * @module
 */
import type { Netlink } from "../../../ffi/mod.ts";
import { UapiControl, uapiSocketPath } from "../../backend/wireguard/uapi.ts";
import { GenlControl } from "../../backend/wireguard/genl.ts";
import { UDP_DEVICE } from "../../backend/udp/udp.ts";
import { UDP_DEFAULT_PORT } from "../../backend/udp/options.ts";
import type { WgControl } from "../../backend/wireguard/control.ts";
import { type Finding, udpPortBound } from "./finding.ts";

const WG_DEVICES = ["flannel-wg", "flannel-wg-v6"];

/** Whether the running kernel has WireGuard (built in or loaded). */
export function kernelHasWireguard(): boolean {
  try {
    Deno.statSync("/sys/module/wireguard");
    return true;
  } catch {
    return false;
  }
}

/** The wireguard-go binary on PATH (or `WEFT_WIREGUARD_GO`), if any. */
export function findWireguardGo(): string | undefined {
  const own = Deno.env.get("WEFT_WIREGUARD_GO");
  const candidates = own
    ? [own]
    : (Deno.env.get("PATH") ?? "/usr/bin:/bin").split(":").map((d) => `${d}/wireguard-go`);
  for (const c of candidates) {
    try {
      if (Deno.statSync(c).isFile) return c;
    } catch { /* not here */ }
  }
  return undefined;
}

/**
 * pids of `wireguard-go … <dev>` processes in this process's network namespace (from /proc: other
 * namespaces may run their own `flannel-wg`).
 */
export function wireguardGoPids(dev: string): number[] {
  const out: number[] = [];
  const ownNs = Deno.statSync("/proc/thread-self/ns/net").ino;
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    try {
      const argv = Deno.readTextFileSync(`/proc/${e.name}/cmdline`).split("\0");
      if (!argv[0]?.endsWith("wireguard-go") || !argv.includes(dev)) continue;
      if (Deno.statSync(`/proc/${e.name}/ns/net`).ino === ownNs) out.push(Number(e.name));
    } catch { /* gone */ }
  }
  return out;
}

/** Which WireGuard implements the backend's devices, and whether each answers. */
export function checkWireguard(nl: Netlink): Finding {
  const found: string[] = [];
  for (const name of WG_DEVICES) {
    const link = nl.linkGet(name);
    if (!link) continue;
    let ctl: WgControl;
    let what: string;
    if (link.kind === "wireguard") {
      ctl = new GenlControl(name);
      what = `${name}: kernel WireGuard`;
    } else {
      ctl = new UapiControl(name, uapiSocketPath(name));
      const pids = wireguardGoPids(name);
      what = `${name}: userspace WireGuard (wireguard-go${pids.length ? `, pid ${pids.join(",")}` : ""})`;
    }
    try {
      const st = ctl.get();
      found.push(`${what}, port ${st.listenPort}, ${st.peers.length} peers`);
    } catch (err) {
      return {
        id: "wireguard",
        status: "fail",
        message: `${what} does not answer: ${(err as Error).message}; its peers cannot be read or changed`,
        fix: link.kind === "wireguard"
          ? "check that libnl-genl-3-200 is installed (apt-get install libnl-genl-3-200)"
          : `restart the agent: it restarts wireguard-go for ${name} (or delete the stale device: ip link del ${name})`,
      };
    }
  }
  if (found.length) return { id: "wireguard", status: "ok", message: found.join("; ") };
  const go = findWireguardGo();
  const would = kernelHasWireguard()
    ? "kernel WireGuard"
    : go
    ? `userspace wireguard-go (${go}; this kernel has no WireGuard)`
    : undefined;
  if (would) {
    return {
      id: "wireguard",
      status: "skip",
      message: `no flannel-wg; the wireguard backend would use ${would}`,
    };
  }
  return {
    id: "wireguard",
    status: "skip",
    message: "no flannel-wg; this kernel has no WireGuard and wireguard-go is not installed",
    fix: "for the wireguard backend: apt-get install wireguard-go (or a kernel with WireGuard)",
  };
}

/** flannel0 (udp backend) has the packet loop behind it. */
export function checkUdpBackend(nl: Netlink, port = UDP_DEFAULT_PORT): Finding {
  const link = nl.linkGet(UDP_DEVICE);
  if (!link) return { id: "udp", status: "skip", message: `no ${UDP_DEVICE} (udp backend not in use)` };
  if (udpPortBound(port)) {
    return {
      id: "udp",
      status: "ok",
      message: `${UDP_DEVICE} (TUN) with the udp loop listening on UDP ${port}`,
    };
  }
  return {
    id: "udp",
    status: "fail",
    message:
      `${UDP_DEVICE} exists but nothing listens on UDP ${port}: no agent forwards its packets (pods on other nodes are unreachable)`,
    fix: "start the agent (weft agent …); with another Backend.Port, this check looks at 8285 only",
  };
}
