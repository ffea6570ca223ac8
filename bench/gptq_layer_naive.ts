/**
 * Plain-loop baselines for `bench/gptq_layer.ts`: the same work as the GPTQ pipeline, written the
 * direct way with no blocking, no register tiling and no lazy batches, so the benchmark can show
 * what the tuned code in `methods/gptq_core.ts` and the batched Gram buy.
 *
 * - {@linkcode accumulateHessianNaive}: `H += Σ_t x_t x_tᵀ` as one rank-1 update per token over
 *   the full square (the same multiply-adds as the batched Gram, which also fills the square).
 * - {@linkcode upperCholeskyOfInverseNaive}: the same factor as `upperCholeskyOfInverse` (factor
 *   the index-reversed `J H J = L Lᵀ`, invert `L`, `U = J L⁻¹ J`), with a textbook row-oriented
 *   Cholesky and `L⁻¹` by one forward substitution per unit vector.
 * - {@linkcode gptqSweepNaive}: the GPTQ column sweep without lazy batches: after each column is
 *   quantized, its scaled error is subtracted from every later column of every row at once.
 *
 * All of them are float64 and share the quantizer of `core/quantizer.ts`, so the sweep gives the
 * codes of `gptqQuantizeLayer` (no act-order, group parameters in the `"updated"` mode) up to
 * float rounding.
 *
 * @module
 */

import { groupParams, quantizeValue } from "../core/quantizer.ts";

/**
 * `h += Σ_t x[t] x[t]ᵀ` with one rank-1 update per token over the full `cols×cols` square.
 *
 * @param x Activations `[tokens][cols]`, row-major.
 * @param tokens Rows of `x` to use.
 * @param cols Features per token.
 * @param h Accumulator `[cols][cols]`, row-major, updated in place.
 */
export function accumulateHessianNaive(
  x: Float32Array,
  tokens: number,
  cols: number,
  h: Float64Array,
): void {
  for (let t = 0; t < tokens; t++) {
    const xr = t * cols;
    for (let i = 0; i < cols; i++) {
      const xi = x[xr + i]!;
      const hr = i * cols;
      for (let j = 0; j < cols; j++) h[hr + j] = h[hr + j]! + xi * x[xr + j]!;
    }
  }
}

/**
 * The upper-triangular `U` with `UᵀU = H⁻¹` (zeros below the diagonal), by plain loops: Cholesky of
 * `J H J` (only the lower triangle of `h` is read), then each column of `L⁻¹` by forward
 * substitution, then `U = J L⁻¹ J`. The same arithmetic as `upperCholeskyOfInverse` in a different
 * order, so the results agree up to rounding.
 *
 * @param h Symmetric positive definite `n×n` matrix, row-major; not modified.
 * @param n Order of `h`.
 * @returns `U` row-major, or undefined when a pivot is not positive.
 */
export function upperCholeskyOfInverseNaive(
  h: Float64Array,
  n: number,
): Float64Array | undefined {
  // l = lower triangle of J H J: l[i][j] = h[n−1−j][n−1−i] for j ≤ i.
  const l = new Float64Array(n * n);
  for (let i = 0; i < n; i++) {
    for (let j = 0; j <= i; j++) l[i * n + j] = h[(n - 1 - j) * n + (n - 1 - i)]!;
  }
  // Cholesky–Banachiewicz: L_ij = (A_ij − Σ_{k<j} L_ik L_jk) / L_jj.
  for (let i = 0; i < n; i++) {
    const ir = i * n;
    for (let j = 0; j <= i; j++) {
      const jr = j * n;
      let s = l[ir + j]!;
      for (let k = 0; k < j; k++) s -= l[ir + k]! * l[jr + k]!;
      if (i === j) {
        if (!(s > 0)) return undefined;
        l[ir + i] = Math.sqrt(s);
      } else {
        l[ir + j] = s / l[jr + j]!;
      }
    }
  }
  // Column j of M = L⁻¹ solves L m = e_j: m_j = 1/L_jj, m_i = −(Σ_{k=j}^{i−1} L_ik m_k) / L_ii.
  // U = J M J: U[n−1−i][n−1−j] = M_ij.
  const u = new Float64Array(n * n);
  const m = new Float64Array(n);
  for (let j = 0; j < n; j++) {
    m[j] = 1 / l[j * n + j]!;
    for (let i = j + 1; i < n; i++) {
      const ir = i * n;
      let s = 0;
      for (let k = j; k < i; k++) s += l[ir + k]! * m[k]!;
      m[i] = -s / l[ir + i]!;
    }
    const uc = n - 1 - j;
    for (let i = j; i < n; i++) u[(n - 1 - i) * n + uc] = m[i]!;
  }
  return u;
}

/** Options of {@linkcode gptqSweepNaive}. */
export interface NaiveSweepOptions {
  /** Bits per weight. */
  bits: number;
  /** Symmetric absmax (core convention) or asymmetric min-max. */
  symmetric: boolean;
  /**
   * Input columns per group, or 0 for one group per row. A group's parameters come from the row as
   * it stands when the sweep reaches the group's first column (`gptq_core`'s `"updated"` mode).
   */
  groupSize: number;
}

/** Result of {@linkcode gptqSweepNaive}. */
export interface NaiveSweepResult {
  /** Codes `[rows][cols]`. */
  readonly codes: Uint8Array;
  /** `fround(scale · (code − zero))`, `[rows][cols]`. */
  readonly dequantized: Float32Array;
  /** `Σ (w − q)² / U_ii² / 2`, as `GptqLayerResult.loss`. */
  readonly loss: number;
}

/**
 * The GPTQ column sweep with no lazy batches: for each column `i`, quantize `W[:, i]`, then
 * `W[:, i+1:] −= e ⊗ U[i, i+1:]` with `e = (w − q) / U_ii`, for all rows, before the next column.
 * Per-row parameters (no groups) come from the original `W`, as in `gptqQuantizeLayer`.
 *
 * @param w Weights `[rows][cols]`; not modified.
 * @param rows Output features.
 * @param cols Input features.
 * @param u Upper Cholesky factor of the damped `H⁻¹`, `[cols][cols]`.
 * @param options Bits, symmetry and group size.
 * @returns Codes, dequantized weights and the loss.
 */
export function gptqSweepNaive(
  w: Float32Array,
  rows: number,
  cols: number,
  u: Float64Array,
  options: NaiveSweepOptions,
): NaiveSweepResult {
  const { bits, symmetric, groupSize: g } = options;
  const n = cols;
  const maxq = 2 ** bits - 1;
  const wp = Float64Array.from(w);
  const codes = new Uint8Array(rows * n);
  const dequantized = new Float32Array(rows * n);
  const scale = new Float64Array(rows);
  const zero = new Float64Array(rows);
  if (g <= 0) {
    for (let r = 0; r < rows; r++) {
      const p = groupParams(wp, r * n, (r + 1) * n, bits, symmetric);
      scale[r] = p.scale;
      zero[r] = p.zero;
    }
  }
  let loss = 0;
  for (let i = 0; i < n; i++) {
    const ui = i * n;
    const uii = u[ui + i]!;
    for (let r = 0; r < rows; r++) {
      const wr = r * n;
      if (g > 0 && i % g === 0) {
        const p = groupParams(wp, wr + i, wr + Math.min(i + g, n), bits, symmetric);
        scale[r] = p.scale;
        zero[r] = p.zero;
      }
      const s = scale[r]!;
      const z = zero[r]!;
      const x = wp[wr + i]!;
      const code = quantizeValue(x, s, z, maxq);
      codes[wr + i] = code;
      dequantized[wr + i] = s * (code - z);
      const e = (x - s * (code - z)) / uii;
      loss += e * e;
      for (let j = i + 1; j < n; j++) wp[wr + j] = wp[wr + j]! - e * u[ui + j]!;
    }
  }
  return { codes, dequantized, loss: loss / 2 };
}
