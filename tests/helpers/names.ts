/**
 * Unique names for everything a test run creates (namespaces, devices, temp dirs), so runs never collide
 * and leftovers are easy to find: every test namespace starts with {@linkcode TEST_PREFIX_ROOT}.
 *
 * @module
 */

/** What every weft test namespace name starts with. */
export const TEST_PREFIX_ROOT = "wtst-";

/**
 * This run's id: 4 base-36 characters, from `WEFT_TEST_RUN` (set by tests/run_suite.ts, so it can find
 * exactly this run's leftovers) or random.
 */
export const RUN_ID = Deno.env.get("WEFT_TEST_RUN") ??
  Math.floor(Math.random() * 36 ** 4).toString(36).padStart(4, "0");

let counter = 0;

/** A fresh namespace name: `wtst-<run>-<tag><n>`. */
export function uniqueNetnsName(tag: string): string {
  return `${TEST_PREFIX_ROOT}${RUN_ID}-${tag}${counter++}`;
}

/** A fresh interface name of at most 15 characters: `<tag><run><n>`. */
export function uniqueIfName(tag: string): string {
  const name = `${tag}${RUN_ID}${(counter++).toString(36)}`;
  if (name.length > 15) throw new Error(`interface name ${name} is longer than 15 characters`);
  return name;
}
