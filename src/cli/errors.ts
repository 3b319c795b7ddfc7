/**
 * The error commands throw for a failure the user must see as one clear line (`weft: …`).
 *
 * @module
 */

/** Thrown by commands for a failure the user must see as one clear line, with exit code `code`. */
export class CliError extends Error {
  /** Creates the error; `code` becomes the process exit code. */
  constructor(message: string, readonly code = 1) {
    super(message);
    this.name = "CliError";
  }
}
