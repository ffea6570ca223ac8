/**
 * Calibration Gram matrices `Σ x xᵀ` of a linear's inputs, accumulated window by window through
 * the kernel interface: float32 products per window (the kernels' GEMM over the window's tokens),
 * summed in float64; the running maximum |x| per input channel rides along.
 *
 * @module
 */

import { noteMaterialized } from "../../models/residency.ts";
import type { Kernels } from "../../kernels/types.ts";

/** A Gram matrix being accumulated. */
export interface Accumulator {
  readonly cols: number;
  /** `Σ x xᵀ`: its lower triangle while accumulating, the whole matrix once {@linkcode complete}. */
  readonly gram: Float64Array;
  readonly absMax: Float32Array;
  tokens: number;
  /** Scratch: `[cols][tokens]` transpose of one window's inputs and one block of its Gram. */
  xt: Float32Array;
  g32: Float32Array;
  /** The upper triangle of `gram` has been filled from the lower. */
  complete: boolean;
}

const NONE = new Float32Array(0);

/**
 * Completes an accumulator's Gram matrix (its upper triangle mirrored from the lower) and drops its
 * scratch, before the quantizer allocates its own. Idempotent.
 */
export function complete(acc: Accumulator): void {
  noteMaterialized(acc.xt.byteLength + acc.g32.byteLength);
  acc.xt = NONE;
  acc.g32 = NONE;
  if (acc.complete) return;
  const n = acc.cols;
  const g = acc.gram;
  const B = 64;
  for (let i0 = 0; i0 < n; i0 += B) {
    for (let j0 = 0; j0 <= i0; j0 += B) {
      for (let i = i0; i < Math.min(i0 + B, n); i++) {
        for (let j = j0; j < Math.min(j0 + B, i); j++) g[j * n + i] = g[i * n + j]!;
      }
    }
  }
  acc.complete = true;
}

/** An empty accumulator for inputs of `cols` channels. */
export function newAccumulator(cols: number): Accumulator {
  return {
    cols,
    gram: new Float64Array(cols * cols),
    absMax: new Float32Array(cols),
    tokens: 0,
    xt: new Float32Array(0),
    g32: new Float32Array(0),
    complete: false,
  };
}

/**
 * Rows of the Gram matrix per kernel call: an eighth of them (a multiple of 8, at least 64), so
 * the lower triangle costs about 9/16 of the full square's products.
 */
function gramBlockRows(n: number): number {
  return Math.max(64, Math.ceil(n / 64) * 8);
}

/** Adds the `T` input rows `x` (`[T][cols]`) of one window. */
export function accumulate(acc: Accumulator, x: Float32Array, T: number, kernels: Kernels): void {
  const n = acc.cols;
  const B = gramBlockRows(n);
  // One block of rows, the last widened by one row at most (see below).
  const need = Math.min(B + 1, n) * n;
  if (acc.g32.length < need) acc.g32 = new Float32Array(need);
  acc.complete = false;
  if (acc.xt.length < n * T) acc.xt = new Float32Array(n * T);
  const xt = acc.xt.subarray(0, n * T);
  for (let t = 0; t < T; t++) {
    for (let i = 0; i < n; i++) {
      const v = x[t * n + i]!;
      xt[i * T + t] = v;
      const a = Math.abs(v);
      if (!(a <= acc.absMax[i]!)) acc.absMax[i] = a; // NaN propagates
    }
  }
  // The lower triangle of this window's Gram through the kernel interface, (Xᵀ)(Xᵀ)ᵀ = XᵀX, a
  // block of rows at a time against the rows up to the block's end. Every entry is the sum the
  // full square's call computes (the kernels' order over tokens does not depend on the shape),
  // and the upper triangle is its mirror (complete()). Never a one-row call: its GEMV sums in
  // another order.
  for (let r0 = 0; r0 < n;) {
    let r1 = Math.min(r0 + B, n);
    if (n - r1 === 1) r1 = n;
    const rows = r1 - r0;
    const out = acc.g32;
    const w = { rows: r1, cols: T, data: xt.subarray(0, r1 * T) };
    kernels.matmul(xt.subarray(r0 * T), rows, w, out);
    kernels.forget?.(w); // a one-off operand: no cached copy to evict the model's weights
    for (let i = r0; i < r1; i++) {
      const gi = i * n;
      const oi = (i - r0) * r1;
      for (let j = 0; j <= i; j++) acc.gram[gi + j] = acc.gram[gi + j]! + out[oi + j]!;
    }
    r0 = r1;
  }
  acc.tokens += T;
}
