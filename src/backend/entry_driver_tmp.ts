/**
 * TEMPORARY (until issue 11's entries.ts lands on main): the EntryDriver shape of the reshaped reconciler.
 *
 * @module
 */

/** Keeps the entries of one kind that netlink routes/neighbours/FDB do not cover. */
export interface EntryDriver {
  /** Name, matched against `DriverEntry.driver`. */
  readonly name: string;
  /** Installs or replaces `key` with `value`. */
  apply(key: string, value: string): void;
  /** Removes `key` (absent is fine). */
  remove(key: string): void;
  /** Every entry it holds now: key → value. */
  list(): Map<string, string>;
}
