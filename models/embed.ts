/**
 * Token embeddings: the rows of the embedding matrix read for the tokens given (a streamed
 * matrix is never made resident), scaled (Gemma) and plus learned positions (OPT). Shared by
 * every execution path.
 *
 * @module
 */

import { matrixRow } from "./lazy_matrix.ts";
import type { ForwardModel } from "./types.ts";

/**
 * Token embeddings `[tokens.length][dim]` of tokens at positions `start…`: the embedding rows,
 * times `embedScale` (Gemma), plus the learned position rows (OPT); rejects ids outside the
 * vocabulary.
 */
export function embedTokens(
  model: ForwardModel,
  tokens: ArrayLike<number>,
  start = 0,
): Float32Array {
  const { config: c, weights: w } = model;
  const T = tokens.length;
  if (T === 0) throw new RangeError("forward: no tokens given");
  const x = new Float32Array(T * c.dim);
  for (let t = 0; t < T; t++) {
    const id = tokens[t]!;
    if (!Number.isInteger(id) || id < 0 || id >= c.vocabSize) {
      throw new RangeError(`forward: token id ${id} at ${t} is outside [0, ${c.vocabSize})`);
    }
  }
  // Row by row: a streamed embedding is read for these tokens only, not made resident.
  const rows = new Map<number, Float32Array>();
  for (let t = 0; t < T; t++) {
    const id = tokens[t]!;
    let row = rows.get(id);
    if (!row) rows.set(id, row = matrixRow(w.embed, id));
    x.set(row, t * c.dim);
  }
  if (c.embedScale !== undefined) {
    const s = c.embedScale;
    for (let i = 0; i < x.length; i++) x[i] = x[i]! * s;
  }
  if (c.positions === "learned") {
    const table = w.positions;
    if (!table) throw new TypeError("forward: learned positions without a position table");
    if (start + T + LEARNED_POSITION_OFFSET > table.rows) {
      throw new RangeError(
        `forward: position ${start + T - 1} is beyond the ${
          table.rows - LEARNED_POSITION_OFFSET
        } learned positions`,
      );
    }
    const p = table.data;
    for (let t = 0; t < T; t++) {
      const row = (start + t + LEARNED_POSITION_OFFSET) * c.dim;
      for (let j = 0; j < c.dim; j++) x[t * c.dim + j] = x[t * c.dim + j]! + p[row + j]!;
    }
  }
  return x;
}

/** OPT's learned position table starts at row 2 for position 0. */
export const LEARNED_POSITION_OFFSET = 2;
