/**
 * Reference fused dequant-matmul over {@linkcode PackedWeight} codes, in plain TypeScript: the
 * oracle for faster backends. Codes are decoded on the fly, one row at a time (no dequantized
 * copy of the matrix), each row rounded to float32 exactly like `dequantizePacked`; sums are
 * accumulated in float64 and stored as float32.
 *
 * @module
 */

import { codesPerWord, MAX_BITS, MIN_BITS, type PackedWeight } from "../../core/quantizer.ts";

function shape(p: PackedWeight): string {
  return `${p.rows}×${p.cols} (${p.bits}-bit, group ${p.groupSize})`;
}

/**
 * Checks that `p` is self-consistent and that `x` / `out` fit `tokens` rows of it; throws a
 * `RangeError` naming `op` and both shapes. Kernels call this before reading any buffer.
 */
export function validatePacked(
  op: string,
  x: Float32Array,
  tokens: number,
  p: PackedWeight,
  out: Float32Array,
): void {
  const fail = (why: string) => {
    throw new RangeError(`${op}: ${why} (x ${tokens}×${p.cols}, weight ${shape(p)})`);
  };
  if (!Number.isInteger(p.bits) || p.bits < MIN_BITS || p.bits > MAX_BITS) {
    fail(`bits ${p.bits} outside [${MIN_BITS}, ${MAX_BITS}]`);
  }
  if (!Number.isInteger(tokens) || tokens < 0) fail(`token count ${tokens} is not a count`);
  if (!(p.rows >= 0 && p.cols >= 1 && p.groupSize >= 1)) fail("bad weight dimensions");
  const wordsPerRow = Math.ceil(p.cols / codesPerWord(p.bits));
  if (p.wordsPerRow !== wordsPerRow) fail(`wordsPerRow ${p.wordsPerRow}, expected ${wordsPerRow}`);
  if (p.words.length !== p.rows * wordsPerRow) {
    fail(`packed words hold ${p.words.length} values, expected ${p.rows}×${wordsPerRow}`);
  }
  const groups = p.groupsPerRow;
  if (!p.groupIndex && groups !== Math.ceil(p.cols / p.groupSize)) {
    fail(`groupsPerRow ${groups}, expected ${Math.ceil(p.cols / p.groupSize)}`);
  }
  if (p.scales.length !== p.rows * groups || p.zeros.length !== p.rows * groups) {
    fail(
      `scales/zeros hold ${p.scales.length}/${p.zeros.length} values, expected ${p.rows}×${groups}`,
    );
  }
  if (p.groupIndex) {
    if (p.groupIndex.length !== p.cols) {
      fail(`groupIndex holds ${p.groupIndex.length} values, expected ${p.cols}`);
    }
    for (let c = 0; c < p.cols; c++) {
      if (p.groupIndex[c]! >= groups) fail(`groupIndex[${c}] = ${p.groupIndex[c]} ≥ ${groups}`);
    }
  }
  if (x.length < tokens * p.cols) fail(`x holds ${x.length} values, needs ${tokens}×${p.cols}`);
  if (out.length < tokens * p.rows) {
    fail(`out holds ${out.length} values, needs ${tokens}×${p.rows}`);
  }
}

/** `out[t][o] = Σ_c x[t][c] · scale[o][g(c)] · (q[o][c] − zero[o][g(c)])`. */
export function matmulPackedRef(
  x: Float32Array,
  tokens: number,
  p: PackedWeight,
  out: Float32Array,
): void {
  validatePacked("matmulPacked", x, tokens, p, out);
  const { rows, cols, bits } = p;
  const per = codesPerWord(bits);
  const mask = 2 ** bits - 1;
  // The float32 dequantized row, exactly as `dequantizePacked` stores it.
  const w = new Float32Array(cols);
  for (let o = 0; o < rows; o++) {
    const wo = o * p.wordsPerRow;
    const go = o * p.groupsPerRow;
    for (let c = 0; c < cols; c++) {
      const q = (p.words[wo + Math.floor(c / per)]! >>> ((c % per) * bits)) & mask;
      const g = go + (p.groupIndex ? p.groupIndex[c]! : Math.floor(c / p.groupSize));
      w[c] = p.scales[g]! * (q - p.zeros[g]!);
    }
    for (let t = 0; t < tokens; t++) {
      const xo = t * cols;
      let s = 0;
      for (let c = 0; c < cols; c++) s += x[xo + c]! * w[c]!;
      out[t * rows + o] = s;
    }
  }
}
