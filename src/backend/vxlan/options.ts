/**
 * The vxlan backend's net-conf options (`"Backend": {"Type": "vxlan", …}`), with flannel's defaults.
 *
 * @module
 */
import type { BackendOptionReader } from "../../config/net_conf.ts";

/** Options of the vxlan backend, with flannel's defaults. */
export interface VxlanBackendOptions {
  /** VNI, default 1. */
  vni: number;
  /** UDP port; 0 = kernel default 8472. */
  port: number;
  /** Group Based Policy. */
  gbp: boolean;
  /** Route directly (host-gw style) to peers on the same L2 segment. */
  directRouting: boolean;
  /** MAC learning on the device. */
  learning: boolean;
  /** Device MTU; undefined = external interface MTU − 50. */
  mtu?: number;
  /**
   * TX checksum offload on the VXLAN devices (weft's `TxChecksumOffload`; flanneld ignores the key).
   * Unset: switched off where the kernel is affected ({@linkcode checksumOffloadBroken}), else the
   * kernel's setting is left; false: always switched off (Calico's `ChecksumOffloadBroken=true`); true:
   * always left alone.
   */
  txChecksumOffload?: boolean;
}

/**
 * Whether this kernel release is known to send VXLAN packets with bad UDP checksums under TX checksum
 * offload (packets whose source port was SNATted, e.g. Service traffic: projectcalico/calico#3145,
 * flannel #1279 and #2152): kernels before 5.7, where Calico switched offload off when it found the bug
 * (felix #2815). Calico now switches it off on every kernel by default, which costs a veth-and-bridge
 * lab ~4× in TCP throughput (measured: bench/throughput.ts, weft-vxlan 2.1 vs 9.6 Gbit/s by hand), so
 * weft keeps offload where the kernel is not known to be affected; `TxChecksumOffload: false` does as
 * Calico does.
 */
export function checksumOffloadBroken(release: string): boolean {
  const m = /^(\d+)\.(\d+)/.exec(release);
  if (!m) return true; // unknown: the safe side
  const [major, minor] = [Number(m[1]), Number(m[2])];
  return major < 5 || (major === 5 && minor < 7);
}

/**
 * Reads `VNI`, `Port`, `GBP`, `DirectRouting`, `Learning`, `MTU` (flannel's) and `TxChecksumOffload`
 * (weft's); throws ConfigError naming the key.
 */
export function parseVxlanOptions(o: BackendOptionReader): VxlanBackendOptions {
  const vni = o.int("VNI", 1, 1, 16777215);
  const port = o.int("Port", 0, 0, 65535);
  const mtu = o.int("MTU", undefined, 576, 65535);
  const out: VxlanBackendOptions = {
    vni,
    port,
    gbp: o.bool("GBP", false),
    directRouting: o.bool("DirectRouting", false),
    learning: o.bool("Learning", false),
  };
  const offload = o.bool("TxChecksumOffload", undefined);
  if (offload !== undefined) out.txChecksumOffload = offload;
  if (mtu !== undefined) out.mtu = mtu;
  return out;
}
