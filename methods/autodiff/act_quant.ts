/**
 * Per-token dynamic activation fake quantization with a straight-through estimator, for training
 * weight-activation cells (AffineQuant W4A4/W4A8, whose activations are quantized per token,
 * dynamically, as in OmniQuant). The forward pass is the suite's evaluation quantizer itself
 * (`core/act_quantizer.ts` `fakeQuantActivations`, uniform kernel, per token, dynamic), so what
 * is trained is what is evaluated.
 *
 * Backward (torch autograd of a fake quantizer whose step comes from the token's own range, as
 * OmniQuant's `per_token_dynamic_calibration` + `round_ste`): rounding passes the gradient, the
 * rounded zero point passes none, clamped elements pass none directly, and the step's dependence
 * on the token's extreme elements is kept. With codes `c = clamp(round(x/Δ) (+ z))`:
 * - symmetric, `Δ = clip · max|x| / (2^(b−1) − 1)`: `∂L/∂x_i = g_i` inside the range, plus
 *   `Σ_i g_i ρ_i · clip / (2^(b−1) − 1) · sign(x_k)` at the element `k` of largest magnitude, where
 *   `ρ_i = c_i − x_i/Δ` inside the range and `c_i` outside;
 * - asymmetric, `Δ = clip · (max(x, 0) − min(x, 0)) / (2^b − 1)`: the same with `ρ_i` measured from
 *   the zero point, the step's gradient going to the largest element (when positive) and, negated,
 *   to the smallest (when negative).
 * No step gradient flows when the step sits at its floor (`1e-5`).
 *
 * @module
 */

import {
  ACT_FLOOR,
  type ActivationQuantization,
  fakeQuantActivations,
} from "../../core/act_quantizer.ts";
import { UnsupportedConfigError } from "../../core/errors.ts";
import { roundHalfEven } from "../../core/quantizer.ts";

/** Throws `UnsupportedConfigError` for activation quantizers training does not differentiate. */
export function checkTrainableActQuant(aq: ActivationQuantization): void {
  const o = aq.options;
  if (aq.kernel !== "uniform" || o.granularity !== "token" || o.static || o.bmm) {
    throw new UnsupportedConfigError(
      "Training through activation quantization supports the uniform per-token dynamic " +
        `quantizer without bmm; got kernel ${aq.kernel}, granularity ${o.granularity}` +
        `${o.static ? ", static" : ""}${o.bmm ? ", bmm" : ""}`,
    );
  }
}

/** Fake-quantized copy of `x` (`[T][n]`): the evaluation quantizer. */
export function actQuantForward(
  aq: ActivationQuantization,
  x: Float32Array,
  T: number,
  n: number,
): Float32Array {
  return fakeQuantActivations(aq, x, T, n, undefined);
}

/**
 * `∂L/∂x` (`[T][n]`, written into `dx`) given `dOut = ∂L/∂x̂` and the unquantized input `x`.
 * `dx` may alias `dOut`.
 */
export function actQuantBackward(
  aq: ActivationQuantization,
  x: Float32Array,
  T: number,
  n: number,
  dOut: Float32Array,
  dx: Float32Array,
): void {
  const { bits } = aq;
  const clip = aq.options.clip;
  for (let t = 0; t < T; t++) {
    const o = t * n;
    let lo = 0, hi = 0, kLo = -1, kHi = -1;
    for (let j = 0; j < n; j++) {
      const v = x[o + j]!;
      if (v < lo) {
        lo = v;
        kLo = o + j;
      } else if (v > hi) {
        hi = v;
        kHi = o + j;
      }
    }
    lo *= clip;
    hi *= clip;
    let gStep = 0;
    if (aq.options.symmetric) {
      const qmax = 2 ** (bits - 1) - 1;
      const m = Math.max(-lo, hi);
      const step = Math.fround(Math.max(m, ACT_FLOOR) / qmax);
      for (let j = 0; j < n; j++) {
        const u = x[o + j]! / step;
        const q = roundHalfEven(u);
        const g = dOut[o + j]!;
        if (q >= -qmax && q <= qmax) {
          gStep += g * (q - u);
          dx[o + j] = g;
        } else {
          gStep += g * (q < -qmax ? -qmax : qmax);
          dx[o + j] = 0;
        }
      }
      if (m > ACT_FLOOR) {
        const k = -lo > hi ? kLo : kHi;
        if (k >= 0) dx[k] = dx[k]! + (gStep * clip * Math.sign(x[k]!)) / qmax;
      }
    } else {
      const maxq = 2 ** bits - 1;
      const scale = Math.fround(Math.max(hi - lo, ACT_FLOOR) / maxq);
      const zero = Math.min(maxq, Math.max(0, roundHalfEven(-lo / scale)));
      for (let j = 0; j < n; j++) {
        const u = x[o + j]! / scale;
        const q = roundHalfEven(u) + zero;
        const g = dOut[o + j]!;
        if (q >= 0 && q <= maxq) {
          gStep += g * (q - zero - u);
          dx[o + j] = g;
        } else {
          gStep += g * ((q < 0 ? 0 : maxq) - zero);
          dx[o + j] = 0;
        }
      }
      if (hi - lo > ACT_FLOOR) {
        const d = (gStep * clip) / maxq;
        if (kHi >= 0) dx[kHi] = dx[kHi]! + d;
        if (kLo >= 0) dx[kLo] = dx[kLo]! - d;
      }
    }
  }
}
