/**
 * RMSNorm, forward and backward: `y = x / rms(x) · w`, `rms(x) = sqrt(mean(x²) + eps)`, per row.
 *
 * @module
 */

import type { Vec } from "./types.ts";

/**
 * `y[t] = x[t] · inv[t] · w` for `T` rows of `w.length` values; writes `1 / rms(x[t])` into
 * `inv` (kept for the backward pass). Sums in float64, like the reference kernel.
 */
export function rmsnormForward(
  x: Vec,
  T: number,
  w: Vec,
  eps: number,
  y: Vec,
  inv: Vec,
): void {
  const d = w.length;
  for (let t = 0; t < T; t++) {
    const o = t * d;
    let ss = 0;
    for (let i = 0; i < d; i++) ss += x[o + i]! * x[o + i]!;
    const r = 1 / Math.sqrt(ss / d + eps);
    inv[t] = r;
    for (let i = 0; i < d; i++) y[o + i] = x[o + i]! * r * w[i]!;
  }
}

/**
 * Adds `∂L/∂x` to `dx` given `dy = ∂L/∂y`:
 * `dx = inv · (w⊙dy) − x · inv³ · (Σ_i (w⊙dy)_i x_i) / d`.
 * (The norm weight `w` is not trained here, so its gradient is not computed.)
 */
export function rmsnormBackward(
  x: Vec,
  T: number,
  w: Vec,
  inv: Vec,
  dy: Vec,
  dx: Vec,
): void {
  const d = w.length;
  for (let t = 0; t < T; t++) {
    const o = t * d;
    const r = inv[t]!;
    let dot = 0;
    for (let i = 0; i < d; i++) dot += w[i]! * dy[o + i]! * x[o + i]!;
    const c = (r * r * r * dot) / d;
    for (let i = 0; i < d; i++) dx[o + i] = dx[o + i]! + r * w[i]! * dy[o + i]! - c * x[o + i]!;
  }
}
