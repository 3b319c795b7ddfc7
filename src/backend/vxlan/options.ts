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
   * TX checksum offload on the VXLAN devices (weft's `TxChecksumOffload`, flanneld ignores the key).
   * Default false: switched off, as Calico does on every kernel (its `ChecksumOffloadBroken`: VXLAN
   * packets with SNATted source ports get bad UDP checksums — projectcalico/calico#3145, flannel #1279,
   * #2152; first said fixed in 5.7, still seen after). true leaves the kernel's setting alone.
   */
  txChecksumOffload: boolean;
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
    txChecksumOffload: o.bool("TxChecksumOffload", false),
  };
  if (mtu !== undefined) out.mtu = mtu;
  return out;
}
