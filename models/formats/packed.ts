/**
 * What every codec needs from a {@linkcode PackedWeight}: a consistency check with messages that
 * name the weight, the group of every column, and the reverse: a packed weight from codes,
 * scales, zeros and a group index read from a checkpoint.
 *
 * @module
 */

import {
  codesPerWord,
  MAX_BITS,
  MIN_BITS,
  packCodes,
  type PackedWeight,
} from "../../core/quantizer.ts";

/**
 * Throws a `RangeError` naming `name` unless `p` is self-consistent: bits in [2, 8], word, scale,
 * zero and group-index lengths, zeros below 2^bits, group indices below `groupsPerRow`.
 */
export function checkPacked(name: string, p: PackedWeight): void {
  const fail = (why: string): never => {
    throw new RangeError(`${name}: ${why} (packed ${p.rows}×${p.cols}, ${p.bits}-bit)`);
  };
  if (!Number.isInteger(p.bits) || p.bits < MIN_BITS || p.bits > MAX_BITS) {
    fail(`bits ${p.bits} outside [${MIN_BITS}, ${MAX_BITS}]`);
  }
  if (!(Number.isInteger(p.rows) && p.rows >= 1 && Number.isInteger(p.cols) && p.cols >= 1)) {
    fail("rows and cols must be positive integers");
  }
  if (!(Number.isInteger(p.groupSize) && p.groupSize >= 1)) fail(`groupSize ${p.groupSize}`);
  const wordsPerRow = Math.ceil(p.cols / codesPerWord(p.bits));
  if (p.wordsPerRow !== wordsPerRow || p.words.length !== p.rows * wordsPerRow) {
    fail(`words hold ${p.words.length} values, expected ${p.rows}×${wordsPerRow}`);
  }
  const g = p.groupsPerRow;
  if (!p.groupIndex && g !== Math.ceil(p.cols / p.groupSize)) {
    fail(`groupsPerRow ${g}, expected ⌈${p.cols}/${p.groupSize}⌉`);
  }
  if (p.scales.length !== p.rows * g || p.zeros.length !== p.rows * g) {
    fail(`scales/zeros hold ${p.scales.length}/${p.zeros.length} values, expected ${p.rows}×${g}`);
  }
  const maxq = 2 ** p.bits - 1;
  for (let i = 0; i < p.zeros.length; i++) {
    if (p.zeros[i]! > maxq) fail(`zero ${p.zeros[i]} at index ${i} exceeds ${maxq}`);
  }
  if (p.groupIndex) {
    if (p.groupIndex.length !== p.cols) {
      fail(`groupIndex holds ${p.groupIndex.length} values, expected ${p.cols}`);
    }
    for (let c = 0; c < p.cols; c++) {
      if (p.groupIndex[c]! >= g) fail(`groupIndex[${c}] = ${p.groupIndex[c]} ≥ ${g} groups`);
    }
  }
}

/** What a checkpoint linear reads back as: the packed weight and, when present, its bias. */
export interface ImportedLinear {
  readonly packed: PackedWeight;
  /** The bias as float32, when the checkpoint has one. */
  readonly bias?: Float32Array;
}

/** The group of every column: `groupIndex`, or `⌊c / groupSize⌋`. */
export function columnGroups(p: PackedWeight): Uint32Array {
  if (p.groupIndex) return p.groupIndex;
  const out = new Uint32Array(p.cols);
  for (let c = 0; c < p.cols; c++) out[c] = Math.floor(c / p.groupSize);
  return out;
}

/** Whether `groups[c] = ⌊c / groupSize⌋` for every column (no act-order permutation). */
export function isContiguous(groups: ArrayLike<number>, groupSize: number): boolean {
  for (let c = 0; c < groups.length; c++) {
    if (groups[c] !== Math.floor(c / groupSize)) return false;
  }
  return true;
}

/**
 * A packed weight from `[rows][cols]` codes, `[rows][groups]` scales and zeros and a column →
 * group map; the map is kept as `groupIndex` only when it is not `⌊c / groupSize⌋`.
 */
export function packedFromCodes(
  codes: Uint8Array,
  rows: number,
  cols: number,
  bits: number,
  groupSize: number,
  groups: number,
  scales: Float32Array,
  zeros: Uint8Array,
  columnGroup?: ArrayLike<number>,
): PackedWeight {
  const base = packCodes(codes, rows, cols, bits, { groupSize, scales, zeros });
  const p: PackedWeight = columnGroup && !isContiguous(columnGroup, groupSize)
    ? { ...base, groupsPerRow: groups, groupIndex: Uint32Array.from(columnGroup) }
    : base;
  checkPacked("imported weight", p);
  return p;
}
