/**
 * CNI GC (spec 1.1.0) and STATUS. GC frees every allocation whose (containerID, ifname) is not in
 * `cni.dev/valid-attachments` (or the older `cni.dev/attachments`; the request parser refuses a GC with
 * neither, code 7, rather than read it as "nothing is valid"), with its host veth (derived name),
 * masquerade entry and saved config: whatever a killed ADD left behind. As in DEL, the veth goes before
 * the address: an address whose veth could not be removed is kept. STATUS is code 50 while subnet.env is
 * missing or incomplete.
 *
 * @module
 */
import { Rtnl } from "../../ffi/rtnl/mod.ts";
import { readSubnetEnv } from "../config/subnet_env.ts";
import { type Allocation, IpamStore } from "../ipam/store.ts";
import { isContainerId } from "../net/names.ts";
import { hostVethName } from "./bridge.ts";
import type { CniConfig } from "./config.ts";
import { ioStep } from "./io.ts";
import { removeConf } from "./saved_conf.ts";
import { CNI_ERR, CniError } from "./types.ts";

/** What GC freed. */
export interface GcReport {
  /** Released addresses. */
  freed: string[];
  /** Host veths removed. */
  veths: string[];
  /** Saved configs removed. */
  confs: number;
  /** Addresses kept because their veth could not be removed. */
  kept: string[];
}

/** Runs GC. */
export async function cmdGc(cfg: CniConfig): Promise<GcReport> {
  const attachments = cfg.validAttachments;
  if (!attachments) {
    throw new CniError(CNI_ERR.INVALID_CONFIG, "config: GC needs cni.dev/valid-attachments");
  }
  const key = (id: string, ifname: string) => `${id}\n${ifname}`;
  const valid = new Set(attachments.map((a) => key(a.containerID, a.ifname)));
  const validIds = new Set(attachments.map((a) => a.containerID));
  const store = ioStep("IPAM store", () => new IpamStore(cfg.ipamDataDir, cfg.name));
  const stale = ioStep("IPAM store", () => store.list()).filter((a) =>
    !valid.has(key(a.containerId, a.ifname))
  );
  const report: GcReport = { freed: [], veths: [], confs: 0, kept: [] };
  // 1. Veths (derived names; an empty file from a crash had no veth made yet).
  const releasable: Allocation[] = [];
  {
    using host = Rtnl.open();
    for (const a of stale) {
      if (a.containerId && a.ifname) {
        const name = hostVethName(a.containerId, a.ifname);
        try {
          if (host.linkDelete(name)) report.veths.push(name);
        } catch {
          report.kept.push(a.ip);
          continue;
        }
      }
      releasable.push(a);
    }
  }
  // 2. Masquerade entries, then 3. the addresses (each only while the same owner still holds it).
  if (releasable.length) {
    const { masqDelete } = await import("./masq.ts");
    masqDelete(releasable.map((a) => a.ip));
  }
  // Under the lock, and only while the file still says what it said when listed: an ADD may have taken a
  // freed address meanwhile, or finished writing a file that was still empty.
  const unchanged = (a: Allocation) => {
    const o = store.owner(a.ip);
    return o?.containerId === a.containerId && o.ifname === a.ifname;
  };
  report.freed = ioStep(
    "IPAM store",
    () =>
      store.locked(() => releasable.filter((a) => unchanged(a) && store.releaseIP(a.ip)).map((a) => a.ip)),
  );
  // 4. Saved configs of containers no longer valid.
  ioStep("saved config", () => {
    try {
      for (const e of Deno.readDirSync(cfg.dataDir)) {
        if (!e.isFile || validIds.has(e.name) || !isContainerId(e.name)) continue;
        removeConf(cfg.dataDir, e.name);
        report.confs++;
      }
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
    }
  });
  return report;
}

/** Runs STATUS: code 50 while subnet.env is missing or incomplete. */
export function cmdStatus(cfg: CniConfig): void {
  try {
    readSubnetEnv(cfg.subnetFile);
  } catch (err) {
    throw new CniError(CNI_ERR.NOT_AVAILABLE, `weft is not ready: ${(err as Error).message}`);
  }
}
