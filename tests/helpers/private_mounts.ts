/**
 * The start of an argv that runs a shell script in a private mount namespace: the bind mounts a test makes
 * there (a library hidden, a directory swapped in, /proc/sys read-only) are seen by that process tree only
 * and vanish with it, so no test can leave the host's mount table changed. Follow it with the script and
 * the script's `$0`, `$1`, ….
 *
 * @module
 */

/** `unshare --mount --propagation private sh -c`: append the script, then its arguments. */
export const PRIVATE_MOUNTS_SH: readonly string[] = [
  "unshare",
  "--mount",
  "--propagation",
  "private",
  "sh",
  "-c",
];
