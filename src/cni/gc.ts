/**
 * CNI GC (spec 1.1.0) and STATUS. GC frees every allocation whose (containerID, ifname) is not in
 * `cni.dev/valid-attachments` (or the older `cni.dev/attachments`), with its host veth (derived name),
 * masquerade entry and saved config: whatever a killed ADD left behind. STATUS is code 50 while
 * subnet.env is missing or incomplete.
 *
 * @module
 */
import { Netlink } from "../../ffi/mod.ts";
import { readSubnetEnv } from "../config/subnet_env.ts";
import { IpamStore } from "../ipam/store.ts";
import { hostVethName } from "./bridge.ts";
import type { CniConfig } from "./config.ts";
import { CONTAINER_ID_RE } from "./env.ts";
import { masqDelete } from "./masq.ts";
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
}

/** Runs GC. */
export function cmdGc(cfg: CniConfig): GcReport {
  const key = (id: string, ifname: string) => `${id}\n${ifname}`;
  const valid = new Set((cfg.validAttachments ?? []).map((a) => key(a.containerID, a.ifname)));
  const validIds = new Set((cfg.validAttachments ?? []).map((a) => a.containerID));
  const store = new IpamStore(cfg.ipamDataDir, cfg.name);
  const stale = store.locked(() => {
    const out = store.list().filter((a) => !valid.has(key(a.containerId, a.ifname)));
    for (const a of out) store.releaseIP(a.ip);
    return out;
  });
  const report: GcReport = { freed: stale.map((a) => a.ip), veths: [], confs: 0 };
  using host = Netlink.open();
  for (const a of stale) {
    if (!a.containerId || !a.ifname) continue; // an empty file from a crash: no veth was made yet
    const name = hostVethName(a.containerId, a.ifname);
    if (host.linkDelete(name)) report.veths.push(name);
  }
  masqDelete(report.freed);
  try {
    for (const e of Deno.readDirSync(cfg.dataDir)) {
      if (!e.isFile || validIds.has(e.name) || !CONTAINER_ID_RE.test(e.name)) continue;
      removeConf(cfg.dataDir, e.name);
      report.confs++;
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
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
