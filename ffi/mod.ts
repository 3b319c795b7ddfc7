/**
 * weft's kernel interface: libnl-3 / libnl-route-3 through Deno FFI, and namespace switching.
 *
 * Only the safe layer is exported: {@linkcode Netlink} handles (one per namespace, `using`-disposable),
 * plain data types, {@linkcode NetlinkError}, and {@linkcode withNetns}.
 *
 * @module
 */
export { type BatchRequest, Netlink, type NetlinkOpenOptions } from "./netlink.ts";
export { NetlinkError } from "./errors.ts";
export { libnlAvailable, LibraryNotFoundError } from "./loader.ts";
export { netnsCreate, netnsDelete, netnsList, netnsPath, withNetns } from "./netns.ts";
export { setTxChecksumOffload, txChecksumOffload } from "./ethtool.ts";
export { releaseFreeNativeMemory } from "./malloc.ts";
export { checkLibraries, type LibraryCheck } from "./preflight.ts";
export { nftablesLoaded, NftError, nftRun, nftRunAsync, unloadNftablesIfIdle } from "./nftables.ts";
export { NftNetlink } from "./rtnl/nft.ts";
export { conntrackFlushAddress, conntrackFlushAddresses } from "./conntrack.ts";
export { NTF_SELF, NUD_PERMANENT } from "./neighs.ts";
export type { RouteFilter } from "./rtnl/routes.ts";
export * from "./types.ts";
