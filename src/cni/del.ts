/**
 * CNI DEL, idempotent: succeeds when the netns is gone or CNI_NETNS is empty (containerd's `ctr`), when
 * nothing exists, when called twice — and always frees the IP. Like flannel, it replays the config saved
 * at ADD (so a changed config file, or a pod that flannel's own plugin added, is still cleaned up right).
 *
 * @module
 */
import { Netlink, NetlinkError, netnsPath } from "../../ffi/mod.ts";
import { IpamStore } from "../ipam/store.ts";
import { hostVethName } from "./bridge.ts";
import type { CniConfig } from "./config.ts";
import type { CniEnv } from "./env.ts";
import { masqDelete } from "./masq.ts";
import { loadConf, removeConf } from "./saved_conf.ts";
import { mark } from "./trace.ts";

/** Deletes `name` in namespace `netns` (a path); absent namespace or link is fine. */
function deleteLinkIn(netns: string, name: string): boolean {
  try {
    Deno.statSync(netns);
  } catch {
    return false; // the runtime already removed the namespace, and the veth pair with it
  }
  try {
    using ctr = Netlink.open({ netns });
    return ctr.linkDelete(name); // deleting one end removes the pair
  } catch (err) {
    // The namespace went away between the check and the open.
    if (err instanceof NetlinkError && err.notFound) return false;
    throw err;
  }
}

/** What DEL removed (for the log line). */
export interface DelReport {
  /** Released addresses. */
  freed: string[];
  /** Whether a veth was removed. */
  veth: boolean;
}

/** Runs DEL. */
export function cmdDel(cfg: CniConfig, env: CniEnv): DelReport {
  const saved = loadConf(cfg.dataDir, env.containerId);
  const store = new IpamStore(saved?.ipamDataDir ?? cfg.ipamDataDir, saved?.name || cfg.name);
  const freed = store.locked(() => store.releaseOwner(env.containerId, env.ifname));
  mark("ipam");
  let veth = false;
  if (env.netns) veth = deleteLinkIn(netnsPath(env.netns), env.ifname);
  mark("veth in netns");
  if (!veth) {
    // No namespace to look in (empty CNI_NETNS, or already gone): remove the host end by its derived
    // name, which takes the container end with it if that still exists somewhere.
    using host = Netlink.open();
    veth = host.linkDelete(hostVethName(env.containerId, env.ifname));
  }
  mark("veth by name");
  if (freed.length && (saved?.ipMasq ?? true)) masqDelete(freed);
  mark("masq");
  removeConf(cfg.dataDir, env.containerId);
  return { freed, veth };
}
