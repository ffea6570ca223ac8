/**
 * Error types shared across lowbit.
 *
 * Plain `TypeError` / `RangeError` / `SyntaxError` carry wrong input (with the file or field named
 * in the message); the classes below are domain errors that the matrix runner recognises.
 *
 * @module
 */

/** A method, task or kernel cannot run the requested configuration; the runner records the cell as `unsupported`. */
export class UnsupportedConfigError extends Error {
  override name = "UnsupportedConfigError";
}

/** A file (checkpoint, config, tokenizer, dataset) is malformed; the message names the file and what was expected. */
export class FormatError extends Error {
  override name = "FormatError";
  /** The file that is malformed. */
  readonly file: string;
  /** Creates an error about `file`; the message is prefixed with the file's name. */
  constructor(file: string, message: string, options?: ErrorOptions) {
    super(`${file}: ${message}`, options);
    this.file = file;
  }
}

/** A file is not available: not in the cache and no way (or no permission) to download it. */
export class NotAvailableError extends Error {
  override name = "NotAvailableError";
}
