/**
 * CNI ADD, doing the work of flannel's plugin + `bridge` + `host-local` in one process: bridge `cni0`
 * with the gateway address, IPAM, a veth pair whose container end is created straight inside CNI_NETNS
 * as CNI_IFNAME, addresses and routes in the container, masquerading when asked, and flannel's saved
 * config. Every step that fails undoes the ones before it (the IP released, the veth removed).
 *
 * The order puts every check that can refuse the ADD — subnet.env, the namespace, a second ADD, the
 * bridge's address — before the first change, so a refused ADD leaves the node as it was. Between IPAM
 * and the veth, the pod is registered with the node's agent (pod_registration.ts): when NetworkPolicy
 * is enforced, its addresses are held closed before the pod has a link to send or receive on.
 *
 * Its cost does not grow with the pods on the node: every kernel lookup names its link, the bridge's
 * addresses are read filtered by the kernel, and IPAM creates the next address file without reading the
 * others (a second ADD is found through the saved attachment record and the host veth's name instead).
 *
 * @module
 */
import { closeFd, inNetns, NetlinkError, Rtnl } from "../../ffi/rtnl/mod.ts";
import { RTPROT_BOOT } from "../../ffi/nl_consts.ts";
import { addIP, formatIP, formatNet } from "../net/ip.ts";
import { allocate, RangeFullError } from "../ipam/allocator.ts";
import { IpamStore } from "../ipam/store.ts";
import { type BridgeState, ensureBridge, ensureForwarding, hostVethName } from "./bridge.ts";
import type { CniConfig } from "./config.ts";
import type { CniEnv } from "./env.ts";
import { ioStep } from "./io.ts";
import { openContainerNetns } from "./netns.ts";
import { type FamilyPlan, plansFor, podRoutes } from "./plan.ts";
import { registerPod } from "./pod_registration.ts";
import { type AttachmentRecord, loadConf, renderDelegate, saveConf } from "./saved_conf.ts";
import { mark } from "./trace.ts";
import { CNI_ERR, CniError, mergePrevResult, type Result } from "./types.ts";

/** Fails when (container, ifname) already has weft's attachment, still holding its addresses. */
function refuseSecondAdd(cfg: CniConfig, env: CniEnv, store: IpamStore): void {
  const rec = loadConf(cfg.dataDir, env.containerId)?.record;
  if (rec?.ifname !== env.ifname) return;
  const held = rec.ips.filter((ip) => {
    const o = store.owner(ip);
    return o?.containerId === env.containerId && o.ifname === env.ifname;
  });
  if (held.length) {
    throw new CniError(
      CNI_ERR.INTERNAL,
      `${env.containerId}/${env.ifname} already has ${held.join(", ")}: ADD twice without DEL is not allowed`,
    );
  }
}

/**
 * Fails (code 11, everything undone) when subnet.env no longer says what this ADD started from: the
 * node's lease changed while it ran (the agent rewrote or withdrew subnet.env), so the address just
 * taken may lie outside the current lease. One more read of a small file.
 */
function leaseUnchanged(cfg: CniConfig, fams: FamilyPlan[]): void {
  let now: FamilyPlan[] = [];
  try {
    now = plansFor(cfg).families;
  } catch { /* withdrawn or unreadable: changed */ }
  const key = (fs: FamilyPlan[]) => fs.map((f) => formatNet(f.subnet)).join(",");
  if (key(now) !== key(fams)) {
    throw new CniError(
      CNI_ERR.TRY_AGAIN_LATER,
      `the node's subnet changed during ADD (${key(fams)} → ${key(now) || "none"}): try again`,
    );
  }
}

/** What one ADD works with. */
interface AddContext {
  cfg: CniConfig;
  env: CniEnv;
  fams: FamilyPlan[];
  mtu: number;
  /** The container's namespace, open (the veth peer is created in it). */
  nsFd: number;
  ctr: Rtnl;
  host: Rtnl;
  store: IpamStore;
}

/** Runs ADD; returns the (1.x-shaped) result, `prevResult` first when chained. */
export async function cmdAdd(cfg: CniConfig, env: CniEnv, prev?: Result): Promise<Result> {
  const { env: senv, families: fams } = plansFor(cfg);
  const mtu = cfg.mtu ?? senv.mtu ?? 1500;
  const ipMasq = cfg.ipMasq ?? !(senv.ipMasq ?? false);
  const { fd: nsFd, nl: ctr } = openContainerNetns(env.netns);
  try {
    const store = ioStep("IPAM store", () => new IpamStore(cfg.ipamDataDir, cfg.name));
    ioStep("saved config", () => refuseSecondAdd(cfg, env, store));
    mark("config");
    using host = Rtnl.open();
    const ctx: AddContext = { cfg, env, fams, mtu, nsFd, ctr, host, store };
    const undo: (() => void)[] = [];
    try {
      // 1–2. Bridge and addresses; the agent learns of the pod before anything can reach it.
      const { ips, br } = allocateIPs(ctx, undo);
      await registerPod(cfg, env, ips, ipMasq);
      mark("register");
      const { result, hostVeth } = attach(ctx, br, ips, undo);
      leaseUnchanged(cfg, fams);
      // Masquerading, when the agent does not do it (libnftables is loaded only then).
      if (ipMasq) {
        const { masqAdd, masqDelete } = await import("./masq.ts");
        masqAdd(fams.map((f, i) => ({ ip: ips[i]!, subnet: formatNet(f.subnet) })));
        undo.push(() => masqDelete(ips));
      }
      mark("masq");
      // flannel's saved config, for DEL, with weft's record of what it made.
      const record: AttachmentRecord = { ifname: env.ifname, hostVeth, ips };
      const doc = renderDelegate(cfg, senv, mtu, ipMasq);
      ioStep("saved config", () => saveConf(cfg.dataDir, env.containerId, doc, record));
      mark("saved config");
      return mergePrevResult(prev, result);
    } catch (err) {
      for (const u of undo.reverse()) {
        try {
          u();
        } catch { /* best effort: what is left, GC frees */ }
      }
      if (err instanceof CniError) throw err;
      if (err instanceof RangeFullError) throw new CniError(CNI_ERR.INTERNAL, err.message);
      throw new CniError(CNI_ERR.INTERNAL, `ADD failed: ${(err as Error).message}`);
    }
  } finally {
    ctr.close();
    closeFd(nsFd);
  }
}

/** Bridge and IPAM; pushes the undo of each step onto `undo`; returns the bridge and the pod's addresses. */
function allocateIPs(ctx: AddContext, undo: (() => void)[]): { ips: string[]; br: BridgeState } {
  const { cfg, env, fams, mtu, host, store } = ctx;
  // 1. Bridge with the gateways (refuses to re-address it under running pods); forwarding on.
  const br = ensureBridge(host, cfg.bridge, mtu, fams.map((f) => `${f.gateway}/${f.subnet.prefix}`));
  ensureForwarding(fams.map((f) => f.family));
  mark("bridge");
  // 2. IPAM, under the store lock (shared with host-local).
  const ips = ioStep("IPAM store", () =>
    store.locked(() =>
      fams.map((f) => {
        const range = { subnet: f.subnet, gateway: addIP(f.subnet.ip, 1), index: f.range };
        const ip = formatIP(allocate(store, range, env.containerId, env.ifname, { duplicateCheck: false }));
        undo.push(() => store.locked(() => store.releaseIP(ip)));
        return ip;
      })
    ));
  mark("ipam");
  return { ips, br };
}

/** veth and the container's side; pushes the undo of each step onto `undo`. */
function attach(
  ctx: AddContext,
  br: BridgeState,
  ips: string[],
  undo: (() => void)[],
): { result: Result; hostVeth: string } {
  const { cfg, env, mtu, host } = ctx;
  // 3. veth: the container end is born inside the container's namespace, already named CNI_IFNAME.
  const hostVeth = hostVethName(env.containerId, env.ifname);
  let veth;
  try {
    veth = host.linkAddVeth({ name: hostVeth, peerName: env.ifname, peerNetnsFd: ctx.nsFd, mtu });
  } catch (err) {
    if (err instanceof NetlinkError && err.exists) {
      throw new CniError(
        CNI_ERR.INTERNAL,
        host.linkGet(hostVeth)
          ? `${hostVeth}, the host end for ${env.containerId}/${env.ifname}, already exists: ADD twice without DEL?`
          : `interface ${env.ifname} already exists in ${env.netns}`,
      );
    }
    throw err;
  }
  undo.push(() => host.linkDelete(hostVeth)); // removes both ends
  host.linkSet(veth.index, { master: br.index, up: true });
  if (cfg.hairpinMode) host.linkSetHairpin(veth.index, true);
  mark("veth");
  // 4. Inside the container.
  const result: Result = {
    interfaces: [
      { name: cfg.bridge, mac: br.mac },
      { name: hostVeth, mac: veth.mac },
      { name: env.ifname, mac: "", mtu, sandbox: env.netns },
    ],
    ips: [],
    routes: [],
    dns: {},
  };
  configureContainer(ctx, ips, result);
  mark("container");
  return { result, hostVeth };
}

/** Addresses (IPv6 without DAD, so it is usable at once), up, routes; fills `result` in. */
function configureContainer(ctx: AddContext, ips: string[], result: Result): void {
  const { cfg, env, fams, ctr } = ctx;
  const cif = ctr.linkGet(env.ifname);
  if (!cif) throw new CniError(CNI_ERR.INTERNAL, `${env.ifname} vanished from ${env.netns}`);
  result.interfaces[2]!.mac = cif.mac;
  if (fams.some((f) => f.family === 6)) {
    inNetns(ctx.nsFd, () => Deno.writeTextFileSync(`/proc/sys/net/ipv6/conf/${env.ifname}/accept_dad`, "0"));
  }
  for (const [i, f] of fams.entries()) {
    const address = `${ips[i]}/${f.subnet.prefix}`;
    ctr.addrAdd(cif.index, address, { replace: true, nodad: true });
    result.ips.push({ address, gateway: f.gateway, interface: 2 });
  }
  ctr.linkSet(cif.index, { up: true });
  const lo = ctr.linkGet("lo");
  if (lo && !lo.up) ctr.linkSet(lo.index, { up: true });
  for (const f of fams) {
    for (const dst of podRoutes(cfg, f)) {
      // Like routes the bridge plugin installs through netlink without a protocol.
      ctr.routeReplace({ dst, gateway: f.gateway, dev: cif.index, protocol: RTPROT_BOOT });
      result.routes.push({ dst, gw: f.gateway });
    }
  }
}
