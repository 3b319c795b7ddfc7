/**
 * CNI ADD: bridge (idempotent `ensure`), veth into the container, IPAM, addresses and routes. Every step
 * that fails undoes the ones before it (the IP is released, the veth removed).
 *
 * @module
 */
import { Netlink, NetlinkError, netnsPath } from "../../ffi/mod.ts";
import { readSubnetEnv, SubnetEnv, SubnetEnvError } from "../config/subnet_env.ts";
import { addIP, formatIP, formatNet, type IPNet } from "../net/ip.ts";
import { allocate, DuplicateAllocationError, IpamStore, RangeFullError, safeName } from "../ipam/store.ts";
import type { CniConfig, CniEnv } from "./config.ts";
import { CNI_ERR, CniError, type Result } from "./types.ts";

/** Reads subnet.env for CNI: missing or incomplete is "try again later" (the agent is not ready). */
export function subnetEnvFor(cfg: CniConfig): SubnetEnv {
  try {
    return readSubnetEnv(cfg.subnetFile);
  } catch (err) {
    if (err instanceof SubnetEnvError) throw new CniError(CNI_ERR.TRY_AGAIN_LATER, err.message);
    throw err;
  }
}

/** The per-family plan: subnet, gateway, cluster network. */
export interface FamilyPlan {
  /** Node subnet. */
  subnet: IPNet;
  /** Bridge address (first host). */
  gateway: string;
  /** Cluster network. */
  network?: IPNet;
  /** IPAM range index. */
  range: number;
}

/** Families to configure, from subnet.env. */
export function plans(env: SubnetEnv): FamilyPlan[] {
  const out: FamilyPlan[] = [];
  if (env.subnet) {
    out.push({
      subnet: env.subnet,
      gateway: formatIP(addIP(env.subnet.ip, 1)),
      range: 0,
      ...(env.network ? { network: env.network } : {}),
    });
  }
  if (env.ipv6Subnet) {
    out.push({
      subnet: env.ipv6Subnet,
      gateway: formatIP(addIP(env.ipv6Subnet.ip, 1)),
      range: 1,
      ...(env.ipv6Network ? { network: env.ipv6Network } : {}),
    });
  }
  return out;
}

/** Saves the config flannel-style under dataDir/<containerID> (0600), for DEL to replay. */
export function saveConfig(cfg: CniConfig, containerId: string, env: SubnetEnv): void {
  Deno.mkdirSync(cfg.dataDir, { recursive: true, mode: 0o700 });
  const doc = {
    ...cfg.raw,
    weft: { subnetFile: cfg.subnetFile, ipamDataDir: cfg.ipamDataDir, mtu: env.mtu },
  };
  Deno.writeTextFileSync(`${cfg.dataDir}/${safeName("container id", containerId)}`, JSON.stringify(doc), {
    mode: 0o600,
  });
}

function vethName(): string {
  const b = crypto.getRandomValues(new Uint8Array(4));
  return `veth${Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("")}`;
}

/** Ensures the bridge with the gateway addresses and MTU, up (idempotent). */
function ensureBridge(
  nl: Netlink,
  name: string,
  mtu: number,
  fams: FamilyPlan[],
): { index: number; mac: string } {
  let br = nl.linkGet(name);
  if (!br) {
    try {
      br = nl.linkAddBridge({ name, mtu });
    } catch (err) {
      // Another ADD created it at the same moment.
      if (!(err instanceof NetlinkError && err.exists)) throw err;
      br = nl.linkGet(name);
      if (!br) throw err;
    }
  }
  if (br.kind !== "bridge") {
    throw new CniError(
      CNI_ERR.INVALID_CONFIG,
      `${name} exists but is a ${br.kind || "plain"} device, not a bridge`,
    );
  }
  if (br.mtu !== mtu) nl.linkSetMtu(br.index, mtu);
  const have = new Set(nl.addrList(br.index).map((a) => a.cidr));
  for (const f of fams) {
    const cidr = `${f.gateway}/${f.subnet.prefix}`;
    if (!have.has(cidr)) {
      try {
        nl.addrAdd(br.index, cidr);
      } catch (err) {
        if (!(err instanceof NetlinkError && err.exists)) throw err;
      }
    }
  }
  if (!br.up) nl.linkSetUp(br.index);
  return { index: br.index, mac: br.mac };
}

/** Runs ADD; returns the 1.x-shaped result. */
export async function cmdAdd(cfg: CniConfig, env: CniEnv): Promise<Result> {
  const senv = subnetEnvFor(cfg);
  const fams = plans(senv);
  if (!fams.length) {
    throw new CniError(CNI_ERR.TRY_AGAIN_LATER, `${cfg.subnetFile} names no subnet: the agent is not ready`);
  }
  const mtu = cfg.mtu ?? senv.mtu ?? 1500;
  const store = new IpamStore(cfg.ipamDataDir, cfg.name);
  const allocated: string[] = [];
  const undo: (() => void)[] = [() => allocated.forEach((ip) => store.releaseIP(ip))];
  try {
    // 1. IPAM, under the store lock.
    await store.locked(() => {
      for (const f of fams) {
        try {
          allocated.push(
            formatIP(allocate(store, f.subnet, addIP(f.subnet.ip, 1), env.containerId, env.ifname, f.range)),
          );
        } catch (err) {
          if (err instanceof DuplicateAllocationError) {
            throw new CniError(
              CNI_ERR.INTERNAL,
              `container ${env.containerId} interface ${env.ifname} already has ${err.ip}: ADD twice without DEL`,
            );
          }
          if (err instanceof RangeFullError) throw new CniError(CNI_ERR.INTERNAL, err.message);
          throw err;
        }
      }
    });
    using host = Netlink.open();
    // 2. Bridge.
    const br = ensureBridge(host, cfg.bridge, mtu, fams);
    // 3. veth: the container end is created straight inside the container's namespace as CNI_IFNAME.
    let hostVeth = vethName();
    for (let i = 0; host.linkGet(hostVeth) && i < 5; i++) hostVeth = vethName();
    let veth;
    try {
      veth = host.linkAddVeth({ name: hostVeth, peerName: env.ifname, peerNetns: netnsPath(env.netns), mtu });
    } catch (err) {
      if (err instanceof NetlinkError && err.exists) {
        throw new CniError(CNI_ERR.INTERNAL, `interface ${env.ifname} already exists in ${env.netns}`);
      }
      if (err instanceof NetlinkError && err.notFound) {
        throw new CniError(CNI_ERR.UNKNOWN_CONTAINER, `network namespace ${env.netns} does not exist`);
      }
      throw err;
    }
    undo.push(() => host.linkDelete(hostVeth));
    host.linkSetMaster(veth.index, br.index);
    if (cfg.hairpinMode) host.linkSetHairpin(veth.index, true);
    host.linkSetUp(veth.index);
    // 4. Inside the container: address, up, routes.
    using ctr = Netlink.open({ netns: netnsPath(env.netns) });
    const cif = ctr.linkGet(env.ifname);
    if (!cif) throw new CniError(CNI_ERR.INTERNAL, `${env.ifname} vanished from ${env.netns}`);
    const result: Result = {
      interfaces: [
        { name: cfg.bridge, mac: br.mac },
        { name: hostVeth, mac: host.linkGet(veth.index)?.mac ?? veth.mac },
        { name: env.ifname, mac: cif.mac, mtu, sandbox: env.netns },
      ],
      ips: [],
      routes: [],
      dns: {},
    };
    for (const [i, f] of fams.entries()) {
      const address = `${allocated[i]}/${f.subnet.prefix}`;
      ctr.addrReplace(cif.index, address);
      result.ips.push({ address, gateway: f.gateway, interface: 2 });
    }
    ctr.linkSetUp(cif.index);
    const lo = ctr.linkGet("lo");
    if (lo && !lo.up) ctr.linkSetUp(lo.index);
    for (const f of fams) {
      const dsts = cfg.isDefaultGateway
        ? [f.subnet.ip.family === 4 ? "0.0.0.0/0" : "::/0"]
        : f.network
        ? [formatNet(f.network)]
        : [];
      for (const dst of dsts) {
        ctr.routeReplace({
          dst: dst === "0.0.0.0/0" ? "default" : dst === "::/0" ? "default6" : dst,
          gateway: f.gateway,
          dev: cif.index,
          protocol: 4, // RTPROT_STATIC, as the bridge plugin does
        });
        result.routes.push({ dst, gw: f.gateway });
      }
    }
    saveConfig(cfg, env.containerId, senv);
    return result;
  } catch (err) {
    for (const u of undo.reverse()) {
      try {
        u();
      } catch { /* best effort: DEL or GC frees the rest */ }
    }
    if (err instanceof CniError) throw err;
    throw new CniError(CNI_ERR.INTERNAL, `ADD failed: ${(err as Error).message}`);
  }
}
