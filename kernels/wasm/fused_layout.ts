/**
 * The kernel-side layout of a {@linkcode PackedWeight} for the fused dequant kernel `dq_gemv`
 * (see `kernels.c`): integer dot products (`i32x4.dot_i16x8_s`) of the codes with the
 * activations rounded to int16.
 *
 * - Columns are sorted by group (act-order's `groupIndex` becomes contiguous), and each group is
 *   cut into *segments* of at most {@linkcode SEGMENT_COLS} columns, each padded to whole
 *   *chunks*. A segment is the unit of the int16 activation scale and of the int32 accumulators,
 *   which it keeps far from overflow (≤ 64 products of ≤ 255 · 32767 per lane).
 * - A chunk is `8 · planes` columns of one row in one 128-bit vector: eight 16-bit lanes, lane
 *   `i` holding the codes of columns `i, 8 + i, 16 + i, …` at bits `0, bits, 2·bits, …`. A shift
 *   and a mask give eight codes (one plane) in column order, ready for a dot product with eight
 *   consecutive activations. `planes` is `floor(16 / bits)`, or the largest power of two below
 *   it when that pads fewer columns (3 bits with groups of 128: 4 planes, 128 columns per group,
 *   instead of 5 planes, 4 chunks of 40 = 160).
 * - Rows are in blocks of {@linkcode BLOCK_ROWS}: `[block][chunk][row][8 lanes]`, so the kernel
 *   streams the codes once, front to back, and shares every activation vector among four rows.
 *
 * @module
 */

import { codesPerWord, type PackedWeight } from "../../core/quantizer.ts";

/** Rows per block (four int32x4 accumulators in the kernel). */
export const BLOCK_ROWS = 4;

/** Most columns in one segment (one activation scale, one int32 accumulation). */
export const SEGMENT_COLS = 256;

/** A packed weight rearranged for `dq_gemv` (see `kernels.c`). */
export interface FusedLayout {
  readonly bits: number;
  readonly rows: number;
  readonly cols: number;
  /** Row blocks of {@linkcode BLOCK_ROWS}. */
  readonly blocks: number;
  /** Codes per 16-bit lane (see the module doc). */
  readonly planes: number;
  /** Columns per chunk: `8 · planes`. */
  readonly chunkCols: number;
  /** Chunks per row (all segments, padded). */
  readonly chunks: number;
  readonly segments: number;
  /** Padded columns: `chunks · chunkCols`. */
  readonly kp: number;
  /** `[blocks][chunks][4 rows][8 lanes]` 16-bit words of codes (unsigned, as packed). */
  readonly codes: Uint16Array;
  /** `[blocks][segments][4]` scales (0 for padding rows). */
  readonly scales: Float32Array;
  /** `[blocks][segments][4]` zero points, as floats. */
  readonly zeros: Float32Array;
  /** End chunk (exclusive) of each segment. */
  readonly segmentEnds: Uint32Array;
  /** Source column of every padded column, −1 for padding; `null` when it is the identity. */
  readonly colmap: Int32Array | null;
}

/** Rearranges `p` (assumed valid, see `validatePacked`) into a {@linkcode FusedLayout}. */
export function fusedLayout(p: PackedWeight): FusedLayout {
  const { bits, rows, cols } = p;
  const per = codesPerWord(bits);
  const mask = 2 ** bits - 1;
  const groups = p.groupsPerRow;
  const groupOf = (c: number) => p.groupIndex ? p.groupIndex[c]! : Math.floor(c / p.groupSize);
  const members: number[][] = Array.from({ length: groups }, () => []);
  for (let c = 0; c < cols; c++) members[groupOf(c)]!.push(c);
  const most = Math.floor(16 / bits);
  const pow2 = 2 ** Math.floor(Math.log2(most));
  const planes = paddedCols(members, 8 * pow2) < paddedCols(members, 8 * most) ? pow2 : most;
  const chunkCols = 8 * planes;
  const segCols = segmentCols(chunkCols);
  const pos = new Int32Array(cols);
  const ends: number[] = [];
  const segGroup: number[] = [];
  let chunks = 0;
  for (let g = 0; g < groups; g++) {
    const m = members[g]!;
    for (let s = 0; s < m.length; s += segCols) {
      const n = Math.min(segCols, m.length - s);
      for (let i = 0; i < n; i++) pos[m[s + i]!] = chunks * chunkCols + i;
      chunks += Math.ceil(n / chunkCols);
      ends.push(chunks);
      segGroup.push(g);
    }
  }
  const segments = ends.length;
  const kp = chunks * chunkCols;
  let identity = kp === cols;
  for (let c = 0; identity && c < cols; c++) identity = pos[c] === c;
  let colmap: Int32Array | null = null;
  if (!identity) {
    colmap = new Int32Array(kp).fill(-1);
    for (let c = 0; c < cols; c++) colmap[pos[c]!] = c;
  }
  const blocks = Math.ceil(rows / BLOCK_ROWS);
  const codes = new Uint16Array(blocks * chunks * BLOCK_ROWS * 8);
  const scales = new Float32Array(blocks * segments * BLOCK_ROWS);
  const zeros = new Float32Array(blocks * segments * BLOCK_ROWS);
  for (let r = 0; r < rows; r++) {
    const b = Math.floor(r / BLOCK_ROWS), lane = r % BLOCK_ROWS;
    const src = r * p.wordsPerRow;
    for (let c = 0; c < cols; c++) {
      const q = (p.words[src + Math.floor(c / per)]! >>> ((c % per) * bits)) & mask;
      const k = pos[c]!;
      const within = k % chunkCols;
      const i = ((b * chunks + Math.floor(k / chunkCols)) * BLOCK_ROWS + lane) * 8 + (within % 8);
      codes[i] = codes[i]! | (q << (Math.floor(within / 8) * bits));
    }
    for (let s = 0; s < segments; s++) {
      const g = r * groups + segGroup[s]!;
      scales[(b * segments + s) * BLOCK_ROWS + lane] = p.scales[g]!;
      zeros[(b * segments + s) * BLOCK_ROWS + lane] = p.zeros[g]!;
    }
  }
  return {
    bits,
    rows,
    cols,
    blocks,
    planes,
    chunkCols,
    chunks,
    segments,
    kp,
    codes,
    scales,
    zeros,
    segmentEnds: Uint32Array.from(ends),
    colmap,
  };
}

/** Columns of a segment: whole chunks, at most {@linkcode SEGMENT_COLS}. */
function segmentCols(chunkCols: number): number {
  return Math.floor(SEGMENT_COLS / chunkCols) * chunkCols;
}

/** Padded columns of a row when each group's segments are padded to chunks of `chunkCols`. */
function paddedCols(members: readonly number[][], chunkCols: number): number {
  const segCols = segmentCols(chunkCols);
  let n = 0;
  for (const m of members) {
    for (let s = 0; s < m.length; s += segCols) {
      n += Math.ceil(Math.min(segCols, m.length - s) / chunkCols) * chunkCols;
    }
  }
  return n;
}
