/**
 * CNI DEL: best effort, idempotent, and all-or-nothing per resource. It succeeds when the netns is gone
 * or CNI_NETNS is empty (the kernel removed the veth with the namespace), when nothing exists, when
 * called twice. Like flannel, it replays the config saved at ADD (so a changed config file, or a pod that
 * flannel's own plugin added, is still cleaned up right).
 *
 * The order is what keeps a later ADD from handing out an address that is still in use:
 *
 * 1. the veth goes first — by its derived host-side name in this (the node's) namespace, which needs no
 *    container namespace at all; for a pod weft did not add (flannel's plugin names its veths at
 *    random) through CNI_NETNS. When neither can settle whether the veth is gone (CNI_NETNS exists but
 *    is not a namespace, or cannot be opened), DEL fails with everything kept, so a retry can finish;
 * 2. then the masquerade entry (before the address is free for another pod, whose entry it would be);
 * 3. then the addresses, each only while still held by this (container, ifname);
 * 4. the saved config last: it is what a retried DEL replays.
 *
 * A step that fails stops DEL with an error; the resources after it stay, none is half released.
 *
 * @module
 */
import { closeFd, openPath, Rtnl, SyscallError } from "../../ffi/rtnl/mod.ts";
import { IpamStore } from "../ipam/store.ts";
import { hostVethName } from "./bridge.ts";
import type { CniConfig } from "./config.ts";
import type { CniEnv } from "./env.ts";
import { ioStep } from "./io.ts";
import { loadConf, removeConf, type SavedConf } from "./saved_conf.ts";
import { mark } from "./trace.ts";
import { CNI_ERR, CniError } from "./types.ts";

/** What DEL removed (for the log line). */
export interface DelReport {
  /** Released addresses. */
  freed: string[];
  /** Whether a veth was removed. */
  veth: boolean;
}

/**
 * Removes CNI_IFNAME inside CNI_NETNS, for a pod whose host veth weft cannot name. Returns whether a
 * link was removed; a namespace that is gone counts as done; one that cannot be used throws.
 */
function deleteInNetns(env: CniEnv): boolean {
  if (!env.netns) return false; // containerd's `ctr` sends none: the namespace, and the veth, are gone
  let fd: number;
  try {
    fd = openPath(env.netns);
  } catch (err) {
    if (err instanceof SyscallError && err.errno === 2) return false; // gone (or a dangling link to it)
    throw new CniError(
      CNI_ERR.IO,
      `CNI_NETNS ${env.netns} cannot be opened (${(err as Error).message}): cannot tell whether ` +
        `${env.ifname} still exists, so its addresses are kept`,
    );
  }
  try {
    using ctr = Rtnl.open(fd);
    return ctr.linkDelete(env.ifname);
  } catch (err) {
    if (err instanceof SyscallError && err.errno === 22) {
      throw new CniError(
        CNI_ERR.INVALID_ENV,
        `CNI_NETNS ${env.netns} is not a network namespace: cannot tell whether ${env.ifname} still ` +
          `exists, so its addresses are kept (DEL again with the pod's namespace, or without CNI_NETNS ` +
          `once it is gone)`,
      );
    }
    throw err;
  } finally {
    closeFd(fd);
  }
}

/** The addresses DEL is about: weft's record, or (a pod flannel added) those the store names the owner of. */
function heldAddresses(store: IpamStore, saved: SavedConf | undefined, env: CniEnv): string[] {
  const rec = saved?.record?.ifname === env.ifname ? saved.record : undefined;
  if (rec) return rec.ips;
  return store.list()
    .filter((a) => a.containerId === env.containerId && (a.ifname === env.ifname || a.ifname === ""))
    .map((a) => a.ip);
}

/** Runs DEL. */
export async function cmdDel(cfg: CniConfig, env: CniEnv): Promise<DelReport> {
  const saved = loadConf(cfg.dataDir, env.containerId);
  const store = ioStep(
    "IPAM store",
    () => new IpamStore(saved?.ipamDataDir ?? cfg.ipamDataDir, saved?.name || cfg.name),
  );
  const held = ioStep("IPAM store", () => heldAddresses(store, saved, env));
  const hostVeth = hostVethName(env.containerId, env.ifname);
  mark("config");
  // 1. The veth.
  let veth: boolean;
  {
    using host = Rtnl.open();
    veth = host.linkDelete(hostVeth); // a pair weft made: both ends go, wherever the other one is
  }
  const weftMade = saved?.record?.hostVeth === hostVeth;
  // Not found by name, and not known to be weft's: look in the container, if there is anything to keep.
  if (!veth && !weftMade && held.length) veth = deleteInNetns(env);
  mark("veth");
  // 2. Masquerading.
  if (held.length && (saved?.ipMasq ?? true)) {
    const { masqDelete } = await import("./masq.ts");
    masqDelete(held);
  }
  mark("masq");
  // 3. Addresses, each only while still this attachment's.
  const freed = ioStep(
    "IPAM store",
    () => store.locked(() => held.filter((ip) => store.releaseIfOwner(ip, env.containerId, env.ifname))),
  );
  mark("ipam");
  // 4. The saved config.
  ioStep("saved config", () => removeConf(cfg.dataDir, env.containerId));
  return { freed, veth };
}
