/**
 * The kernel-side layout of a {@linkcode PackedWeight} for the fused dequant kernels: codes of
 * 8 output rows interleaved word by word (one SIMD lane per row, so every lane reads the same
 * input column), columns sorted by group (act-order's `groupIndex` becomes contiguous) and each
 * group padded to whole words (a word never straddles two groups, whatever the group size).
 *
 * @module
 */

import { codesPerWord, type PackedWeight } from "../../core/quantizer.ts";

/** Rows per interleaved block (two 4-lane vectors). */
export const BLOCK_ROWS = 8;

/** A packed weight rearranged for `dq_gemv` (see `kernels.c`). */
export interface FusedLayout {
  readonly bits: number;
  readonly rows: number;
  readonly cols: number;
  /** Row blocks of {@linkcode BLOCK_ROWS}. */
  readonly blocks: number;
  /** Padded words per row. */
  readonly words: number;
  readonly groups: number;
  /** Padded columns: `words · codesPerWord(bits)`. */
  readonly kp: number;
  /** `[blocks][words][8]` words; each code stored as `q ^ 2^(bits−1)`. */
  readonly codes: Uint32Array;
  /** `[blocks][groups][8]` scales (0 for padding rows). */
  readonly scales: Float32Array;
  /** `[blocks][groups][8]` zero points minus `2^(bits−1)`, as floats. */
  readonly zeros: Float32Array;
  /** End word (exclusive) of each group. */
  readonly groupEnds: Uint32Array;
  /** Source column of every padded column, −1 for padding; `null` when it is the identity. */
  readonly colmap: Int32Array | null;
}

/** Rearranges `p` (assumed valid, see `validatePacked`) into a {@linkcode FusedLayout}. */
export function fusedLayout(p: PackedWeight): FusedLayout {
  const { bits, rows, cols } = p;
  const per = codesPerWord(bits);
  const mask = 2 ** bits - 1;
  const half = 2 ** (bits - 1);
  const groups = p.groupsPerRow;
  const groupOf = (c: number) => p.groupIndex ? p.groupIndex[c]! : Math.floor(c / p.groupSize);
  const members: number[][] = Array.from({ length: groups }, () => []);
  for (let c = 0; c < cols; c++) members[groupOf(c)]!.push(c);
  const groupEnds = new Uint32Array(groups);
  const pos = new Int32Array(cols);
  let words = 0;
  for (let g = 0; g < groups; g++) {
    const m = members[g]!;
    for (let i = 0; i < m.length; i++) pos[m[i]!] = words * per + i;
    words += Math.ceil(m.length / per);
    groupEnds[g] = words;
  }
  const kp = words * per;
  let identity = kp === cols;
  for (let c = 0; identity && c < cols; c++) identity = pos[c] === c;
  let colmap: Int32Array | null = null;
  if (!identity) {
    colmap = new Int32Array(kp).fill(-1);
    for (let c = 0; c < cols; c++) colmap[pos[c]!] = c;
  }
  const blocks = Math.ceil(rows / BLOCK_ROWS);
  const codes = new Uint32Array(blocks * words * BLOCK_ROWS);
  const scales = new Float32Array(blocks * groups * BLOCK_ROWS);
  const zeros = new Float32Array(blocks * groups * BLOCK_ROWS);
  for (let r = 0; r < rows; r++) {
    const b = Math.floor(r / BLOCK_ROWS), lane = r % BLOCK_ROWS;
    const src = r * p.wordsPerRow;
    for (let c = 0; c < cols; c++) {
      // Top bit flipped: the kernel reads codes sign-extended, as q − half.
      const q = ((p.words[src + Math.floor(c / per)]! >>> ((c % per) * bits)) & mask) ^ half;
      const k = pos[c]!;
      const i = (b * words + Math.floor(k / per)) * BLOCK_ROWS + lane;
      codes[i] = (codes[i]! | (q << ((k % per) * bits))) >>> 0;
    }
    for (let g = 0; g < groups; g++) {
      scales[(b * groups + g) * BLOCK_ROWS + lane] = p.scales[r * groups + g]!;
      zeros[(b * groups + g) * BLOCK_ROWS + lane] = p.zeros[r * groups + g]! - half;
    }
  }
  return { bits, rows, cols, blocks, words, groups, kp, codes, scales, zeros, groupEnds, colmap };
}
