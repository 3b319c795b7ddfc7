/**
 * Read-only ethtool queries over the SIOCETHTOOL ioctl (no `ethtool` binary needed), for `weft doctor`.
 *
 * @module
 */
import { ERRNO_NAMES, NetlinkError } from "./errors.ts";
import { c, libcErrno as errno } from "./loader.ts";

const AF_INET = 2;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const SIOCETHTOOL = 0x8946n;
const ETHTOOL_GTXCSUM = 0x16;

/**
 * Whether TX checksum offload is on for `ifname` (in the calling thread's namespace).
 * Returns `undefined` when the driver does not answer the query.
 */
export function txChecksumOffload(ifname: string): boolean | undefined {
  const libc = c();
  const fd = libc.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new NetlinkError("ethtool socket", errno(), 0, "socket() failed");
  try {
    // struct ethtool_value { __u32 cmd; __u32 data; }
    const value = new Uint32Array([ETHTOOL_GTXCSUM, 0]);
    // struct ifreq { char ifr_name[16]; union { void *ifr_data; … } } (40 bytes on 64-bit)
    const ifreq = new Uint8Array(40);
    const name = new TextEncoder().encode(ifname);
    if (name.length > 15) throw new Error(`interface name ${ifname} is longer than 15 characters`);
    ifreq.set(name);
    const ptr = Deno.UnsafePointer.value(Deno.UnsafePointer.of(value));
    new DataView(ifreq.buffer).setBigUint64(16, BigInt(ptr), true);
    if (libc.ioctl(fd, SIOCETHTOOL, ifreq) !== 0) {
      const e = errno();
      if (e === 95 || e === 22) return undefined; // EOPNOTSUPP / EINVAL: no answer from the driver
      throw new NetlinkError(`ethtool get tx-checksum ${ifname}`, e, 0, ERRNO_NAMES[e] ?? "ioctl failed");
    }
    return value[1] !== 0;
  } finally {
    libc.close(fd);
  }
}
