/**
 * ethtool's TX checksum offload over the SIOCETHTOOL ioctl (no `ethtool` binary needed): read it (`weft
 * doctor`) and switch it (the vxlan backend turns it off on its device, as Calico does on its own).
 *
 * @module
 */
import { ERRNO_NAMES, NetlinkError } from "./errors.ts";
import { c, libcErrno as errno } from "./loader.ts";
import { withNetns } from "./netns.ts";

const AF_INET = 2;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const SIOCETHTOOL = 0x8946n;
const ETHTOOL_GTXCSUM = 0x16;
const ETHTOOL_STXCSUM = 0x17;

/**
 * One `struct ethtool_value` command on `ifname`; the value the kernel left in it, or `undefined` when
 * the driver does not support the command (EOPNOTSUPP, EINVAL).
 */
function ethtoolValue(ifname: string, cmd: number, data: number, what: string): number | undefined {
  const libc = c();
  const fd = libc.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw new NetlinkError("ethtool socket", errno(), 0, "socket() failed");
  try {
    // struct ethtool_value { __u32 cmd; __u32 data; }
    const value = new Uint32Array([cmd, data]);
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
      throw new NetlinkError(`ethtool ${what} ${ifname}`, e, 0, ERRNO_NAMES[e] ?? "ioctl failed");
    }
    return value[1];
  } finally {
    libc.close(fd);
  }
}

function inNetns<T>(netns: string | undefined, fn: () => T): T {
  return netns === undefined ? fn() : withNetns(netns, fn);
}

/**
 * Whether TX checksum offload is on for `ifname`, in namespace `netns` (default: the calling thread's,
 * e.g. pass a handle's `nl.netns`). Returns `undefined` when the driver does not answer the query.
 */
export function txChecksumOffload(ifname: string, netns?: string): boolean | undefined {
  const v = inNetns(netns, () => ethtoolValue(ifname, ETHTOOL_GTXCSUM, 0, "get tx-checksum"));
  return v === undefined ? undefined : v !== 0;
}

/**
 * Switches TX checksum offload of `ifname` on or off (ETHTOOL_STXCSUM: every tx-checksum-* feature, as
 * `ethtool -K <dev> tx off`), in namespace `netns` (default: the calling thread's); false when the driver
 * does not support switching it.
 */
export function setTxChecksumOffload(ifname: string, on: boolean, netns?: string): boolean {
  return inNetns(netns, () => ethtoolValue(ifname, ETHTOOL_STXCSUM, on ? 1 : 0, "set tx-checksum")) !==
    undefined;
}
