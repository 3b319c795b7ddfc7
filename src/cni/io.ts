/**
 * File-system failures as the CNI spec's code 5 ("I/O failure"): the IPAM store, the saved config and
 * subnet.env live on disk, and a full, read-only or unreadable disk is not a bug in weft (code 101) but
 * an I/O error the runtime should see as one.
 *
 * @module
 */
import { CNI_ERR, CniError } from "./types.ts";

const IO_ERRORS = [
  Deno.errors.PermissionDenied,
  Deno.errors.NotFound,
  Deno.errors.AlreadyExists,
  Deno.errors.NotADirectory,
  Deno.errors.IsADirectory,
  Deno.errors.FilesystemLoop,
  Deno.errors.NotCapable,
  Deno.errors.Busy,
  Deno.errors.WriteZero,
  Deno.errors.UnexpectedEof,
  Deno.errors.InvalidData,
];

/** Whether `err` is a file-system error raised by Deno (any errno-carrying one counts). */
export function isIoError(err: unknown): err is Error {
  if (!(err instanceof Error)) return false;
  if (IO_ERRORS.some((e) => err instanceof e)) return true;
  // Errors Deno has no class for (ENOSPC, EROFS, EIO) still carry the errno name as `code`.
  const code = (err as { code?: unknown }).code;
  return err.name !== "NetlinkError" && typeof code === "string" && /^E[A-Z0-9]+$/.test(code);
}

/** Runs `fn`; a file-system error becomes code 5 naming `what` (other errors pass through). */
export function ioStep<T>(what: string, fn: () => T): T {
  try {
    return fn();
  } catch (err) {
    if (!(err instanceof CniError) && isIoError(err)) {
      throw new CniError(CNI_ERR.IO, `${what}: ${err.message}`);
    }
    throw err;
  }
}
