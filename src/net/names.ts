/**
 * Names that arrive from outside and end up as interface names or file names: the CNI container ID and
 * interface name, and the CNI network name. Validated here once, used by the CNI environment and config
 * parsers and by the IPAM store (which builds paths from them and so must never accept `/` or `..`).
 *
 * @module
 */

/** The CNI spec's grammar for a container ID (also the network name): no `/`, no leading `.`. */
export const CONTAINER_ID_RE: RegExp = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;

/** The longest name weft accepts as one path component (a Linux file name's limit). */
const MAX_FILE_NAME = 255;

/** Whether `v` is a valid CNI container ID (and so also safe as one file name). */
export function isContainerId(v: string): boolean {
  return v.length <= MAX_FILE_NAME && CONTAINER_ID_RE.test(v);
}

/**
 * Whether `v` is a valid Linux interface name: 1–15 bytes, not `.` or `..`, no `/`, `:`, whitespace or
 * control characters (the kernel's `dev_valid_name()`, plus `:` which marks an alias).
 */
export function isIfname(v: string): boolean {
  // deno-lint-ignore no-control-regex -- control characters are exactly what must be rejected
  return v.length > 0 && v.length <= 15 && v !== "." && v !== ".." && !/[\s/:\x00-\x1f\x7f]/.test(v) &&
    new TextEncoder().encode(v).length <= 15;
}
