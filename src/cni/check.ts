/**
 * CNI CHECK: the container's interface, addresses and routes are as ADD left them, and the host end is
 * still a port of the bridge. Anything else is code 100 with what differs.
 *
 * @module
 */
import { Netlink, netnsPath } from "../../ffi/mod.ts";
import { IpamStore } from "../ipam/store.ts";
import { hostVethName } from "./bridge.ts";
import { plans, podRoutes, subnetEnvFor } from "./add.ts";
import type { CniConfig } from "./config.ts";
import type { CniEnv } from "./env.ts";
import { CNI_ERR, CniError } from "./types.ts";

function fail(msg: string): never {
  throw new CniError(CNI_ERR.CHECK_FAILED, msg);
}

/** Runs CHECK. */
export function cmdCheck(cfg: CniConfig, env: CniEnv): void {
  const senv = subnetEnvFor(cfg);
  const store = new IpamStore(cfg.ipamDataDir, cfg.name);
  const mine = store.list().filter((a) => a.containerId === env.containerId && a.ifname === env.ifname);
  if (!mine.length) fail(`no address is allocated to ${env.containerId}/${env.ifname}`);
  const netns = netnsPath(env.netns);
  try {
    Deno.statSync(netns);
  } catch {
    throw new CniError(CNI_ERR.UNKNOWN_CONTAINER, `network namespace ${env.netns} does not exist`);
  }
  using ctr = Netlink.open({ netns });
  const link = ctr.linkGet(env.ifname);
  if (!link) fail(`${env.ifname} is missing in ${env.netns}`);
  if (!link.up) fail(`${env.ifname} is down`);
  const addrs = new Set(ctr.addrList(link.index).map((a) => a.cidr.split("/")[0]));
  for (const a of mine) if (!addrs.has(a.ip)) fail(`${env.ifname} lacks its address ${a.ip}`);
  const prevIps = (Array.isArray(cfg.prevResult?.ips) ? cfg.prevResult.ips : []) as { address?: string }[];
  for (const ip of prevIps) {
    const a = String(ip.address ?? "").split("/")[0]!;
    if (!addrs.has(a)) fail(`prevResult's address ${ip.address} is not on ${env.ifname}`);
  }
  const routes = ctr.routeList({});
  for (const f of plans(senv)) {
    for (const dst of podRoutes(cfg, f)) {
      if (!routes.some((r) => r.dst === dst && r.gateway === f.gateway && r.index === link.index)) {
        fail(`the route to ${dst} via ${f.gateway} on ${env.ifname} is missing`);
      }
    }
  }
  using host = Netlink.open();
  const hv = host.linkGet(hostVethName(env.containerId, env.ifname));
  const br = host.linkGet(cfg.bridge);
  if (!br) fail(`bridge ${cfg.bridge} is missing`);
  if (!hv) fail(`the host end ${hostVethName(env.containerId, env.ifname)} is missing`);
  if (hv.master !== br.index) fail(`${hv.name} is not a port of ${cfg.bridge}`);
  if (!hv.up) fail(`${hv.name} is down`);
}
