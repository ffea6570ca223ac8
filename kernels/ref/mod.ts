/**
 * Reference kernels in plain TypeScript: the oracle for every other backend.
 *
 * Sums are accumulated in float64 (JavaScript numbers) and stored as float32.
 *
 * @module
 */

import type { Matrix } from "../../models/types.ts";
import type { Kernels } from "../types.ts";
import { attentionRef } from "./attention.ts";
import { matmulPackedRef } from "./packed.ts";
import { refF64 } from "./f64.ts";

export { matmulPackedRef, validatePacked } from "./packed.ts";
export { attentionRef, type AttentionShape, validateAttention } from "./attention.ts";
export { gemmSubRef, refF64, validateGemmSub } from "./f64.ts";

/** Linear layer: `out[t][o] = Σ_i x[t][i] · w[o][i]`. */
export function matmulRef(x: Float32Array, tokens: number, w: Matrix, out: Float32Array): void {
  const { rows, cols, data } = w;
  if (x.length < tokens * cols || out.length < tokens * rows) {
    throw new RangeError(
      `matmul: x needs ${tokens}×${cols} and out ${tokens}×${rows} values, got ${x.length} and ${out.length}`,
    );
  }
  let t = 0;
  // Four tokens at a time share each weight row load.
  for (; t + 4 <= tokens; t += 4) {
    const x0 = t * cols, x1 = x0 + cols, x2 = x1 + cols, x3 = x2 + cols;
    for (let o = 0; o < rows; o++) {
      const wo = o * cols;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      for (let i = 0; i < cols; i++) {
        const wv = data[wo + i]!;
        s0 += x[x0 + i]! * wv;
        s1 += x[x1 + i]! * wv;
        s2 += x[x2 + i]! * wv;
        s3 += x[x3 + i]! * wv;
      }
      out[t * rows + o] = s0;
      out[(t + 1) * rows + o] = s1;
      out[(t + 2) * rows + o] = s2;
      out[(t + 3) * rows + o] = s3;
    }
  }
  for (; t < tokens; t++) {
    const xo = t * cols;
    for (let o = 0; o < rows; o++) {
      const wo = o * cols;
      let s = 0;
      for (let i = 0; i < cols; i++) s += x[xo + i]! * data[wo + i]!;
      out[t * rows + o] = s;
    }
  }
}

/** RMSNorm over the last dimension (`weight.length` features per token). */
export function rmsnormRef(
  x: Float32Array,
  tokens: number,
  weight: Float32Array,
  eps: number,
  out: Float32Array,
): void {
  const d = weight.length;
  for (let t = 0; t < tokens; t++) {
    const o = t * d;
    let ss = 0;
    for (let i = 0; i < d; i++) ss += x[o + i]! * x[o + i]!;
    const inv = 1 / Math.sqrt(ss / d + eps);
    for (let i = 0; i < d; i++) out[o + i] = x[o + i]! * inv * weight[i]!;
  }
}

/** The reference kernel set. */
export const refKernels: Kernels = {
  id: "js-ref",
  matmul: matmulRef,
  rmsnorm: rmsnormRef,
  matmulPacked: matmulPackedRef,
  attention: attentionRef,
  f64: refF64,
};
