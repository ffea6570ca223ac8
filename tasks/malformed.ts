/**
 * What happens to a malformed row of a dataset file: by default it throws (the error names the
 * file and line or row); with `--skip-malformed` it is skipped and counted, and the count goes in
 * the row's protocol.
 *
 * A row is malformed when it cannot be parsed (`SyntaxError`) or lacks a field or has one of the
 * wrong type (`TypeError`). Other errors are never skipped: an empty choice list (`RangeError`),
 * a labels file whose length disagrees with the items, a file that is not a dataset at all.
 *
 * @module
 */

/** How many rows were skipped as malformed, and where the first ones were. */
export interface SkippedRows {
  /** Whether malformed rows were skipped (`--skip-malformed`) rather than thrown. */
  readonly skipMalformed: boolean;
  /** Rows skipped as malformed. */
  readonly skippedMalformed: number;
  /** The first skipped rows' errors (at most {@linkcode MAX_EXAMPLES}), each naming file and line. */
  readonly skippedExamples: readonly string[];
}

/** How many skipped rows' errors {@linkcode MalformedRows.summary} keeps. */
export const MAX_EXAMPLES = 10;

/**
 * The malformed-row policy of one read: throw, or skip and count.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { MalformedRows } from "./malformed.ts";
 * const rows = new MalformedRows(true);
 * const parsed = ['{"a":1}', "{oops"].map((l, i) => rows.guard(() => {
 *   try {
 *     return JSON.parse(l);
 *   } catch {
 *     throw new SyntaxError(`data.jsonl:${i + 1}: not valid JSON`);
 *   }
 * }));
 * assert.deepEqual(parsed, [{ a: 1 }, undefined]);
 * assert.equal(rows.summary().skippedMalformed, 1);
 * ```
 */
export class MalformedRows {
  readonly #skip: boolean;
  #count = 0;
  readonly #examples: string[] = [];

  /** @param skip Skip and count malformed rows instead of throwing. */
  constructor(skip = false) {
    this.#skip = skip;
  }

  /** Whether malformed rows are skipped. */
  get skip(): boolean {
    return this.#skip;
  }

  /**
   * Runs `parse` for one row: its result, or `undefined` when it threw a `SyntaxError` or
   * `TypeError` and rows are skipped (the error is counted). Other errors always propagate.
   */
  guard<T>(parse: () => T): T | undefined {
    try {
      return parse();
    } catch (e) {
      if (!this.#skip || !(e instanceof SyntaxError || e instanceof TypeError)) throw e;
      this.#count++;
      if (this.#examples.length < MAX_EXAMPLES) this.#examples.push(e.message);
      return undefined;
    }
  }

  /** The count and first errors, for a row's protocol. */
  summary(): SkippedRows {
    return {
      skipMalformed: this.#skip,
      skippedMalformed: this.#count,
      skippedExamples: [...this.#examples],
    };
  }
}
