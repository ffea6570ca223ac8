/**
 * Row slices and row concatenations of packed weights: what splitting a fused checkpoint tensor
 * (Phi-3 `qkv_proj`, `gate_up_proj`) into our q/k/v and gate/up, and fusing them back for
 * export, do to the codes, scales, zero points and group index. Rows are output channels, so
 * every per-row quantity moves with its row; the column → group map is shared by all rows and
 * must be the same in every part that is fused.
 *
 * @module
 */

import type { PackedWeight } from "../../core/quantizer.ts";
import { checkPacked } from "./packed.ts";

/** Rows `[start, start + rows)` of a packed weight (copies). */
export function slicePackedRows(p: PackedWeight, start: number, rows: number): PackedWeight {
  if (!(Number.isInteger(start) && Number.isInteger(rows) && start >= 0 && rows >= 1)) {
    throw new RangeError(`slicePackedRows: rows [${start}, ${start + rows}) are not a range`);
  }
  if (start + rows > p.rows) {
    throw new RangeError(
      `slicePackedRows: rows [${start}, ${start + rows}) outside the weight's ${p.rows} rows`,
    );
  }
  if (start === 0 && rows === p.rows) return p;
  const G = p.groupsPerRow, W = p.wordsPerRow;
  return {
    ...p,
    rows,
    words: p.words.slice(start * W, (start + rows) * W),
    scales: p.scales.slice(start * G, (start + rows) * G),
    zeros: p.zeros.slice(start * G, (start + rows) * G),
  };
}

/**
 * The packed weights stacked row-wise (the fused tensor `[Σ rows][cols]`).
 *
 * @throws {RangeError} Naming `name` when the parts differ in bits, columns, group size or
 *   groups per row, or when their column → group maps (act-order `g_idx`) differ: one fused
 *   tensor has one `g_idx`.
 */
export function concatPackedRows(name: string, parts: readonly PackedWeight[]): PackedWeight {
  const first = parts[0];
  if (!first) throw new RangeError(`${name}: nothing to fuse`);
  if (parts.length === 1) return first;
  for (const [i, p] of parts.entries()) {
    checkPacked(`${name} part ${i}`, p);
    for (const key of ["bits", "cols", "groupSize", "groupsPerRow", "wordsPerRow"] as const) {
      if (p[key] !== first[key]) {
        throw new RangeError(
          `${name}: the fused parts differ in ${key} (part 0: ${first[key]}, part ${i}: ${p[key]})`,
        );
      }
    }
    const a = first.groupIndex, b = p.groupIndex;
    const same = a === b || (a !== undefined && b !== undefined && a.every((x, c) => x === b[c]));
    if (!same) {
      throw new RangeError(
        `${name}: the fused parts have different act-order group indices (g_idx of part 0 and ` +
          `part ${i}); one fused tensor stores one g_idx, so they cannot be fused losslessly`,
      );
    }
  }
  const rows = parts.reduce((n, p) => n + p.rows, 0);
  const cat = <T extends Uint32Array | Float32Array | Uint8Array>(
    make: (n: number) => T,
    get: (p: PackedWeight) => T,
  ): T => {
    const out = make(parts.reduce((n, p) => n + get(p).length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(get(p), at);
      at += get(p).length;
    }
    return out;
  };
  return {
    ...first,
    rows,
    words: cat((n) => new Uint32Array(n), (p) => p.words),
    scales: cat((n) => new Float32Array(n), (p) => p.scales),
    zeros: cat((n) => new Uint8Array(n), (p) => p.zeros),
  };
}
