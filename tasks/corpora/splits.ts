/**
 * Named splits of corpus files, so calibration and evaluation text never overlap.
 *
 * TinyStories (the one file we have offline) is cut in two at a story or paragraph boundary:
 * the cut is the first blank line (`"\n\n"`) at or after the middle byte of the file. `calib` is
 * every byte before the cut; `eval` every byte after the blank line. Neither contains the two
 * newline bytes of the cut. The byte range goes in every row, so another implementation can cut
 * the same file the same way.
 *
 * @module
 */

/** Which bytes of a file a split covers, and by what rule. */
export interface SplitInfo {
  readonly name: string;
  /** The rule, in words. */
  readonly rule: string;
  /** First byte of the split (inclusive). */
  readonly byteStart: number;
  /** One past the last byte of the split. */
  readonly byteEnd: number;
}

const HALVES_RULE = "cut at the first blank line at or after the middle byte of the file; " +
  "calib = bytes before the cut, eval = bytes after the blank line";

/** Byte offset of the first `"\n\n"` at or after `from`, or -1. */
export function findBlankLine(bytes: Uint8Array, from: number): number {
  for (let i = Math.max(0, from); i + 1 < bytes.length; i++) {
    if (bytes[i] === 10 && bytes[i + 1] === 10) return i;
  }
  return -1;
}

/**
 * The byte range of split `split` of corpus `corpus` (only `calib`/`eval` halves exist today).
 * Throws a `RangeError` when the file has no blank line after its middle.
 */
export function applySplit(corpus: string, split: string, bytes: Uint8Array): SplitInfo {
  if (split !== "calib" && split !== "eval") {
    throw new TypeError(`Corpus "${corpus}" has no split rule "${split}" (known: calib, eval)`);
  }
  const cut = findBlankLine(bytes, Math.floor(bytes.length / 2));
  if (cut < 0) {
    throw new RangeError(
      `Cannot split "${corpus}" into calib/eval halves: no blank line after byte ${
        Math.floor(bytes.length / 2)
      } of ${bytes.length}`,
    );
  }
  return split === "calib"
    ? { name: split, rule: HALVES_RULE, byteStart: 0, byteEnd: cut }
    : { name: split, rule: HALVES_RULE, byteStart: cut + 2, byteEnd: bytes.length };
}
