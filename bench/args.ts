/**
 * A bench's command line: `--flag value` pairs taken out one at a time, the positional arguments (the sizes
 * to measure) left over.
 *
 * @module
 */

/** The arguments of one bench run. */
export class BenchArgs {
  readonly #args: string[];

  /** @param argv the arguments after the script (`Deno.args`) */
  constructor(argv: readonly string[]) {
    this.#args = [...argv];
  }

  /** Takes `flag` and the value after it out of the arguments; undefined when `flag` is absent. */
  take(flag: string): string | undefined {
    const i = this.#args.indexOf(flag);
    if (i < 0) return undefined;
    const v = this.#args[i + 1];
    this.#args.splice(i, 2);
    return v;
  }

  /** Takes a switch (a flag without a value) out of the arguments; whether it was there. */
  flag(flag: string): boolean {
    const i = this.#args.indexOf(flag);
    if (i >= 0) this.#args.splice(i, 1);
    return i >= 0;
  }

  /** What no {@linkcode take} or {@linkcode flag} consumed: the positional arguments. */
  get rest(): string[] {
    return [...this.#args];
  }
}
