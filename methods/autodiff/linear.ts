/**
 * A linear layer `y = x · Wᵀ` (weights `[out][in]`, as everywhere in lowbit), forward and
 * backward, with every product through the {@linkcode Kernels} interface so a fast backend (WASM
 * SIMD) accelerates training as it accelerates inference:
 * - forward: `y = matmul(x, W)`;
 * - input gradient: `dx = dy · W = matmul(dy, Wᵀ)`;
 * - weight gradient: `dW = dyᵀ · x = matmul(dyᵀ, xᵀ)` (`dyᵀ` is `[out][T]`, `xᵀ` is `[in][T]`).
 *
 * Backends may cache a weight's layout by the identity of its `Matrix` object (the WASM backend
 * does); matrices whose values change between calls (the transposes here, and weights updated
 * by training) are released with {@linkcode releaseMatrix} after use.
 *
 * @module
 */

import type { Kernels } from "../../kernels/types.ts";
import type { Matrix } from "../../models/types.ts";

/** Drops a backend's cached copy of `m` (WASM `forget`); a no-op for backends without a cache. */
export function releaseMatrix(kernels: Kernels, m: Matrix): void {
  (kernels as { forget?: (w: Matrix) => void }).forget?.(m);
}

/** `src` (`[rows][cols]`) transposed into `dst` (`[cols][rows]`). */
export function transpose(src: Float32Array, rows: number, cols: number, dst: Float32Array): void {
  for (let r = 0; r < rows; r++) {
    const o = r * cols;
    for (let c = 0; c < cols; c++) dst[c * rows + r] = src[o + c]!;
  }
}

/** Scratch buffers reused by the backward passes of one block. */
export class LinearScratch {
  #a = new Float32Array(0);
  #b = new Float32Array(0);
  #c = new Float32Array(0);
  /** A float32 buffer of exactly `n` values (slot 0, 1 or 2), reused across calls. */
  get(slot: 0 | 1 | 2, n: number): Float32Array {
    if (slot === 0) {
      if (this.#a.length < n) this.#a = new Float32Array(n);
      return this.#a.subarray(0, n);
    }
    if (slot === 1) {
      if (this.#b.length < n) this.#b = new Float32Array(n);
      return this.#b.subarray(0, n);
    }
    if (this.#c.length < n) this.#c = new Float32Array(n);
    return this.#c.subarray(0, n);
  }
}

/** `y = x · Wᵀ` for `T` rows of `x`. */
export function linearForward(
  kernels: Kernels,
  x: Float32Array,
  T: number,
  w: Matrix,
  y: Float32Array,
): void {
  kernels.matmul(x, T, w, y);
}

/** Adds `dyᵀ · x` (`[out][in]`) to `dw`. */
export function linearWeightGrad(
  kernels: Kernels,
  x: Float32Array,
  dy: Float32Array,
  T: number,
  shape: { rows: number; cols: number },
  dw: Float32Array,
  scratch: LinearScratch,
): void {
  const { rows, cols } = shape;
  const dyT = scratch.get(0, rows * T);
  const xT = scratch.get(1, cols * T);
  const prod = scratch.get(2, rows * cols);
  transpose(dy, T, rows, dyT);
  transpose(x, T, cols, xT);
  const xm: Matrix = { rows: cols, cols: T, data: xT };
  kernels.matmul(dyT, rows, xm, prod);
  releaseMatrix(kernels, xm);
  for (let i = 0; i < prod.length; i++) dw[i] = dw[i]! + prod[i]!;
}

/** Writes `dy · W` (`[T][in]`) into `dx`, or adds it when `accumulate`. */
export function linearInputGrad(
  kernels: Kernels,
  dy: Float32Array,
  T: number,
  w: Matrix,
  dx: Float32Array,
  scratch: LinearScratch,
  accumulate = false,
): void {
  const wT = scratch.get(0, w.rows * w.cols);
  transpose(w.data, w.rows, w.cols, wT);
  const wm: Matrix = { rows: w.cols, cols: w.rows, data: wT };
  if (!accumulate) {
    kernels.matmul(dy, T, wm, dx);
  } else {
    const tmp = scratch.get(1, T * w.cols);
    kernels.matmul(dy, T, wm, tmp);
    for (let i = 0; i < tmp.length; i++) dx[i] = dx[i]! + tmp[i]!;
  }
  releaseMatrix(kernels, wm);
}
