/**
 * Lazy loading of libnl-3, libnl-route-3 and libc. Nothing is opened at import time: the CNI VERSION
 * call and the CLI's help never pay for `dlopen`, and a machine without libnl fails only when netlink is
 * actually used, with an error that names the Debian package to install.
 *
 * `WEFT_LIBNL_DIR` is searched first for the libnl libraries (with `WEFT_LIBNL_ONLY_DIR=1`, only it).
 *
 * @module
 */
import { LIBC_SYMBOLS } from "./libc_symbols.ts";
import { LIBNL_GENL_SYMBOLS, LIBNL_ROUTE_SYMBOLS, LIBNL_SYMBOLS } from "./libnl_symbols.ts";
import { SyscallError } from "./syscall_error.ts";

/** Thrown when a shared library cannot be opened. */
export class LibraryNotFoundError extends Error {
  /** Creates the error for `library`, naming the package that provides it. */
  constructor(readonly library: string, readonly pkg: string, options?: ErrorOptions) {
    super(
      `cannot load ${library}: install the Debian/Ubuntu package ${pkg} (apt-get install ${pkg})` +
        (options?.cause instanceof Error ? ` [${options.cause.message}]` : ""),
      options,
    );
    this.name = "LibraryNotFoundError";
  }
}

function candidates(file: string): string[] {
  const dir = Deno.env.get("WEFT_LIBNL_DIR");
  // WEFT_LIBNL_ONLY_DIR: look nowhere else (pins a library build; lets tests see a missing library).
  if (dir && Deno.env.get("WEFT_LIBNL_ONLY_DIR")) return [`${dir}/${file}`];
  const arch = Deno.build.arch === "aarch64" ? "aarch64-linux-gnu" : "x86_64-linux-gnu";
  return [
    ...(dir ? [`${dir}/${file}`] : []),
    file, // the dynamic loader's own search path
    `/usr/lib/${arch}/${file}`,
    `/lib/${arch}/${file}`,
    `/usr/lib64/${file}`,
    `/usr/lib/${file}`,
  ];
}

/** Finds the first path of `file` that the dynamic loader accepts. */
function locate(file: string, pkg: string): string {
  let last: unknown;
  for (const path of candidates(file)) {
    try {
      Deno.dlopen(path, {}).close();
      return path;
    } catch (err) {
      last = err;
    }
  }
  throw new LibraryNotFoundError(file, pkg, { cause: last });
}

// Keeps the per-symbol library handles alive for the life of the process.
const handles: Deno.DynamicLibrary<Deno.ForeignLibraryInterface>[] = [];

/**
 * Opens `file` and returns its symbols, each bound on first use. `Deno.dlopen` compiles a call
 * trampoline per symbol (~0.25 ms each here): binding all 126 libnl symbols up front cost ~28 ms of every
 * CNI call, which uses a fraction of them. After its first use a symbol is a plain property.
 */
function open<S extends Deno.ForeignLibraryInterface>(
  file: string,
  pkg: string,
  symbols: S,
): { symbols: Deno.DynamicLibrary<S>["symbols"] } {
  const path = locate(file, pkg);
  const lazy = {} as Record<string, unknown>;
  for (const name of Object.keys(symbols)) {
    Object.defineProperty(lazy, name, {
      configurable: true,
      enumerable: true,
      get() {
        const lib = Deno.dlopen(path, { [name]: symbols[name]! } as Deno.ForeignLibraryInterface);
        handles.push(lib);
        const fn = lib.symbols[name];
        Object.defineProperty(lazy, name, { value: fn, enumerable: true });
        return fn;
      },
    });
  }
  return { symbols: lazy as Deno.DynamicLibrary<S>["symbols"] };
}

let libnl: Deno.DynamicLibrary<typeof LIBNL_SYMBOLS>["symbols"] | undefined;
let libnlRoute: Deno.DynamicLibrary<typeof LIBNL_ROUTE_SYMBOLS>["symbols"] | undefined;
let libnlGenl: Deno.DynamicLibrary<typeof LIBNL_GENL_SYMBOLS>["symbols"] | undefined;
let libc: Deno.DynamicLibrary<typeof LIBC_SYMBOLS>["symbols"] | undefined;

/** libnl-3 symbols, opened on first use. */
export function nl(): Deno.DynamicLibrary<typeof LIBNL_SYMBOLS>["symbols"] {
  return libnl ??= open("libnl-3.so.200", "libnl-3-200", LIBNL_SYMBOLS).symbols;
}

/** libnl-route-3 symbols, opened on first use (opens libnl-3 first, which it links against). */
export function rtnl(): Deno.DynamicLibrary<typeof LIBNL_ROUTE_SYMBOLS>["symbols"] {
  nl();
  return libnlRoute ??= open("libnl-route-3.so.200", "libnl-route-3-200", LIBNL_ROUTE_SYMBOLS).symbols;
}

/** libnl-genl-3 symbols, opened on first use (only kernel WireGuard needs them). */
export function genl(): Deno.DynamicLibrary<typeof LIBNL_GENL_SYMBOLS>["symbols"] {
  nl();
  return libnlGenl ??= open("libnl-genl-3.so.200", "libnl-genl-3-200", LIBNL_GENL_SYMBOLS).symbols;
}

/** libc symbols, opened on first use. */
export function c(): Deno.DynamicLibrary<typeof LIBC_SYMBOLS>["symbols"] {
  return libc ??= open("libc.so.6", "libc6", LIBC_SYMBOLS).symbols;
}

/** True when libnl and libnl-route can be loaded here (used by `weft doctor` and test skips). */
export function libnlAvailable(): boolean {
  try {
    rtnl();
    return true;
  } catch {
    return false;
  }
}

/** The calling thread's libc `errno` (read right after a failed libc call). */
export function libcErrno(): number {
  const loc = c().__errno_location();
  return loc === null ? 0 : new Deno.UnsafePointerView(loc).getInt32(0);
}

/** Throws a {@linkcode SyscallError} for `op` with the calling thread's current errno. */
export function failSyscall(op: string): never {
  throw new SyscallError(op, libcErrno());
}
