/**
 * CNI DEL (idempotent: netns gone or empty, nothing there, called twice — always frees the IP),
 * CHECK (interface, addresses, routes as ADD left them), GC (frees every allocation not in
 * `cni.dev/valid-attachments`) and STATUS (50 while subnet.env is missing).
 *
 * @module
 */
import { Netlink, NetlinkError, netnsPath } from "../../ffi/mod.ts";
import { IpamStore, safeName } from "../ipam/store.ts";
import type { CniConfig, CniEnv } from "./config.ts";
import { plans, subnetEnvFor } from "./add.ts";
import { CNI_ERR, CniError } from "./types.ts";
import { readSubnetEnv } from "../config/subnet_env.ts";
import { formatNet } from "../net/ip.ts";

function savedConfigPath(cfg: CniConfig, containerId: string): string {
  return `${cfg.dataDir}/${safeName("container id", containerId)}`;
}

function netnsExists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

/** Runs DEL. */
export async function cmdDel(cfg: CniConfig, env: CniEnv): Promise<void> {
  // flannel replays the config saved at ADD; its IPAM store location wins over today's config.
  let ipamDir = cfg.ipamDataDir;
  try {
    const saved = JSON.parse(Deno.readTextFileSync(savedConfigPath(cfg, env.containerId))) as {
      weft?: { ipamDataDir?: string };
    };
    if (saved.weft?.ipamDataDir) ipamDir = saved.weft.ipamDataDir;
  } catch { /* no saved config: use this one */ }
  const store = new IpamStore(ipamDir, cfg.name);
  await store.locked(() => store.releaseOwner(env.containerId, env.ifname));
  if (env.netns) {
    const path = netnsPath(env.netns);
    if (netnsExists(path)) {
      try {
        using ctr = Netlink.open({ netns: path });
        ctr.linkDelete(env.ifname); // deleting one end removes the pair
      } catch (err) {
        // The namespace went away between the check and the open: nothing left to delete.
        if (!(err instanceof NetlinkError && err.notFound)) throw err;
      }
    }
  }
  await Deno.remove(savedConfigPath(cfg, env.containerId)).catch(() => {});
}

/** Runs CHECK; throws code 100 with what differs. */
export function cmdCheck(cfg: CniConfig, env: CniEnv): void {
  const senv = subnetEnvFor(cfg);
  const store = new IpamStore(cfg.ipamDataDir, cfg.name);
  const mine = store.list().filter((a) => a.containerId === env.containerId && a.ifname === env.ifname);
  if (!mine.length) {
    throw new CniError(CNI_ERR.CHECK_FAILED, `no address is allocated to ${env.containerId}/${env.ifname}`);
  }
  if (!netnsExists(netnsPath(env.netns))) {
    throw new CniError(CNI_ERR.UNKNOWN_CONTAINER, `network namespace ${env.netns} does not exist`);
  }
  using ctr = Netlink.open({ netns: netnsPath(env.netns) });
  const link = ctr.linkGet(env.ifname);
  if (!link) throw new CniError(CNI_ERR.CHECK_FAILED, `${env.ifname} is missing in ${env.netns}`);
  if (!link.up) throw new CniError(CNI_ERR.CHECK_FAILED, `${env.ifname} is down`);
  const addrs = new Set(ctr.addrList(link.index).map((a) => a.cidr.split("/")[0]));
  for (const a of mine) {
    if (!addrs.has(a.ip)) {
      throw new CniError(CNI_ERR.CHECK_FAILED, `${env.ifname} lacks its address ${a.ip}`);
    }
  }
  const routes = ctr.routeList({});
  for (const f of plans(senv)) {
    const dst = cfg.isDefaultGateway
      ? (f.subnet.ip.family === 4 ? "0.0.0.0/0" : "::/0")
      : f.network
      ? formatNet(f.network)
      : undefined;
    if (!dst) continue;
    if (!routes.some((r) => r.dst === dst && r.gateway === f.gateway && r.index === link.index)) {
      throw new CniError(
        CNI_ERR.CHECK_FAILED,
        `the route to ${dst} via ${f.gateway} on ${env.ifname} is missing`,
      );
    }
  }
  if (cfg.prevResult) {
    const ips = (cfg.prevResult.ips ?? []) as { address: string }[];
    for (const ip of ips) {
      if (!addrs.has(ip.address.split("/")[0])) {
        throw new CniError(CNI_ERR.CHECK_FAILED, `prevResult address ${ip.address} is not on ${env.ifname}`);
      }
    }
  }
}

/** Runs GC: frees allocations (and saved configs) of attachments not listed as valid. */
export async function cmdGc(cfg: CniConfig): Promise<string[]> {
  const valid = new Set((cfg.validAttachments ?? []).map((a) => `${a.containerID}\n${a.ifname}`));
  const store = new IpamStore(cfg.ipamDataDir, cfg.name);
  const freed = await store.locked(() => {
    const out: string[] = [];
    for (const a of store.list()) {
      if (!valid.has(`${a.containerId}\n${a.ifname}`)) {
        store.releaseIP(a.ip);
        out.push(a.ip);
      }
    }
    return out;
  });
  const validIds = new Set((cfg.validAttachments ?? []).map((a) => a.containerID));
  try {
    for (const e of Deno.readDirSync(cfg.dataDir)) {
      if (e.isFile && !validIds.has(e.name)) Deno.removeSync(`${cfg.dataDir}/${e.name}`);
    }
  } catch { /* no dataDir */ }
  return freed;
}

/** Runs STATUS: code 50 while subnet.env is missing or incomplete. */
export function cmdStatus(cfg: CniConfig): void {
  try {
    readSubnetEnv(cfg.subnetFile);
  } catch (err) {
    throw new CniError(CNI_ERR.NOT_AVAILABLE, `not ready: ${(err as Error).message}`);
  }
}
