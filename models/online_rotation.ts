/**
 * Online rotations of linear inputs in the forward pass (QuaRot's `online_full_had` before
 * down_proj and `online_partial_had` before o_proj, or a dense orthogonal matrix where no
 * Hadamard of the size is available). See {@linkcode OnlineRotation}.
 *
 * @module
 */

import { applyCrossHeadHadamard, applyHadamard } from "../core/hadamard.ts";
import type { OnlineRotation } from "./types.ts";

/** Applies `r` to each of the `T` rows of `x` in place (float64 sums, rounded once); returns `x`. */
export function applyOnlineRotation(
  r: OnlineRotation,
  x: Float32Array,
  T: number,
): Float32Array {
  switch (r.kind) {
    case "hadamard":
      return applyHadamard(x.subarray(0, T * r.n), r.n, T) && x;
    case "cross-head":
      return applyCrossHeadHadamard(
        x.subarray(0, T * r.heads * r.headDim),
        r.heads,
        r.headDim,
        T,
      ) &&
        x;
    case "matrix": {
      const { n, matrix: q } = r;
      if (q.length !== n * n) {
        throw new RangeError(`online rotation: a ${n}×${n} matrix holds ${q.length} values`);
      }
      const row = new Float64Array(n);
      for (let t = 0; t < T; t++) {
        const o = t * n;
        for (let i = 0; i < n; i++) row[i] = x[o + i]!;
        for (let i = 0; i < n; i++) {
          let s = 0;
          for (let j = 0; j < n; j++) s += q[i * n + j]! * row[j]!;
          x[o + i] = s;
        }
      }
      return x;
    }
  }
}

/** The width of the vectors `r` transforms. */
export function rotationWidth(r: OnlineRotation): number {
  return r.kind === "cross-head" ? r.heads * r.headDim : r.n;
}
