/**
 * CNI CHECK: the container's interface, addresses and routes are as ADD left them, and the host end is
 * still a port of the bridge. Anything else is code 100 with what differs. `prevResult` reaches here
 * already checked (prev_result.ts: a malformed one is code 7).
 *
 * @module
 */
import { closeFd, Rtnl } from "../../ffi/rtnl/mod.ts";
import { IpamStore } from "../ipam/store.ts";
import { hostVethName } from "./bridge.ts";
import type { CniConfig } from "./config.ts";
import type { CniEnv } from "./env.ts";
import { ioStep } from "./io.ts";
import { openContainerNetns } from "./netns.ts";
import { plansFor, podRoutes } from "./plan.ts";
import { CNI_ERR, CniError, type Result } from "./types.ts";

function fail(msg: string): never {
  throw new CniError(CNI_ERR.CHECK_FAILED, msg);
}

/** Runs CHECK. */
export function cmdCheck(cfg: CniConfig, env: CniEnv, prev?: Result): void {
  const { families } = plansFor(cfg);
  const store = ioStep("IPAM store", () => new IpamStore(cfg.ipamDataDir, cfg.name));
  const mine = ioStep("IPAM store", () => store.list())
    .filter((a) => a.containerId === env.containerId && a.ifname === env.ifname);
  if (!mine.length) fail(`no address is allocated to ${env.containerId}/${env.ifname}`);
  const { fd, nl } = openContainerNetns(env.netns);
  using ctr = nl;
  closeFd(fd); // the handle stays in the namespace
  const link = ctr.linkGet(env.ifname);
  if (!link) fail(`${env.ifname} is missing in ${env.netns}`);
  if (!link.up) fail(`${env.ifname} is down`);
  const addrs = new Set(ctr.addrList(link.index).map((a) => a.cidr.split("/")[0]));
  for (const a of mine) if (!addrs.has(a.ip)) fail(`${env.ifname} lacks its address ${a.ip}`);
  for (const ip of prev?.ips ?? []) {
    // Addresses of other interfaces in a chain are not weft's to check.
    const iface = ip.interface === undefined ? undefined : prev!.interfaces[ip.interface];
    if (iface && iface.name !== env.ifname) continue;
    if (!addrs.has(ip.address.split("/")[0])) {
      fail(`prevResult's address ${ip.address} is not on ${env.ifname}`);
    }
  }
  const routes = ctr.routeList();
  for (const f of families) {
    for (const dst of podRoutes(cfg, f)) {
      if (!routes.some((r) => r.dst === dst && r.gateway === f.gateway && r.index === link.index)) {
        fail(`the route to ${dst} via ${f.gateway} on ${env.ifname} is missing`);
      }
    }
  }
  using host = Rtnl.open();
  const hv = host.linkGet(hostVethName(env.containerId, env.ifname));
  const br = host.linkGet(cfg.bridge);
  if (!br) fail(`bridge ${cfg.bridge} is missing`);
  if (!hv) fail(`the host end ${hostVethName(env.containerId, env.ifname)} is missing`);
  if (hv.master !== br.index) fail(`${hv.name} is not a port of ${cfg.bridge}`);
  if (!hv.up) fail(`${hv.name} is down`);
}
