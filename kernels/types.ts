/**
 * The kernel interface: the operations a model forward pass delegates to a backend.
 *
 * `kernels/ref` is the plain-TypeScript reference every faster backend (WASM SIMD, WebGPU) is
 * tested against. Activations are row-major `[tokens][features]` float32 arrays.
 *
 * @module
 */

import type { PackedWeight } from "../core/quantizer.ts";
import type { AttentionArgs } from "./ref/attention.ts";
import type { ForwardModel, Matrix } from "../models/types.ts";

/**
 * Float64 matrix products for the linear algebra of methods (GPTQ's Cholesky factor, its inverse
 * and its column sweep). Arrays from {@linkcode F64Kernels.alloc} live where the backend computes
 * (WASM memory); `kernels/ref/f64.ts` is the reference every backend equals bit for bit.
 */
export interface F64Kernels {
  /** Backend id, e.g. `js-ref`. */
  readonly id: string;
  /**
   * Zeroed arrays of the given lengths that {@linkcode F64Kernels.gemmSub} reads and writes in
   * place, valid until {@linkcode F64Kernels.release}; allocate a computation's arrays in one call.
   */
  alloc(lengths: readonly number[]): Float64Array[];
  /** Returns the arrays of one {@linkcode F64Kernels.alloc} call. */
  release(arrays: readonly Float64Array[]): void;
  /**
   * `C −= A·B′` on strided sub-matrices: `c[cOff + i·ldc + j] −= Σ_{k<K} a[aOff + i·lda + k] ·
   * B′(k, j)` for `i < m`, `j < n`, where `B′(k, j) = b[bOff + k·ldb + j]`, or
   * `b[bOff + j·ldb + k]` when `transB`. Each entry sums its products in order from 0 within
   * blocks of {@linkcode GEMM_F64_KC} k-steps (no fused multiply-add) and subtracts each block's
   * sum. `C` must not overlap `A` or `B`.
   */
  gemmSub(...args: GemmSubArgs): void;
}

/**
 * The arguments of {@linkcode F64Kernels.gemmSub}: `C −= A·B′` for `m × n` outputs over `k`
 * steps, each operand an array with an offset and a row stride (`B′` is `B`, or `Bᵀ` when
 * `transB`).
 */
export type GemmSubArgs = [
  m: number,
  n: number,
  k: number,
  a: Float64Array,
  aOff: number,
  lda: number,
  b: Float64Array,
  bOff: number,
  ldb: number,
  transB: boolean,
  c: Float64Array,
  cOff: number,
  ldc: number,
];

/** K-steps per block of {@linkcode F64Kernels.gemmSub} (`KC64` in `kernels/wasm/kernels.c`). */
export const GEMM_F64_KC = 128;

/** A set of compute kernels. */
export interface Kernels {
  /** Backend id recorded in result rows, e.g. `js-ref`. */
  readonly id: string;
  /** `out[t][o] = Σ_i x[t][i] · w[o][i]` for `t < tokens` (a linear layer, weights `[out][in]`). */
  matmul(x: Float32Array, tokens: number, w: Matrix, out: Float32Array): void;
  /** `out[t] = x[t] / rms(x[t]) · weight` with `rms = sqrt(mean(x²) + eps)`. */
  rmsnorm(
    x: Float32Array,
    tokens: number,
    weight: Float32Array,
    eps: number,
    out: Float32Array,
  ): void;
  /**
   * Fused dequant-matmul: like {@linkcode matmul} with weights `scale · (code − zero)` read
   * straight from the packed codes (no dequantized copy). Optional: backends without it leave
   * callers to dequantize. Throws a `RangeError` naming the op and both shapes on a mismatch.
   */
  matmulPacked?(x: Float32Array, tokens: number, p: PackedWeight, out: Float32Array): void;
  /**
   * Log-probabilities `[window.length][vocab]` of a whole window in one call (weights and
   * activations resident in the backend), or undefined when the model needs the op-by-op forward
   * pass. Optional; equal to `logSoftmaxRows(forward(…))` up to float32 rounding.
   */
  windowLogProbs?(model: ForwardModel, window: ArrayLike<number>): Float32Array | undefined;
  /**
   * The final hidden states `[window.length][dim]` of a whole window in one call (as
   * `forwardHidden`), or undefined when the model needs the op-by-op forward pass. Optional.
   */
  windowHidden?(model: ForwardModel, window: ArrayLike<number>): Float32Array | undefined;
  /**
   * How {@linkcode Kernels.windowHidden} runs `model`'s windows — `whole window`, `whole window,
   * block by block`, or `op by op (why)` — recorded in perplexity rows. Optional (absent: op by
   * op).
   */
  windowPath?(model: ForwardModel): string;
  /**
   * Log-probabilities `[rows][vocab]` of `rows` final hidden states `x`: the final norm, the
   * classifier and the log-softmax, or undefined when the model needs the op-by-op path.
   * Rows are independent: scoring a window's rows in chunks gives the numbers of one call.
   * Optional; equal to `logSoftmaxRows(finalLogits(…))` up to float32 rounding.
   */
  headLogProbs?(model: ForwardModel, x: Float32Array, rows: number): Float32Array | undefined;
  /**
   * Drops the backend's cached copy of a weight (after a one-off product, or after changing the
   * weight in place). Optional: backends without a cache leave it out.
   */
  forget?(w: Matrix | PackedWeight): void;
  /** Float64 products for methods' linear algebra. Optional (absent: `kernels/ref/f64.ts`). */
  readonly f64?: F64Kernels;
  /** Stops the backend's threads, if it has any (later calls may then fail). Optional. */
  close?(): void;
  /**
   * Causal grouped-query attention of `T` queries at positions `start…start+T−1` over keys and
   * values `[≥ start+T][nKvHeads·headDim]` (see `attentionRef`). Optional: without it the
   * forward pass computes attention itself.
   */
  attention?(...args: AttentionArgs): void;
}
