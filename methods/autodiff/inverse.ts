/**
 * Inverse of a small dense matrix and its backward pass, for AffineQuant's affine matrices
 * (bytedance/AffineQuant `models/transformation.py`: the consumer weights get `Âᵀ`, the producer
 * side applies `Â⁻¹`).
 *
 * Forward: Gauss–Jordan elimination with partial pivoting in float64 (the NaN reports upstream
 * come from inverting in fp16; here it is float64 throughout).
 * Backward: `N = A⁻¹` gives `dN = −N dA N`, so `∂L/∂A = −Nᵀ (∂L/∂N) Nᵀ`.
 *
 * A matrix is singular here when a pivot is zero, not finite, or smaller than `1e-12` times the
 * largest absolute entry of the matrix: {@linkcode SingularMatrixError}.
 *
 * @module
 */

/** A matrix could not be inverted: it is singular (or numerically so) or has non-finite entries. */
export class SingularMatrixError extends Error {
  /** Column of the elimination at which no usable pivot was found. */
  readonly column: number;
  /** Creates the error for `column` of an `n × n` matrix. */
  constructor(n: number, column: number, detail: string) {
    super(`Cannot invert the ${n}×${n} matrix: singular at column ${column} (${detail})`);
    this.name = "SingularMatrixError";
    this.column = column;
  }
}

/** Relative pivot threshold below which a matrix counts as singular. */
export const PIVOT_TOLERANCE = 1e-12;

/**
 * `A⁻¹` of the row-major `n × n` matrix `a` (not modified), in float64. Throws
 * {@linkcode SingularMatrixError} when `a` is singular or has a non-finite entry.
 *
 * @example Inverse of a diagonal matrix
 * ```ts
 * import { invertMatrix } from "./inverse.ts";
 * const inv = invertMatrix(Float64Array.of(2, 0, 0, 4), 2);
 * if (inv[0] !== 0.5 || inv[3] !== 0.25) throw new Error("wrong inverse");
 * ```
 */
export function invertMatrix(a: ArrayLike<number>, n: number): Float64Array {
  if (a.length !== n * n) {
    throw new RangeError(`invertMatrix: expected ${n * n} entries for n = ${n}, got ${a.length}`);
  }
  const m = Float64Array.from(a);
  const inv = new Float64Array(n * n);
  let scale = 0;
  for (let i = 0; i < n * n; i++) {
    const v = Math.abs(m[i]!);
    if (!Number.isFinite(v)) throw new SingularMatrixError(n, Math.floor(i / n) % n, "non-finite");
    if (v > scale) scale = v;
  }
  for (let i = 0; i < n; i++) inv[i * n + i] = 1;
  for (let c = 0; c < n; c++) {
    let p = c;
    let best = Math.abs(m[c * n + c]!);
    for (let r = c + 1; r < n; r++) {
      const v = Math.abs(m[r * n + c]!);
      if (v > best) {
        best = v;
        p = r;
      }
    }
    if (!(best > PIVOT_TOLERANCE * scale)) {
      throw new SingularMatrixError(n, c, `largest pivot ${best.toExponential(2)}`);
    }
    if (p !== c) {
      for (let j = 0; j < n; j++) {
        const a1 = m[c * n + j]!, b1 = inv[c * n + j]!;
        m[c * n + j] = m[p * n + j]!;
        inv[c * n + j] = inv[p * n + j]!;
        m[p * n + j] = a1;
        inv[p * n + j] = b1;
      }
    }
    const d = 1 / m[c * n + c]!;
    for (let j = 0; j < n; j++) {
      m[c * n + j] = m[c * n + j]! * d;
      inv[c * n + j] = inv[c * n + j]! * d;
    }
    for (let r = 0; r < n; r++) {
      if (r === c) continue;
      const f = m[r * n + c]!;
      if (f === 0) continue;
      for (let j = 0; j < n; j++) {
        m[r * n + j] = m[r * n + j]! - f * m[c * n + j]!;
        inv[r * n + j] = inv[r * n + j]! - f * inv[c * n + j]!;
      }
    }
  }
  return inv;
}

/**
 * Adds `∂L/∂A = −Nᵀ · dN · Nᵀ` to `dA` given the inverse `N = A⁻¹` and `dN = ∂L/∂N` (all
 * row-major `n × n`).
 */
export function inverseBackward(
  inv: ArrayLike<number>,
  dInv: ArrayLike<number>,
  n: number,
  dA: Float64Array,
): void {
  // t = Nᵀ dN, then dA −= t Nᵀ.
  const t = new Float64Array(n * n);
  for (let k = 0; k < n; k++) {
    for (let i = 0; i < n; i++) {
      const nki = inv[k * n + i]!;
      if (nki === 0) continue;
      for (let j = 0; j < n; j++) t[i * n + j] = t[i * n + j]! + nki * dInv[k * n + j]!;
    }
  }
  for (let i = 0; i < n; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let k = 0; k < n; k++) s += t[i * n + k]! * inv[j * n + k]!;
      dA[i * n + j] = dA[i * n + j]! - s;
    }
  }
}
