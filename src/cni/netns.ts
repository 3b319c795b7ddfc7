/**
 * CNI_NETNS for ADD and CHECK: opened once, as an fd (the veth peer is created straight into it) and as
 * a netlink handle inside it.
 *
 * @module
 */
import { closeFd, openPath, Rtnl, SyscallError } from "../../ffi/rtnl/mod.ts";
import { CNI_ERR, CniError } from "./types.ts";

/** An open container namespace: its fd (close it with `closeFd`) and a handle inside it. */
export interface ContainerNetns {
  /** The namespace file's fd. */
  fd: number;
  /** A netlink handle in the namespace. */
  nl: Rtnl;
}

/** Opens CNI_NETNS: absent is code 3 (unknown container); not a namespace, or unopenable, is code 4. */
export function openContainerNetns(netns: string): ContainerNetns {
  let fd: number;
  try {
    fd = openPath(netns);
  } catch (err) {
    if (err instanceof SyscallError && err.errno === 2) {
      throw new CniError(CNI_ERR.UNKNOWN_CONTAINER, `network namespace ${netns} does not exist`);
    }
    throw new CniError(CNI_ERR.INVALID_ENV, `CNI_NETNS ${netns} cannot be opened: ${(err as Error).message}`);
  }
  try {
    return { fd, nl: Rtnl.open(fd) };
  } catch (err) {
    closeFd(fd);
    if (err instanceof SyscallError && err.errno === 22) {
      throw new CniError(CNI_ERR.INVALID_ENV, `CNI_NETNS ${netns} is not a network namespace`);
    }
    throw err;
  }
}
