/**
 * IPAM store compatible with host-local's on-disk format, so a node can switch between
 * flannel + host-local and weft without losing allocations:
 *
 * - `<dataDir>/<network>/<ip>`: one file per allocated IP, created with O_EXCL, holding
 *   `containerID\r\nifname`;
 * - `<dataDir>/<network>/last_reserved_ip.<range>`: where the last allocation in a range stopped;
 * - `<dataDir>/<network>/lock`: flock held for every read-modify-write.
 *
 * @module
 */
import { addIP, formatIP, type IP, type IPNet, lastIP, parseIP } from "../net/ip.ts";

/** Default store root, host-local's. */
export const DEFAULT_IPAM_DIR = "/var/lib/cni/networks";
const LINE_BREAK = "\r\n";

/** One allocation. */
export interface Allocation {
  /** The address. */
  ip: string;
  /** Owner container. */
  containerId: string;
  /** Owner interface. */
  ifname: string;
}

/** Thrown when a range has no free address. */
export class RangeFullError extends Error {
  /** Creates the error for `range`. */
  constructor(range: string) {
    super(`no free address left in ${range}`);
    this.name = "RangeFullError";
  }
}

/** Thrown when (container, ifname) already holds an address in a range. */
export class DuplicateAllocationError extends Error {
  /** Creates the error. */
  constructor(readonly ip: string, containerId: string, ifname: string) {
    super(`${ip} is already allocated to ${containerId}/${ifname}: duplicate allocation (ADD without DEL)`);
    this.name = "DuplicateAllocationError";
  }
}

/** Validates a name that becomes part of a path. */
export function safeName(what: string, v: string): string {
  if (!v || v === "." || v === ".." || v.includes("/") || v.includes("\0") || v.length > 255) {
    throw new Error(`${what} ${JSON.stringify(v)} cannot be used in a file path`);
  }
  return v;
}

/** A network's store directory with its lock. */
export class IpamStore {
  readonly dir: string;

  /** Opens (creating) `<root>/<network>`. */
  constructor(root: string, network: string) {
    this.dir = `${root}/${safeName("network name", network)}`;
    Deno.mkdirSync(this.dir, { recursive: true, mode: 0o755 });
  }

  /** Runs `fn` holding the store's flock. */
  async locked<T>(fn: () => T | Promise<T>): Promise<T> {
    using f = await Deno.open(`${this.dir}/lock`, { read: true, write: true, create: true, mode: 0o600 });
    await f.lock(true);
    try {
      return await fn();
    } finally {
      await f.unlock();
    }
  }

  /** Every allocation (files whose name is an IP). */
  list(): Allocation[] {
    const out: Allocation[] = [];
    for (const e of Deno.readDirSync(this.dir)) {
      if (!e.isFile) continue;
      const name = e.name.replace(/_/g, ":"); // host-local on some filesystems writes ':' as '_'
      try {
        parseIP(name);
      } catch {
        continue;
      }
      const text = Deno.readTextFileSync(`${this.dir}/${e.name}`);
      const [containerId = "", ifname = ""] = text.split(LINE_BREAK);
      out.push({ ip: name, containerId: containerId.trim(), ifname: ifname.trim() });
    }
    return out;
  }

  /** Reserves `ip` for (container, ifname); false when the file exists already. */
  reserve(ip: IP, containerId: string, ifname: string, rangeIndex: number): boolean {
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
      return parseIP(Deno.readTextFileSync(`${this.dir}/last_reserved_ip.${rangeIndex}`).trim());
    } catch {
      return undefined;
    }
  }

  /** Releases every address of (container, ifname); returns them. */
  releaseOwner(containerId: string, ifname: string): string[] {
    const freed: string[] = [];
    for (const a of this.list()) {
      if (a.containerId === containerId && a.ifname === ifname) {
        Deno.removeSync(`${this.dir}/${a.ip}`);
        freed.push(a.ip);
      }
    }
    return freed;
  }

  /** Releases one address. */
  releaseIP(ip: string): void {
    Deno.removeSync(`${this.dir}/${ip}`);
  }
}

/**
 * Allocates the next free address of `subnet` after the last reserved one (host-local's round robin),
 * skipping the network address, the gateway and (IPv4) the broadcast address.
 */
export function allocate(
  store: IpamStore,
  subnet: IPNet,
  gateway: IP,
  containerId: string,
  ifname: string,
  rangeIndex: number,
): IP {
  const fam = subnet.ip.family;
  for (const a of store.list()) {
    const ip = parseIP(a.ip);
    if (ip.family === fam && a.containerId === containerId && a.ifname === ifname) {
      throw new DuplicateAllocationError(a.ip, containerId, ifname);
    }
  }
  const first = addIP(subnet.ip, 1);
  const last = fam === 4 ? addIP(lastIP(subnet), -1) : lastIP(subnet);
  const size = last.value - first.value + 1n;
  const prev = store.lastReserved(rangeIndex);
  let start = prev && prev.family === fam && prev.value >= first.value && prev.value < last.value
    ? addIP(prev, 1)
    : first;
  for (let i = 0n; i < size; i++) {
    const ip = start;
    start = ip.value >= last.value ? first : addIP(ip, 1);
    if (ip.value === gateway.value) continue;
    if (store.reserve(ip, containerId, ifname, rangeIndex)) return ip;
  }
  throw new RangeFullError(`${formatIP(subnet.ip)}/${subnet.prefix}`);
}
