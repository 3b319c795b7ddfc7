/**
 * CNI ADD, doing the work of flannel's plugin + `bridge` + `host-local` in one process: IPAM, bridge
 * `cni0` with the gateway address, a veth pair whose container end is created straight inside CNI_NETNS
 * as CNI_IFNAME, addresses and routes in the container, masquerading when asked, and flannel's saved
 * config. Every step that fails undoes the ones before it (the IP released, the veth removed).
 *
 * @module
 */
import { Netlink, NetlinkError, netnsPath, withNetns } from "../../ffi/mod.ts";
import { readSubnetEnv, type SubnetEnv, SubnetEnvError } from "../config/subnet_env.ts";
import { addIP, formatIP, formatNet, type IPNet } from "../net/ip.ts";
import { allocate, DuplicateAllocationError, RangeFullError } from "../ipam/allocator.ts";
import { IpamStore } from "../ipam/store.ts";
import { ensureBridge, ensureForwarding, hostVethName } from "./bridge.ts";
import type { CniConfig } from "./config.ts";
import type { CniEnv } from "./env.ts";
import { masqAdd, masqDelete } from "./masq.ts";
import { removeConf, renderDelegate, saveConf } from "./saved_conf.ts";
import { mark } from "./trace.ts";
import { CNI_ERR, CniError, mergePrevResult, type Result } from "./types.ts";

/** Reads subnet.env for CNI: missing or incomplete is code 11, "try again later" (agent not ready). */
export function subnetEnvFor(cfg: CniConfig): SubnetEnv {
  try {
    return readSubnetEnv(cfg.subnetFile);
  } catch (err) {
    if (err instanceof SubnetEnvError) {
      throw new CniError(CNI_ERR.TRY_AGAIN_LATER, `the weft agent is not ready on this node: ${err.message}`);
    }
    throw err;
  }
}

/** One address family to configure. */
export interface FamilyPlan {
  /** 4 or 6. */
  family: 4 | 6;
  /** Node subnet. */
  subnet: IPNet;
  /** Bridge address (the subnet's first host). */
  gateway: string;
  /** Cluster network (the route every pod gets via the gateway). */
  network?: IPNet;
  /** host-local range-set index (`last_reserved_ip.<range>`): position in subnet.env's order. */
  range: number;
}

/** Families to configure, in flannel's order (IPv4 first). */
export function plans(env: SubnetEnv): FamilyPlan[] {
  const out: FamilyPlan[] = [];
  for (
    const [family, subnet, network] of [[4, env.subnet, env.network], [
      6,
      env.ipv6Subnet,
      env.ipv6Network,
    ]] as const
  ) {
    if (!subnet) continue;
    out.push({
      family,
      subnet,
      gateway: formatIP(addIP(subnet.ip, 1)),
      range: out.length,
      ...(network ? { network } : {}),
    });
  }
  return out;
}

/** The route destinations a pod gets for `f`: the cluster network, plus the default route if asked. */
export function podRoutes(cfg: CniConfig, f: FamilyPlan): string[] {
  const out = f.network ? [formatNet(f.network)] : [];
  if (cfg.isDefaultGateway) out.push(f.family === 4 ? "0.0.0.0/0" : "::/0");
  return out;
}

/** Runs ADD; returns the (1.x-shaped) result, `prevResult` first when chained. */
// deno-lint-ignore weft/max-function-lines -- one ADD with its rollback steps in order; being split in the CNI rework
export function cmdAdd(cfg: CniConfig, env: CniEnv): Result {
  const senv = subnetEnvFor(cfg);
  const fams = plans(senv);
  const mtu = cfg.mtu ?? senv.mtu ?? 1500;
  const ipMasq = cfg.ipMasq ?? !(senv.ipMasq ?? false);
  const netns = netnsPath(env.netns);
  try {
    Deno.statSync(netns);
  } catch {
    throw new CniError(CNI_ERR.UNKNOWN_CONTAINER, `network namespace ${env.netns} does not exist`);
  }
  const store = new IpamStore(cfg.ipamDataDir, cfg.name);
  const undo: (() => void)[] = [];
  mark("config");
  using host = Netlink.open();
  mark("netlink open");
  try {
    // 1. IPAM, under the store lock (shared with host-local).
    const ips = store.locked(() =>
      fams.map((f) => {
        const ip = allocate(
          store,
          { subnet: f.subnet, gateway: addIP(f.subnet.ip, 1), index: f.range },
          env.containerId,
          env.ifname,
        );
        undo.push(() => store.releaseIP(formatIP(ip)));
        return formatIP(ip);
      })
    );
    mark("ipam");
    // 2. Bridge with the gateways; forwarding on (pods are routed through the node).
    const br = ensureBridge(host, cfg.bridge, mtu, fams.map((f) => `${f.gateway}/${f.subnet.prefix}`));
    ensureForwarding(fams.map((f) => f.family));
    mark("bridge");
    // 3. veth: the container end is born inside the container's namespace, already named CNI_IFNAME.
    const hostVeth = hostVethName(env.containerId, env.ifname);
    let veth;
    try {
      veth = host.linkAddVeth({ name: hostVeth, peerName: env.ifname, peerNetns: netns, mtu });
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
    host.linkSetMaster(veth.index, br.index);
    if (cfg.hairpinMode) host.linkSetHairpin(veth.index, true);
    host.linkSetUp(veth.index);
    mark("veth");
    // 4. Inside the container: addresses (IPv6 without DAD, so it is usable at once), up, routes.
    using ctr = Netlink.open({ netns });
    const cif = ctr.linkGet(env.ifname);
    if (!cif) throw new CniError(CNI_ERR.INTERNAL, `${env.ifname} vanished from ${env.netns}`);
    if (fams.some((f) => f.family === 6)) {
      withNetns(netns, () => Deno.writeTextFileSync(`/proc/sys/net/ipv6/conf/${env.ifname}/accept_dad`, "0"));
    }
    const result: Result = {
      interfaces: [
        { name: cfg.bridge, mac: br.mac },
        { name: hostVeth, mac: veth.mac },
        { name: env.ifname, mac: cif.mac, mtu, sandbox: env.netns },
      ],
      ips: [],
      routes: [],
      dns: {},
    };
    for (const [i, f] of fams.entries()) {
      const address = `${ips[i]}/${f.subnet.prefix}`;
      ctr.addrReplace(cif.index, address);
      result.ips.push({ address, gateway: f.gateway, interface: 2 });
    }
    ctr.linkSetUp(cif.index);
    const lo = ctr.linkGet("lo");
    if (lo && !lo.up) ctr.linkSetUp(lo.index);
    for (const f of fams) {
      for (const dst of podRoutes(cfg, f)) {
        // RTPROT_BOOT, like routes the bridge plugin installs through netlink without a protocol.
        ctr.routeReplace({ dst, gateway: f.gateway, dev: cif.index, protocol: 3 });
        result.routes.push({ dst, gw: f.gateway });
      }
    }
    mark("container");
    // 5. Masquerading, when the agent does not do it.
    if (ipMasq) {
      masqAdd(fams.map((f, i) => ({ ip: ips[i]!, subnet: formatNet(f.subnet) })));
      undo.push(() => masqDelete(ips));
    }
    mark("masq");
    // 6. flannel's saved config, for DEL.
    saveConf(cfg.dataDir, env.containerId, renderDelegate(cfg, senv, mtu, ipMasq));
    undo.push(() => removeConf(cfg.dataDir, env.containerId));
    mark("saved config");
    return mergePrevResult(cfg.prevResult, result);
  } catch (err) {
    for (const u of undo.reverse()) {
      try {
        u();
      } catch { /* best effort: what is left, GC frees */ }
    }
    if (err instanceof CniError) throw err;
    if (err instanceof DuplicateAllocationError) {
      throw new CniError(
        CNI_ERR.INTERNAL,
        `${env.containerId}/${env.ifname} already has ${err.ip}: ADD twice without DEL is not allowed`,
      );
    }
    if (err instanceof RangeFullError) throw new CniError(CNI_ERR.INTERNAL, err.message);
    throw new CniError(CNI_ERR.INTERNAL, `ADD failed: ${(err as Error).message}`);
  }
}
