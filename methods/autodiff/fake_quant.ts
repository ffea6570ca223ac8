/**
 * Fake quantization of a weight matrix with a straight-through estimator (STE) for rounding, in
 * FlexRound's parameterization (official `UniformAffineQuantizer.forward`, `mode='flexround'`):
 *
 * `Ŵ = s₁ · clamp(round_STE(W / exp(δ₁ + δ₂ + δ₃)), −z, 2^b − 1 − z)`, `s₁ = exp(δ₁)`,
 *
 * with `δ₁` one log-scale per quantization group (per output row for per-channel), `δ₂` one value
 * per weight, `δ₃` one value per output row, and `z` the integer zero point of the group, fixed
 * at initialization. With `δ₂ = δ₃ = 0` it is plain fake quantization with a learnable log-scale.
 *
 * Gradients (round's derivative replaced by 1, clamp's by the indicator of the range, as torch's
 * `clamp` backward does): with `u = W / exp(δ₁+δ₂+δ₃)`, `c = clamp(round(u))`, `G = ∂L/∂Ŵ`,
 * `g_u = G · s₁ · [−z ≤ round(u) ≤ 2^b−1−z]`:
 * `∂L/∂δ₂ = −g_u · u`, `∂L/∂δ₃ = Σ_row −g_u · u`, `∂L/∂δ₁ = Σ_group (G · c · s₁ − g_u · u)`.
 * (The reciprocal rule of the paper: the update of a divisor scales with the weight it divides.)
 *
 * @module
 */

import { roundHalfEven } from "../../core/quantizer.ts";
import type { Vec } from "./types.ts";

/** The learnable state of one fake-quantized matrix. */
export interface FakeQuantParams {
  readonly rows: number;
  readonly cols: number;
  /** Input columns per group (`cols` for per-channel); the last group of a row may be shorter. */
  readonly groupSize: number;
  readonly bits: number;
  /** δ₁: log of the grid size, `[rows][groupsPerRow]`. */
  readonly logScale: Vec;
  /** δ₂: one per weight, `[rows][cols]`. */
  readonly elem: Vec;
  /** δ₃: one per output row, `[rows]`. */
  readonly row: Vec;
  /** Integer zero point of every group, `[rows][groupsPerRow]` (not trained). */
  readonly zero: ArrayLike<number>;
}

/** Gradient buffers shaped like the trainable fields of {@linkcode FakeQuantParams}. */
export interface FakeQuantGrads {
  readonly logScale: Vec;
  readonly elem: Vec;
  readonly row: Vec;
}

/** Groups per row of a parameter set. */
export function groupsPerRow(p: { cols: number; groupSize: number }): number {
  return Math.ceil(p.cols / p.groupSize);
}

/**
 * `Ŵ` into `out` (`[rows][cols]`); when `uOut` is given, also the unrounded quotients
 * `u = W / exp(δ₁ + δ₂ + δ₃)`, which {@linkcode fakeQuantBackward} can reuse while the
 * parameters are unchanged.
 */
export function fakeQuantForward(w: Vec, p: FakeQuantParams, out: Vec, uOut?: Vec): void {
  const { rows, cols, groupSize } = p;
  const gpr = groupsPerRow(p);
  const maxq = 2 ** p.bits - 1;
  for (let r = 0; r < rows; r++) {
    const d3 = p.row[r]!;
    for (let g = 0; g < gpr; g++) {
      const gi = r * gpr + g;
      const d1 = p.logScale[gi]!;
      const s1 = Math.exp(d1);
      const z = p.zero[gi]!;
      const end = Math.min(cols, (g + 1) * groupSize);
      for (let c = g * groupSize; c < end; c++) {
        const i = r * cols + c;
        const u = w[i]! / Math.exp(d1 + p.elem[i]! + d3);
        if (uOut) uOut[i] = u;
        const q = roundHalfEven(u);
        const cl = q < -z ? -z : q > maxq - z ? maxq - z : q;
        out[i] = cl * s1;
      }
    }
  }
}

/**
 * Adds the gradients of `δ₁, δ₂, δ₃` to `grads` given `dOut = ∂L/∂Ŵ`; `u`, when given, holds the
 * quotients of a forward pass with the same parameters.
 */
export function fakeQuantBackward(
  w: Vec,
  p: FakeQuantParams,
  dOut: Vec,
  grads: FakeQuantGrads,
  u?: Vec,
): void {
  const { rows, cols, groupSize } = p;
  const gpr = groupsPerRow(p);
  const maxq = 2 ** p.bits - 1;
  for (let r = 0; r < rows; r++) {
    const d3 = p.row[r]!;
    let rowGrad = 0;
    for (let g = 0; g < gpr; g++) {
      const gi = r * gpr + g;
      const d1 = p.logScale[gi]!;
      const s1 = Math.exp(d1);
      const z = p.zero[gi]!;
      const end = Math.min(cols, (g + 1) * groupSize);
      let groupGrad = 0;
      for (let c = g * groupSize; c < end; c++) {
        const i = r * cols + c;
        const ui = u ? u[i]! : w[i]! / Math.exp(d1 + p.elem[i]! + d3);
        const q = roundHalfEven(ui);
        const inside = q >= -z && q <= maxq - z;
        const cl = q < -z ? -z : q > maxq - z ? maxq - z : q;
        const gr = dOut[i]!;
        const viaU = inside ? -gr * s1 * ui : 0;
        grads.elem[i] = grads.elem[i]! + viaU;
        rowGrad += viaU;
        groupGrad += gr * cl * s1 + viaU;
      }
      grads.logScale[gi] = grads.logScale[gi]! + groupGrad;
    }
    grads.row[r] = grads.row[r]! + rowGrad;
  }
}
