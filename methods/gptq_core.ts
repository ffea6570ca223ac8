/**
 * The GPTQ layer algorithm (IST-DASLab/gptq `gptq.py` `GPTQ.fasterquant` and `quant.py`
 * `Quantizer`) as a pure function of one weight matrix `W` `[rows][cols]` and its Hessian `H`
 * `[cols][cols]`. Collecting `H` from calibration activations is the caller's job.
 *
 * Steps, in the reference's order: per-row quantizer parameters from the original `W` (before dead
 * columns are zeroed, as `find_params(W)` runs first in the reference); dead columns
 * (`H_ii = 0` → `H_ii = 1`, `W[:, i] = 0`); optional static groups (parameters of every group of
 * `g` columns from `W` before any update); optional act-order (columns sorted by descending
 * `diag(H)`); damping `H += λI` with `λ = percdamp · mean(diag H)`; `U` = upper Cholesky factor
 * of `H⁻¹`; a lazy-batch sweep over blocks of `blockSize` columns (quantize a column, spread its
 * scaled error `(w − q)/U_ii` over the rest of the block with row `i` of `U`, and after the block
 * update all later columns with one matrix product); un-permute.
 *
 * Deviations from the reference, all deliberate:
 * - **Symmetric convention.** With `symmetric: true` the parameters come from the shared core
 *   quantizer (`core/quantizer.ts` `groupParams`): absmax, `scale = max|x| / (2^(b−1) − 1)`,
 *   `zero = 2^(b−1)`. GPTQ's own `sym=True` uses `scale = 2·max|x| / (2^b − 1)` with the same
 *   zero. We use the core convention for RTN and GPTQ alike, so the two methods are comparable.
 *   Asymmetric (the GPTQ default) is GPTQ's min-max with zero in range, exactly as in the core.
 * - **Damping retries.** The reference fails outright when the damped Hessian is not positive
 *   definite. Here attempt `k = 0 … maxDampRetries` uses `percdamp_k = percdamp · 10^k` (a zero
 *   `percdamp` restarts from 0.001, so retry 1 uses GPTQ's default 0.01); the first positive
 *   definite attempt wins and `percdampUsed` / `dampRetries` report it. GPTQModel has the same
 *   idea with additive steps (`damp_auto_increment = 0.01`); ×10 reaches a working damping in
 *   few attempts. After the last attempt a {@linkcode HessianNotPositiveDefiniteError} names
 *   every damping tried.
 * - **Inverse factor.** The reference computes `cholesky → cholesky_inverse → cholesky(upper)`
 *   (about `n³` multiply-adds, and it forms `H⁻¹`). We factor the index-reversed matrix
 *   `J H J = L Lᵀ` and invert `L`: then `U = J L⁻¹ J` is upper triangular with a positive diagonal
 *   and `UᵀU = H⁻¹`, so by uniqueness of the Cholesky factor it is the same `U`, at `n³/3`
 *   multiply-adds and without the explicit inverse ({@linkcode upperCholeskyOfInverse}).
 * - **Precision.** Everything is float64 (the reference runs in float32); quantized values are
 *   `fround(scale · (q − zero))` with float32 scales, as the core's dequantization.
 * - **Hessian symmetry.** `H` is read as `(H + Hᵀ)/2` (identical for a symmetric `H`); the
 *   reference's Cholesky reads one triangle only.
 * - **Act-order ties.** Columns with equal `diag(H)` keep their original order (a stable sort);
 *   `torch.argsort` does not promise an order.
 * - **Group parameter modes.** `"reference"` reproduces the reference: parameters of the group
 *   starting at column `c` are computed from the outer matrix, which carries the updates of earlier
 *   blocks but not those of the current block. `"updated"` (not in the reference) computes them
 *   from the fully updated columns; it is implemented by also ending the lazy blocks at group
 *   boundaries, so it equals the reference run with block size `g` (bit for bit when
 *   `blockSize = g`). `"static"` is the reference's `static_groups`.
 *
 * @module
 */

import { refF64 } from "../kernels/ref/f64.ts";
import type { F64Kernels } from "../kernels/types.ts";
import {
  clipRangeSearch,
  groupParams,
  MAX_BITS,
  MIN_BITS,
  packCodes,
  type PackedWeight,
  quantizeValue,
} from "../core/quantizer.ts";

/** Options of {@linkcode gptqQuantizeLayer}. */
export interface GptqLayerOptions {
  /** Bits per weight, an integer in [2, 8]. */
  bits: number;
  /** Input columns per group; undefined or 0 means one group per output row. */
  groupSize?: number;
  /** Symmetric absmax (core convention) or asymmetric min-max with zero in range. */
  symmetric: boolean;
  /** Relative damping: `λ = percdamp · mean(diag H)` (reference default 0.01). */
  percdamp: number;
  /** Columns per lazy batch (reference default 128). */
  blockSize: number;
  /** Quantize columns in order of descending `diag(H)`; the result is in the original order. */
  actOrder: boolean;
  /** Where group parameters come from; see the module documentation. Ignored without groups. */
  groupParams: "reference" | "updated" | "static";
  /** GPTQ's MSE grid search for the range (grid 100, max shrink 0.8, norm 2.4). */
  mse: boolean;
  /** Extra attempts with ×10 damping when `H + λI` is not positive definite (default 5). */
  maxDampRetries?: number;
  /**
   * `H` is `hessianScale · hessian`, each element multiplied where it is read (the same float64
   * products as a scaled copy, without an `n × n` copy: 1 GB for Llama-2-7B's down). Default 1.
   */
  hessianScale?: number;
  /**
   * Float64 products for the factor, the inverse and the sweep's block updates (a backend's
   * `Kernels.f64`); default the reference loops. Every backend gives the same bits.
   */
  f64?: F64Kernels;
}

/** The result of {@linkcode gptqQuantizeLayer}. */
export interface GptqLayerResult {
  /** `Ŵ` `[rows][cols]` in the original column order: `fround(scale · (code − zero))`. */
  readonly dequantized: Float32Array;
  /**
   * Codes (original column order), scales and zeros `[rows][groupsPerRow]`. The group of column
   * `c` is `groupIndex[c]` when `groupIndex` is set, else `floor(c / packed.groupSize)`.
   */
  readonly packed: PackedWeight;
  /**
   * Group of every column, set only with act-order and non-static groups (groups are then formed
   * in the permuted order: `groupIndex[c] = floor(position of c in the order / g)`). Undefined
   * means `floor(c / groupSize)`.
   */
  readonly groupIndex?: Uint32Array;
  /** `Σ (w − q)² / U_ii² / 2` over all rows and columns (the reference's `Losses.sum()`). */
  readonly loss: number;
  /** The relative damping that made `H + λI` positive definite. */
  readonly percdampUsed: number;
  /** Failed Cholesky attempts before `percdampUsed`. */
  readonly dampRetries: number;
  /** Columns with `H_ii = 0`, which were set to zero. */
  readonly deadColumns: number;
}

/** Defaults of the reference (`opt.py` / `gptq.py`), plus `maxDampRetries`. */
export const GPTQ_DEFAULTS: Readonly<
  Required<Omit<GptqLayerOptions, "bits" | "groupSize" | "symmetric" | "hessianScale" | "f64">>
> = {
  percdamp: 0.01,
  blockSize: 128,
  actOrder: false,
  groupParams: "reference",
  mse: false,
  maxDampRetries: 5,
};

/** GPTQ `Quantizer` MSE search: candidate ranges `p · range`, `p = 1 − i/grid`. */
export const MSE_GRID = 100;
/** Largest shrink tried: `i < maxshrink · grid`, so `p` goes down to 0.21. */
export const MSE_MAX_SHRINK = 0.8;
/** Exponent of the search's error `Σ |x̂ − x|^norm`. */
export const MSE_NORM = 2.4;

/** The damped Hessian stayed indefinite for every damping tried. */
export class HessianNotPositiveDefiniteError extends Error {
  override name = "HessianNotPositiveDefiniteError";
  /** Every relative damping tried, in order. */
  readonly percdampsTried: readonly number[];
  /** Creates the error; the message lists every damping tried. */
  constructor(percdampsTried: readonly number[], meanDiag: number) {
    super(
      `Cannot factor the GPTQ Hessian: H + λI is not positive definite for percdamp ${
        percdampsTried.join(", ")
      } (λ = percdamp · mean(diag H), mean(diag H) = ${meanDiag})`,
    );
    this.percdampsTried = percdampsTried;
  }
}

/**
 * Scale and zero point for one group `x[from..to)`, chosen by GPTQ's MSE grid search
 * (`quant.py` `Quantizer.find_params` with `mse=True`): the min-max range is shrunk by
 * `p = 1 − i/100` for `i < 80`, and the `p` with the least `Σ |x̂ − x|^2.4` wins (ties keep the
 * larger range). `p = 1` is exactly {@linkcode groupParams}, so the result is never worse than it.
 * Asymmetric: `[p·min, p·max]` (zero in range), zero re-rounded; symmetric (core absmax
 * convention): `scale = p·max|x| / (2^(b−1) − 1)`, zero fixed at `2^(b−1)`.
 *
 * @param x Values; the group is `x[from..to)`.
 * @param from First index of the group.
 * @param to One past the last index.
 * @param bits Bits per value.
 * @param symmetric Core symmetric absmax instead of asymmetric min-max.
 * @returns The float32 scale and integer zero point.
 *
 * @example Usage
 * ```ts
 * import { groupParams } from "../core/quantizer.ts";
 * import { groupParamsMse } from "./gptq_core.ts";
 * // One outlier: shrinking the range helps the other values more than it hurts the outlier.
 * const x = [1, -1, 0.9, -0.9, 0.8, -0.8, 3];
 * const minMax = groupParams(x, 0, x.length, 2, false); // scale 4/3
 * const p = groupParamsMse(x, 0, x.length, 2, false);
 * if (!(p.scale < minMax.scale)) throw new Error("expected a shrunken range");
 * ```
 */
export function groupParamsMse(
  x: ArrayLike<number>,
  from: number,
  to: number,
  bits: number,
  symmetric: boolean,
): { scale: number; zero: number } {
  return clipRangeSearch(x, from, to, bits, symmetric, MSE_RATIOS, MSE_NORM);
}

/** GPTQ's shrink factors `1 − i/100`, `i = 1 … 79`. */
const MSE_RATIOS: readonly number[] = Array.from(
  { length: Math.floor(MSE_MAX_SHRINK * MSE_GRID) - 1 },
  (_, i) => 1 - (i + 1) / MSE_GRID,
);

/** Rows and columns per block of the blocked factor and inverse. */
const NB = 128;

/**
 * In-place lower Cholesky factor of the lower triangle of `a` (row-major `n×n`), blocked and
 * right-looking: per block column of `NB`, the diagonal block and the panel below it are solved
 * here, then the trailing lower triangle is updated by `f64.gemmSub` (`A₂₂ −= L₂₁ L₂₁ᵀ`, one block
 * row at a time; this also writes the strict upper triangle of the diagonal blocks, which nothing
 * reads). Returns false when a pivot is not positive (not positive definite, or NaN).
 */
function choleskyBlocked(a: Float64Array, n: number, f64: F64Kernels): boolean {
  for (let k0 = 0; k0 < n; k0 += NB) {
    const k1 = Math.min(k0 + NB, n);
    // Rows k0 … n−1 of block column k0 … k1−1: L[i][j] = (A[i][j] − Σ_{k0≤t<j} L[i][t] L[j][t])
    // / L[j][j], the diagonal block's rows first.
    for (let i = k0; i < n; i++) {
      const ir = i * n;
      const jEnd = Math.min(i + 1, k1);
      for (let j = k0; j < jEnd; j++) {
        const jr = j * n;
        let v = a[ir + j]!;
        for (let t = k0; t < j; t++) v -= a[ir + t]! * a[jr + t]!;
        if (i === j) {
          if (!(v > 0)) return false;
          a[ir + j] = Math.sqrt(v);
        } else a[ir + j] = v / a[jr + j]!;
      }
    }
    for (let r0 = k1; r0 < n; r0 += NB) {
      const r1 = Math.min(r0 + NB, n);
      f64.gemmSub(
        r1 - r0,
        r1 - k1,
        k1 - k0,
        a,
        r0 * n + k0,
        n,
        a,
        k1 * n + k0,
        n,
        true,
        a,
        r0 * n + k1,
        n,
      );
    }
  }
  return true;
}

/**
 * Inverse `M = L⁻¹` of the lower-triangular `L` in the lower triangle of `a`, written transposed
 * into the strict upper triangle (`a[j][i] = M[i][j]` for `j < i`; `L` stays in place) with the
 * diagonal `M_ii = 1/L_ii` in `diag`. Block column by block column: `X` (`x`, rows `c0 … n−1` of
 * `M`'s columns `c0 … c1−1`) starts as the identity's and is solved by forward substitution one
 * diagonal block of `L` at a time, the rows below updated by `f64.gemmSub` (`X₂ −= L₂₁ X₁`).
 * `x` holds at least `n · NB` values.
 */
function invertLowerBlocked(
  a: Float64Array,
  n: number,
  diag: Float64Array,
  x: Float64Array,
  f64: F64Kernels,
): void {
  for (let i = 0; i < n; i++) diag[i] = 1 / a[i * n + i]!;
  for (let c0 = 0; c0 < n; c0 += NB) {
    const bw = Math.min(c0 + NB, n) - c0;
    x.fill(0, 0, (n - c0) * bw);
    for (let c = 0; c < bw; c++) x[c * bw + c] = 1;
    for (let r0 = c0; r0 < n; r0 += NB) {
      const r1 = Math.min(r0 + NB, n);
      for (let r = r0; r < r1; r++) {
        const rr = r * n;
        const xr = (r - c0) * bw;
        for (let t = r0; t < r; t++) {
          const l = a[rr + t]!;
          const xt = (t - c0) * bw;
          for (let c = 0; c < bw; c++) x[xr + c] = x[xr + c]! - l * x[xt + c]!;
        }
        const d = diag[r]!;
        for (let c = 0; c < bw; c++) x[xr + c] = x[xr + c]! * d;
      }
      if (r1 < n) {
        f64.gemmSub(
          n - r1,
          bw,
          r1 - r0,
          a,
          r1 * n + r0,
          n,
          x,
          (r0 - c0) * bw,
          bw,
          false,
          x,
          (r1 - c0) * bw,
          bw,
        );
      }
    }
    for (let c = 0; c < bw; c++) {
      const cr = (c0 + c) * n;
      for (let i = c0 + c + 1; i < n; i++) a[cr + i] = x[(i - c0) * bw + c]!;
    }
  }
}

/** In-place transpose of a row-major `n×n` matrix, in 32×32 tiles. */
function transposeInPlace(a: Float64Array, n: number): void {
  const T = 32;
  for (let i0 = 0; i0 < n; i0 += T) {
    const iEnd = Math.min(i0 + T, n);
    for (let j0 = i0; j0 < n; j0 += T) {
      const jEnd = Math.min(j0 + T, n);
      for (let i = i0; i < iEnd; i++) {
        for (let j = j0 === i0 ? i + 1 : j0; j < jEnd; j++) {
          const x = a[i * n + j]!;
          a[i * n + j] = a[j * n + i]!;
          a[j * n + i] = x;
        }
      }
    }
  }
}

/**
 * Turn the lower triangle of `a`, holding `J H J` for a symmetric positive definite `H`, into `U`,
 * the upper Cholesky factor of `H⁻¹` (`H⁻¹ = UᵀU`), with zeros below the diagonal. Returns false
 * (with `a` clobbered) when `J H J` is not positive definite. `x` is scratch of `n · NB` values.
 */
function reversedToInverseFactor(
  a: Float64Array,
  n: number,
  x: Float64Array,
  f64: F64Kernels,
): boolean {
  if (!choleskyBlocked(a, n, f64)) return false;
  const diag = new Float64Array(n);
  invertLowerBlocked(a, n, diag, x, f64);
  // Keep Mᵀ = (L⁻¹)ᵀ: clear L, put the diagonal back.
  for (let i = 0; i < n; i++) {
    a.fill(0, i * n, i * n + i);
    a[i * n + i] = diag[i]!;
  }
  // U = J M J = (J Mᵀ J)ᵀ: reversing the storage maps (i, j) to (n−1−i, n−1−j); then transpose.
  a.reverse();
  transposeInPlace(a, n);
  return true;
}

/** Values of scratch the factor needs besides its `n × n` matrix. */
function factorScratch(n: number): number {
  return n * Math.min(NB, n);
}

/**
 * The upper-triangular `U` with positive diagonal and `UᵀU = H⁻¹` (what the reference gets from
 * `cholesky → cholesky_inverse → cholesky(upper=True)`), computed without forming `H⁻¹`: factor the
 * index-reversed `J H J = L Lᵀ`, then `U = J L⁻¹ J`.
 *
 * @param h Symmetric `n×n` matrix, row-major; only its lower triangle is read; not modified.
 * @param n Order of `h`.
 * @param f64 Float64 products to run the blocked factor and inverse on (default: the reference).
 * @returns `U` row-major with zeros below the diagonal, or undefined when `h` is not positive
 * definite.
 *
 * @example Usage
 * ```ts
 * import { upperCholeskyOfInverse } from "./gptq_core.ts";
 * const u = upperCholeskyOfInverse(new Float64Array([4, 0, 0, 9]), 2)!;
 * if (u[0] !== 0.5 || Math.abs(u[3]! - 1 / 3) > 1e-15) throw new Error("diag(1/2, 1/3)");
 * ```
 */
export function upperCholeskyOfInverse(
  h: Float64Array,
  n: number,
  f64: F64Kernels = refF64,
): Float64Array | undefined {
  if (h.length !== n * n) throw new RangeError(`Matrix has ${h.length} values, expected ${n}×${n}`);
  const arrays = f64.alloc([n * n, factorScratch(n)]);
  const [a, x] = arrays as [Float64Array, Float64Array];
  try {
    for (let i = 0; i < n; i++) {
      for (let j = 0; j <= i; j++) a[i * n + j] = h[(n - 1 - j) * n + (n - 1 - i)]!;
    }
    return reversedToInverseFactor(a, n, x, f64) ? Float64Array.from(a) : undefined;
  } finally {
    f64.release(arrays);
  }
}

/**
 * Fill the lower triangle of `a` with `J (Hp + λI) J`, where `H = hs · h`, `Hp[x][y] = (H + Hᵀ)/2` at
 * `(perm[x], perm[y])` and the diagonal is `diag` (dead columns already set to 1).
 */
function fillReversedHessian(
  a: Float64Array,
  h: Float64Array,
  hs: number,
  n: number,
  perm: Uint32Array,
  diag: Float64Array,
  lambda: number,
): void {
  for (let i = 0; i < n; i++) {
    const x = n - 1 - i;
    const px = perm[x]!;
    const ar = i * n;
    for (let j = 0; j < i; j++) {
      const py = perm[n - 1 - j]!;
      a[ar + j] = 0.5 * (hs * h[px * n + py]! + hs * h[py * n + px]!);
    }
    a[ar + i] = diag[px]! + lambda;
  }
}

function checkInteger(name: string, v: number, min: number): void {
  if (!Number.isInteger(v) || v < min) {
    throw new RangeError(`Cannot run GPTQ: ${name} must be an integer ≥ ${min}, got ${v}`);
  }
}

/** Quantizer settings and parameter storage shared by the steps of {@linkcode gptqQuantizeLayer}. */
interface GptqPlan {
  readonly rows: number;
  /** Columns (`cols`). */
  readonly n: number;
  /** Input columns per group; 0 without groups. */
  readonly g: number;
  readonly bits: number;
  readonly symmetric: boolean;
  /** `2^bits − 1`. */
  readonly maxq: number;
  /** Group parameter search: {@linkcode groupParamsMse} or the core's `groupParams`. */
  readonly params: typeof groupParamsMse;
  readonly grouped: boolean;
  /** Static groups (`groupParams: "static"`). */
  readonly isStatic: boolean;
  /** Groups whose parameters are computed during the sweep (`"reference"`, `"updated"`). */
  readonly isDynamic: boolean;
  readonly groupsPerRow: number;
  /** Scales and zero points `[rows][groupsPerRow]`, filled by the steps. */
  readonly scales: Float32Array;
  readonly zeros: Uint8Array;
}

/**
 * Validates the shapes, options and values of {@linkcode gptqQuantizeLayer}'s inputs (in the
 * order its `RangeError`s are documented) and returns the defaulted group size, retry count and
 * Hessian scale.
 */
function validateLayerInputs(
  w: Float32Array,
  rows: number,
  cols: number,
  hessian: Float64Array,
  options: GptqLayerOptions,
): { g: number; maxRetries: number; hs: number } {
  const { bits, percdamp, blockSize } = options;
  if (!Number.isInteger(bits) || bits < MIN_BITS || bits > MAX_BITS) {
    throw new RangeError(
      `Cannot quantize to ${bits} bits: bits must be an integer in [${MIN_BITS}, ${MAX_BITS}]`,
    );
  }
  checkInteger("rows", rows, 1);
  checkInteger("cols", cols, 1);
  const g = options.groupSize ?? 0;
  checkInteger("groupSize", g, 0);
  checkInteger("blockSize", blockSize, 1);
  const maxRetries = options.maxDampRetries ?? GPTQ_DEFAULTS.maxDampRetries;
  checkInteger("maxDampRetries", maxRetries, 0);
  if (!Number.isFinite(percdamp) || percdamp < 0) {
    throw new RangeError(`Cannot run GPTQ: percdamp must be finite and ≥ 0, got ${percdamp}`);
  }
  const mode = options.groupParams;
  if (mode !== "reference" && mode !== "updated" && mode !== "static") {
    throw new RangeError(`Cannot run GPTQ: unknown groupParams mode "${mode}"`);
  }
  if (w.length !== rows * cols) {
    throw new RangeError(`Matrix has ${w.length} values, expected ${rows}×${cols}`);
  }
  const n = cols;
  if (hessian.length !== n * n) {
    throw new RangeError(
      `Hessian has ${hessian.length} values, expected ${n}×${n} for a matrix with ${n} columns`,
    );
  }
  for (let i = 0; i < w.length; i++) {
    if (!Number.isFinite(w[i]!)) {
      throw new RangeError(
        `Cannot quantize: value ${w[i]} at row ${Math.floor(i / cols)}, column ${i % cols}`,
      );
    }
  }
  const hs = options.hessianScale ?? 1;
  for (let i = 0; i < hessian.length; i++) {
    if (!Number.isFinite(hs * hessian[i]!)) {
      throw new RangeError(
        `Cannot run GPTQ: Hessian value ${hs * hessian[i]!} at (${Math.floor(i / n)}, ${i % n})`,
      );
    }
  }
  return { g, maxRetries, hs };
}

/** Per-row parameters (no groups) from the original `W`, before dead columns are zeroed. */
function rowParams(wp: Float64Array, plan: GptqPlan): void {
  const { rows, n, bits, symmetric, params, scales, zeros } = plan;
  for (let r = 0; r < rows; r++) {
    const p = params(wp, r * n, (r + 1) * n, bits, symmetric);
    scales[r] = p.scale;
    zeros[r] = p.zero;
  }
}

/**
 * Dead columns: `diag(H)` with every `H_ii = 0` set to 1 and the column zeroed in `wp` (in place).
 */
function deadColumnDiagonal(
  wp: Float64Array,
  hessian: Float64Array,
  hs: number,
  rows: number,
  n: number,
): { diag: Float64Array; deadColumns: number } {
  const diag = new Float64Array(n);
  let deadColumns = 0;
  for (let i = 0; i < n; i++) {
    let d = hs * hessian[i * n + i]!;
    if (d === 0) {
      d = 1;
      deadColumns++;
      for (let r = 0; r < rows; r++) wp[r * n + i] = 0;
    }
    diag[i] = d;
  }
  return { diag, deadColumns };
}

/** Static groups: parameters from `W` before any update, in the original column order. */
function staticGroupParams(wp: Float64Array, plan: GptqPlan): void {
  const { rows, n, g, bits, symmetric, params, groupsPerRow, scales, zeros } = plan;
  for (let r = 0; r < rows; r++) {
    for (let gi = 0; gi < groupsPerRow; gi++) {
      const from = r * n + gi * g;
      const p = params(wp, from, Math.min(from + g, (r + 1) * n), bits, symmetric);
      scales[r * groupsPerRow + gi] = p.scale;
      zeros[r * groupsPerRow + gi] = p.zero;
    }
  }
}

/**
 * Act-order: the column order (descending `diag(H)`, ties in original order; the identity without
 * act-order), with the columns of `wp` put in that order in place.
 */
function actOrderPermutation(
  wp: Float64Array,
  diag: Float64Array,
  rows: number,
  n: number,
  actOrder: boolean,
): Uint32Array {
  const perm = new Uint32Array(n);
  for (let i = 0; i < n; i++) perm[i] = i;
  if (!actOrder) return perm;
  const order = Array.from(perm).sort((x, y) => diag[y]! - diag[x]! || x - y);
  perm.set(order);
  const row = new Float64Array(n);
  for (let r = 0; r < rows; r++) {
    const base = r * n;
    row.set(wp.subarray(base, base + n));
    for (let j = 0; j < n; j++) wp[base + j] = row[perm[j]!]!;
  }
  return perm;
}

/**
 * Damping with retries: `U` = upper Cholesky factor of `(Hp + λI)⁻¹` for the first damping
 * `percdamp_k = percdamp · 10^k` (see the module documentation) that is positive definite.
 *
 * @throws {HessianNotPositiveDefiniteError} When no damping tried works.
 */
function dampedInverseFactor(
  hessian: Float64Array,
  hs: number,
  n: number,
  perm: Uint32Array,
  diag: Float64Array,
  percdamp: number,
  maxRetries: number,
  work: { u: Float64Array; x: Float64Array; f64: F64Kernels },
): { percdampUsed: number; dampRetries: number } {
  const { u, x, f64 } = work;
  let meanDiag = 0;
  for (let i = 0; i < n; i++) meanDiag += diag[i]!;
  meanDiag /= n;
  const tried: number[] = [];
  let percdampUsed = NaN;
  for (let k = 0; k <= maxRetries; k++) {
    const pd = k === 0 ? percdamp : (percdamp > 0 ? percdamp : 0.001) * 10 ** k;
    tried.push(pd);
    fillReversedHessian(u, hessian, hs, n, perm, diag, pd * meanDiag);
    if (reversedToInverseFactor(u, n, x, f64)) {
      percdampUsed = pd;
      break;
    }
  }
  if (Number.isNaN(percdampUsed)) throw new HessianNotPositiveDefiniteError(tried, meanDiag);
  return { percdampUsed, dampRetries: tried.length - 1 };
}

/**
 * The lazy-batch sweep over the permuted `wp` (updated in place): blocks of `blockSize` columns
 * (also ended at group boundaries with `updated`); dynamic group parameters are computed when
 * their group starts; after each block, `W[:, i2:] −= Err · U[i1:i2, i2:]` by `f64.gemmSub`
 * (`err` holds `rows · blockSize` values). Returns the codes in permuted order and
 * `Σ (w − q)² / U_ii²`.
 */
function lazyBatchSweep(
  wp: Float64Array,
  u: Float64Array,
  err: Float64Array,
  perm: Uint32Array,
  plan: GptqPlan,
  blockSize: number,
  updated: boolean,
  f64: F64Kernels,
): { codesP: Uint8Array; lossSum: number } {
  const { rows, n, g, bits, symmetric, maxq, params, isStatic, isDynamic, groupsPerRow } = plan;
  const { scales, zeros } = plan;
  const codesP = new Uint8Array(rows * n);
  let lossSum = 0;
  for (let i1 = 0; i1 < n;) {
    let i2 = Math.min(i1 + blockSize, n);
    if (isDynamic && updated) i2 = Math.min(i2, (Math.floor(i1 / g) + 1) * g);
    for (let r = 0; r < rows; r++) {
      const wr = r * n;
      const pr = r * groupsPerRow;
      // Groups starting in this block: parameters from W as it stands at the block start.
      if (isDynamic) {
        for (let c = Math.ceil(i1 / g) * g; c < i2; c += g) {
          const p = params(wp, wr + c, wr + Math.min(c + g, n), bits, symmetric);
          scales[pr + c / g] = p.scale;
          zeros[pr + c / g] = p.zero;
        }
      }
      let s = scales[pr]!;
      let z = zeros[pr]!;
      const er = r * blockSize - i1;
      for (let i = i1; i < i2; i++) {
        if (isDynamic) {
          if (i === i1 || i % g === 0) {
            const gi = pr + Math.floor(i / g);
            s = scales[gi]!;
            z = zeros[gi]!;
          }
        } else if (isStatic) {
          const gi = pr + Math.floor(perm[i]! / g);
          s = scales[gi]!;
          z = zeros[gi]!;
        }
        const x = wp[wr + i]!;
        const code = quantizeValue(x, s, z, maxq);
        const ui = i * n;
        const e = (x - s * (code - z)) / u[ui + i]!;
        lossSum += e * e;
        err[er + i] = e;
        codesP[wr + i] = code;
        for (let j = i + 1; j < i2; j++) wp[wr + j] = wp[wr + j]! - e * u[ui + j]!;
      }
    }
    if (i2 < n) {
      f64.gemmSub(rows, n - i2, i2 - i1, err, 0, blockSize, u, i1 * n + i2, n, false, wp, i2, n);
    }
    i1 = i2;
  }
  return { codesP, lossSum };
}

/**
 * Un-permutes the codes into the original column order, dequantizes them and packs them; the
 * group of every column is returned as `groupIndex` with act-order and non-static groups.
 */
function unpermuteAndPack(
  codesP: Uint8Array,
  perm: Uint32Array,
  plan: GptqPlan,
  actOrder: boolean,
): { dequantized: Float32Array; packed: PackedWeight; groupIndex?: Uint32Array } {
  const { rows, n, g, bits, grouped, isStatic, isDynamic, groupsPerRow, scales, zeros } = plan;
  const codes = new Uint8Array(rows * n);
  const dequantized = new Float32Array(rows * n);
  const groupOf = new Uint32Array(n); // group of the column at permuted position j
  for (let j = 0; j < n; j++) {
    groupOf[j] = grouped ? Math.floor((isStatic ? perm[j]! : j) / g) : 0;
  }
  for (let r = 0; r < rows; r++) {
    const base = r * n;
    const pr = r * groupsPerRow;
    for (let j = 0; j < n; j++) {
      const gi = pr + groupOf[j]!;
      const code = codesP[base + j]!;
      const c = perm[j]!;
      codes[base + c] = code;
      dequantized[base + c] = scales[gi]! * (code - zeros[gi]!);
    }
  }
  const gs = grouped ? g : n; // packed group size
  const packed = packCodes(codes, rows, n, bits, { groupSize: gs, scales, zeros });
  if (!(actOrder && isDynamic)) return { dequantized, packed };
  const groupIndex = new Uint32Array(n);
  for (let j = 0; j < n; j++) groupIndex[perm[j]!] = groupOf[j]!;
  return { dequantized, packed, groupIndex };
}

/**
 * `lengths` zeroed arrays from `f64`, or from the reference (JS memory, the same products bit for
 * bit) when `f64` cannot hold them (e.g. a WASM memory's 4 GiB).
 */
function workArrays(
  f64: F64Kernels,
  lengths: readonly number[],
): { f64: F64Kernels; arrays: Float64Array[] } {
  try {
    return { f64, arrays: f64.alloc(lengths) };
  } catch (e) {
    if (!(e instanceof RangeError) || f64 === refF64) throw e;
    return { f64: refF64, arrays: refF64.alloc(lengths) };
  }
}

/**
 * Quantize one linear layer with GPTQ: round columns one at a time and compensate each column's
 * error on the columns not yet quantized, weighted by the inverse Hessian.
 *
 * @param w Weights `[rows][cols]` (`[out][in]`), row-major; not modified.
 * @param rows Output features.
 * @param cols Input features.
 * @param hessian `H` `[cols][cols]`, symmetric positive semi-definite (e.g. `2/N · Σ x xᵀ`);
 *   read as `(H + Hᵀ)/2`; not modified.
 * @param options Bits, grouping and the GPTQ knobs (see {@linkcode GPTQ_DEFAULTS}).
 * @returns `Ŵ`, the packed form, the reference's loss and the damping used.
 * @throws {RangeError} On bad shapes, options or non-finite inputs.
 * @throws {HessianNotPositiveDefiniteError} When no damping tried makes `H + λI` positive definite.
 *
 * @example Usage
 * ```ts
 * import { GPTQ_DEFAULTS, gptqQuantizeLayer } from "./gptq_core.ts";
 * const w = new Float32Array([0.3, -0.7, 0.2, 0.9, 0.1, -0.4]);
 * const h = new Float64Array([2, 1, 0, 1, 2, 1, 0, 1, 2]); // 3×3, positive definite
 * const r = gptqQuantizeLayer(w, 2, 3, h, { ...GPTQ_DEFAULTS, bits: 4, symmetric: false });
 * if (r.dequantized.length !== 6 || !(r.loss >= 0)) throw new Error("unexpected result");
 * ```
 */
export function gptqQuantizeLayer(
  w: Float32Array,
  rows: number,
  cols: number,
  hessian: Float64Array,
  options: GptqLayerOptions,
): GptqLayerResult {
  // --- Validation -------------------------------------------------------------------------
  const { g, maxRetries, hs } = validateLayerInputs(w, rows, cols, hessian, options);
  const { bits, symmetric, percdamp, blockSize, actOrder, mse } = options;
  const mode = options.groupParams;
  const n = cols;
  const grouped = g > 0;
  const gs = grouped ? g : n; // packed group size
  const groupsPerRow = Math.ceil(n / gs);
  const isStatic = grouped && mode === "static";
  const plan: GptqPlan = {
    rows,
    n,
    g,
    bits,
    symmetric,
    maxq: 2 ** bits - 1,
    params: mse ? groupParamsMse : groupParams,
    grouped,
    isStatic,
    isDynamic: grouped && !isStatic,
    groupsPerRow,
    scales: new Float32Array(rows * groupsPerRow),
    zeros: new Uint8Array(rows * groupsPerRow),
  };

  // --- Working arrays where the products run: W, U, the block errors, the factor's scratch ---
  const { f64, arrays } = workArrays(options.f64 ?? refF64, [
    rows * n,
    n * n,
    rows * blockSize,
    factorScratch(n),
  ]);
  const [wp, u, err, x] = arrays as [Float64Array, Float64Array, Float64Array, Float64Array];
  let swept: ReturnType<typeof lazyBatchSweep>;
  let perm: Uint32Array;
  let damping: { percdampUsed: number; dampRetries: number };
  let deadColumns: number;
  try {
    // Per-row parameters from the original W (before dead columns).
    wp.set(w);
    if (!grouped) rowParams(wp, plan);
    const dead = deadColumnDiagonal(wp, hessian, hs, rows, n);
    deadColumns = dead.deadColumns;
    if (isStatic) staticGroupParams(wp, plan);
    perm = actOrderPermutation(wp, dead.diag, rows, n, actOrder);
    damping = dampedInverseFactor(hessian, hs, n, perm, dead.diag, percdamp, maxRetries, {
      u,
      x,
      f64,
    });
    swept = lazyBatchSweep(wp, u, err, perm, plan, blockSize, mode === "updated", f64);
  } finally {
    f64.release(arrays);
  }
  const { codesP, lossSum } = swept;
  const { percdampUsed, dampRetries } = damping;
  const { dequantized, packed, groupIndex } = unpermuteAndPack(codesP, perm, plan, actOrder);
  const result: GptqLayerResult = {
    dequantized,
    packed,
    loss: lossSum / 2,
    percdampUsed,
    dampRetries,
    deadColumns,
  };
  return groupIndex ? { ...result, groupIndex } : result;
}
