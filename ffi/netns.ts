/**
 * Network namespace switching for the calling (JS) thread.
 *
 * {@linkcode withNetns} runs a *synchronous* function with the thread switched into a namespace and always
 * switches back, like containernetworking's `ns.Do`. A netlink socket opened inside the window keeps
 * working in that namespace after the switch back, which is how {@linkcode Netlink.open} binds a handle to
 * a namespace. Never `await` inside the window: other JS would run in the wrong namespace.
 *
 * @module
 */
import { cstr } from "./cmem.ts";
import { ERRNO_NAMES, NetlinkError } from "./errors.ts";
import { c, libcErrno as errno } from "./loader.ts";

const O_RDONLY = 0;
const O_CLOEXEC = 0o2000000;
const CLONE_NEWNET = 0x40000000;

/** Where `ip netns add NAME` puts its namespaces. */
export const NETNS_RUN_DIR = "/run/netns";

/** Resolves a namespace reference: a path is used as is, a bare name is looked up under /run/netns. */
export function netnsPath(ref: string): string {
  return ref.includes("/") ? ref : `${NETNS_RUN_DIR}/${ref}`;
}

function fail(op: string): never {
  const e = errno();
  throw new NetlinkError(op, e, 0, ERRNO_NAMES[e] ? `system call failed` : `system call failed (errno ${e})`);
}

/** Opens a namespace file and returns its fd (the caller closes it with {@linkcode closeFd}). */
export function openNetnsFd(ref: string): number {
  const path = netnsPath(ref);
  const fd = c().open(cstr(path), O_RDONLY | O_CLOEXEC);
  if (fd < 0) fail(`open network namespace ${path}`);
  return fd;
}

/** Closes an fd from {@linkcode openNetnsFd}. */
export function closeFd(fd: number): void {
  c().close(fd);
}

/**
 * Runs `fn` with the JS thread inside namespace `ref` (a /run/netns name or a path such as
 * `/proc/<pid>/ns/net`), then switches back, also when `fn` throws.
 */
export function withNetns<T>(ref: string, fn: () => T): T {
  const libc = c();
  const self = libc.open(cstr("/proc/thread-self/ns/net"), O_RDONLY | O_CLOEXEC);
  if (self < 0) fail("open /proc/thread-self/ns/net");
  let target = -1;
  try {
    target = openNetnsFd(ref);
    if (libc.setns(target, CLONE_NEWNET) !== 0) fail(`setns into ${netnsPath(ref)}`);
    try {
      const result = fn();
      if (result instanceof Promise) {
        throw new Error(
          "withNetns: the function must be synchronous (never await inside a namespace window)",
        );
      }
      return result;
    } finally {
      if (libc.setns(self, CLONE_NEWNET) !== 0) {
        // Carrying on in the wrong namespace would program the wrong kernel tables: stop hard.
        console.error(`weft: FATAL: cannot switch back to the original network namespace (errno ${errno()})`);
        Deno.exit(70);
      }
    }
  } finally {
    if (target >= 0) libc.close(target);
    libc.close(self);
  }
}

const MS_BIND = 4096n;
const MS_REC = 16384n;
const MS_SHARED = 1n << 20n;
const MNT_DETACH = 2;
const EINVAL = 22;

/**
 * Makes /run/netns a mount point with shared propagation, as `ip netns add` does (iproute2's
 * netns_add). A namespace bind-mounted there later then appears in every mount namespace copied from
 * this one — e.g. a process started earlier with `ip netns exec`, which sees the host's files through
 * its own mount namespace. Without it (a fresh host whose `/` is private, where no `ip netns add` ever
 * ran) such a process sees the empty placeholder file instead of the namespace.
 */
function shareNetnsRunDir(): void {
  const libc = c();
  Deno.mkdirSync(NETNS_RUN_DIR, { recursive: true });
  const dir = cstr(NETNS_RUN_DIR);
  if (libc.mount(cstr(""), dir, cstr("none"), MS_SHARED | MS_REC, null) === 0) return;
  // EINVAL: not a mount point yet. Make it one (bound onto itself), then share it.
  if (errno() !== EINVAL) fail(`make ${NETNS_RUN_DIR} shared`);
  if (libc.mount(dir, dir, cstr("none"), MS_BIND | MS_REC, null) !== 0) fail(`bind-mount ${NETNS_RUN_DIR}`);
  if (libc.mount(cstr(""), dir, cstr("none"), MS_SHARED | MS_REC, null) !== 0) {
    fail(`make ${NETNS_RUN_DIR} shared`);
  }
}

/**
 * Creates a named network namespace at /run/netns/NAME, the way `ip netns add` does: /run/netns made a
 * shared mount point, then the JS thread unshares a new namespace, bind-mounts it onto the name, and
 * switches back. Returns the path.
 */
export function netnsCreate(name: string): string {
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name)) throw new Error(`invalid namespace name ${JSON.stringify(name)}`);
  const path = netnsPath(name);
  shareNetnsRunDir();
  Deno.writeFileSync(path, new Uint8Array(), { createNew: true, mode: 0o444 });
  const libc = c();
  const self = libc.open(cstr("/proc/thread-self/ns/net"), O_RDONLY | O_CLOEXEC);
  if (self < 0) fail("open /proc/thread-self/ns/net");
  try {
    if (libc.unshare(CLONE_NEWNET) !== 0) {
      Deno.removeSync(path);
      fail(`create network namespace ${name}`);
    }
    try {
      const rc = libc.mount(cstr("/proc/thread-self/ns/net"), cstr(path), cstr("none"), MS_BIND, null);
      if (rc !== 0) {
        const err = errno();
        Deno.removeSync(path);
        throw new NetlinkError(
          `bind-mount network namespace ${name}`,
          err,
          0,
          ERRNO_NAMES[err] ?? "mount failed",
        );
      }
    } finally {
      if (libc.setns(self, CLONE_NEWNET) !== 0) {
        console.error(`weft: FATAL: cannot switch back to the original network namespace (errno ${errno()})`);
        Deno.exit(70);
      }
    }
  } finally {
    libc.close(self);
  }
  return path;
}

/** Deletes a named network namespace (like `ip netns del`); false when it did not exist. */
export function netnsDelete(name: string): boolean {
  const path = netnsPath(name);
  try {
    Deno.statSync(path);
  } catch {
    return false;
  }
  c().umount2(cstr(path), MNT_DETACH); // fails harmlessly when it was not mounted
  Deno.removeSync(path);
  return true;
}

/** Names of the namespaces under /run/netns. */
export function netnsList(): string[] {
  try {
    return [...Deno.readDirSync(NETNS_RUN_DIR)].map((e) => e.name).sort();
  } catch {
    return [];
  }
}
