/**
 * IPAM store compatible with host-local's on-disk format, so a node can switch between
 * flannel + host-local and weft (either way) without losing allocations:
 *
 * - `<dataDir>/<network>/<ip>`: one file per allocated IP, created with O_EXCL, holding
 *   `containerID\r\nifname` (host-local before CNI 0.7 wrote only `containerID`);
 * - `<dataDir>/<network>/last_reserved_ip.<range>`: where the last allocation in a range stopped;
 * - `<dataDir>/<network>/lock`: an flock held by the allocator around every read-modify-write.
 *
 * The store never builds a path from untrusted text: the network name, container ID and ifname are
 * validated so none can name `..` or a `/`, and the IP file names are formatted by us.
 *
 * @module
 */
import { formatIP, type IP, tryParseIP } from "../net/ip.ts";
import { isContainerId, isIfname } from "../net/names.ts";

/** Default store root, host-local's. */
export const DEFAULT_IPAM_DIR = "/var/lib/cni/networks";

/** host-local's separator between container ID and ifname. */
const LINE_BREAK = "\r\n";

/** One allocation. */
export interface Allocation {
  /** The address, as in the file name. */
  ip: string;
  /** Owner container (empty when the file was left empty by a crash between create and write). */
  containerId: string;
  /** Owner interface (empty in files written by old host-local versions). */
  ifname: string;
}

/** A name that would escape the store directory or corrupt its files. */
export class UnsafeNameError extends Error {
  /** Creates the error for `what` = `value`. */
  constructor(what: string, value: string) {
    super(`${what} ${JSON.stringify(value)} cannot be used: it could escape the store directory`);
    this.name = "UnsafeNameError";
  }
}

/** Validates a name that becomes one path component (network name, container ID as file name): the
 * CNI container ID grammar, which has no `/` and no leading `.`. */
export function safeName(what: string, v: string): string {
  if (!isContainerId(v)) throw new UnsafeNameError(what, v);
  return v;
}

/** Validates an interface name: at most 15 bytes, no `/`, whitespace, `:` or control characters. */
export function safeIfname(v: string): string {
  if (!isIfname(v)) throw new UnsafeNameError("interface name", v);
  return v;
}

/** A network's store directory (`<root>/<network>`). */
export class IpamStore {
  /** The directory holding this network's files. */
  readonly dir: string;

  /** Opens (creating) `<root>/<network>`. */
  constructor(root: string, network: string) {
    this.dir = `${root}/${safeName("network name", network)}`;
    Deno.mkdirSync(this.dir, { recursive: true, mode: 0o755 });
  }

  /**
   * Runs `fn` holding the store's flock (the same lock host-local takes, so both can share a node).
   * Synchronous on purpose: a CNI call has nothing else to do while it waits, and the blocking calls skip
   * the thread-pool round trips of their async twins.
   */
  locked<T>(fn: () => T): T {
    using f = Deno.openSync(`${this.dir}/lock`, { read: true, write: true, create: true, mode: 0o600 });
    f.lockSync(true);
    try {
      return fn();
    } finally {
      f.unlockSync();
    }
  }

  /** Every allocation (the files whose name is an IP address). */
  list(): Allocation[] {
    const out: Allocation[] = [];
    for (const e of Deno.readDirSync(this.dir)) {
      if (!e.isFile || !tryParseIP(e.name)) continue;
      let text: string;
      try {
        text = Deno.readTextFileSync(`${this.dir}/${e.name}`);
      } catch (err) {
        if (err instanceof Deno.errors.NotFound) continue; // released while we listed
        throw err;
      }
      const [containerId = "", ifname = ""] = text.split(LINE_BREAK);
      out.push({ ip: e.name, containerId: containerId.trim(), ifname: ifname.trim() });
    }
    return out;
  }

  /** The names in the store's folder (allocated addresses among them), without reading any file. */
  names(): Set<string> {
    const out = new Set<string>();
    for (const e of Deno.readDirSync(this.dir)) out.add(e.name);
    return out;
  }

  /** Reserves `ip` for (container, ifname) with O_EXCL; false when the file exists already. */
  reserve(ip: IP, containerId: string, ifname: string, rangeIndex: number): boolean {
    safeName("container ID", containerId);
    safeIfname(ifname);
    const path = `${this.dir}/${formatIP(ip)}`;
    try {
      Deno.writeTextFileSync(path, `${containerId}${LINE_BREAK}${ifname}`, { createNew: true, mode: 0o644 });
    } catch (err) {
      if (err instanceof Deno.errors.AlreadyExists) return false;
      throw err;
    }
    Deno.writeTextFileSync(`${this.dir}/last_reserved_ip.${rangeIndex}`, formatIP(ip));
    return true;
  }

  /** The last reserved address of a range, if recorded. */
  lastReserved(rangeIndex: number): IP | undefined {
    try {
      return tryParseIP(Deno.readTextFileSync(`${this.dir}/last_reserved_ip.${rangeIndex}`).trim());
    } catch {
      return undefined;
    }
  }

  /**
   * Releases every address of (container, ifname), including files from old host-local versions that
   * hold only the container ID; returns the released addresses.
   */
  releaseOwner(containerId: string, ifname: string): string[] {
    const freed: string[] = [];
    for (const a of this.list()) {
      if (a.containerId === containerId && (a.ifname === ifname || a.ifname === "")) {
        if (this.releaseIP(a.ip)) freed.push(a.ip);
      }
    }
    return freed;
  }

  /** The owner of `ip`, or `undefined` when it is not allocated. */
  owner(ip: string): { containerId: string; ifname: string } | undefined {
    if (!tryParseIP(ip)) throw new UnsafeNameError("address", ip);
    let text: string;
    try {
      text = Deno.readTextFileSync(`${this.dir}/${ip}`);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return undefined;
      throw err;
    }
    const [containerId = "", ifname = ""] = text.split(LINE_BREAK);
    return { containerId: containerId.trim(), ifname: ifname.trim() };
  }

  /**
   * Releases `ip` only while (container, ifname) still holds it (files of old host-local versions hold
   * only the container ID): a record that went stale — the address freed and handed to another pod
   * since — releases nothing. Returns whether it released. Call it under {@linkcode locked}.
   */
  releaseIfOwner(ip: string, containerId: string, ifname: string): boolean {
    const o = this.owner(ip);
    if (!o || o.containerId !== containerId || (o.ifname !== ifname && o.ifname !== "")) return false;
    return this.releaseIP(ip);
  }

  /** Releases one address; false when it was not allocated. */
  releaseIP(ip: string): boolean {
    if (!tryParseIP(ip)) throw new UnsafeNameError("address", ip);
    try {
      Deno.removeSync(`${this.dir}/${ip}`);
      return true;
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return false;
      throw err;
    }
  }
}
