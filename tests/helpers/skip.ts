/**
 * What a test needs and this machine may lack (root, a binary, a kernel feature): a test that cannot run
 * here is reported as ignored, with its reason printed once to stderr, and never passes vacuously by
 * returning early. No imports, so unit tests beside the code use it too.
 *
 * ```ts
 * Deno.test({ name: "…", ignore: requireRoot() || skipUnless(hasBinary("etcd"), "etcd is not installed"), fn() {…} });
 * ```
 *
 * @module
 */

/** True when the tests may build namespaces. */
export const ROOT = Deno.uid() === 0;

const reported = new Set<string>();

/**
 * Value for a test's `ignore`: true (skip) unless `ok`, and then prints `reason` once to stderr, so a
 * skipped test never passes silently (`deno test` itself only says "ignored").
 */
export function skipUnless(ok: boolean, reason: string): boolean {
  if (!ok && !reported.has(reason)) {
    reported.add(reason);
    console.error(`SKIPPED tests: ${reason}`);
  }
  return !ok;
}

/** Value for a test's `ignore`: skip (with a visible reason) when not root. `ignore: requireRoot()`. */
export function requireRoot(): boolean {
  return skipUnless(ROOT, "not root: tests that build network namespaces are skipped (run as root)");
}

/** Whether an executable is on `PATH` (for tests that need `etcd`, `ping`, `ctr`…). */
export function hasBinary(name: string): boolean {
  for (const dir of (Deno.env.get("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin").split(":")) {
    try {
      if (Deno.statSync(`${dir}/${name}`).isFile) return true;
    } catch { /* not here */ }
  }
  return false;
}

/**
 * Value for a test's `ignore`: skip (saying which are missing) unless every named executable is on `PATH`.
 */
export function needBinaries(...names: string[]): boolean {
  const missing = names.filter((n) => !hasBinary(n));
  return skipUnless(!missing.length, `not installed: ${missing.join(", ")}`);
}

// Tests that write `ignore: !ROOT` say why they were ignored through this line.
if (!ROOT) requireRoot();
