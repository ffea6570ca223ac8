/**
 * Learnable weight clipping (LWC, OpenGVLab/OmniQuant `quantize/quantizer.py`, inherited by
 * AffineQuant): fake quantization of a weight matrix whose range is the group's minimum and
 * maximum shrunk by sigmoid-parameterised factors, with a straight-through estimator (STE) for
 * rounding.
 *
 * Per group (an output row for per-channel; `groupSize` input columns otherwise), with
 * `mx = max w`, `mn = min w` (the range is not widened to hold zero, as in the official code):
 * - asymmetric: `hi = σ(γ)·mx`, `lo = σ(β)·mn`, `s = clamp((hi − lo)/(2^b − 1), 1e-5, 1e4)`,
 *   `z = round(−lo/s)`, `ŵ = s · (clamp(round(w/s) + z, 0, 2^b − 1) − z)`;
 * - symmetric: `s = clamp(max(|hi|, |lo|)/(2^(b−1) − 1), 1e-5, 1e4)`, codes in
 *   `[−2^(b−1), 2^(b−1) − 1]` (the suite's absmax convention, `core/quantizer.ts`; the official
 *   symmetric branch uses zero `2^(b−1) − 1` over `[0, 2^b − 1]`, the mirrored range).
 *
 * Gradients follow torch's autograd of the official forward: rounding passes the gradient
 * (`round_ste`), the rounded zero point passes none (`round`), `clamp` passes it only inside the
 * range, and the scale's dependence on the group's extreme weights (`amax`/`amin`) is kept: the
 * gradient reaches the weights (the affine matrices upstream train through them), `γ` and `β`.
 * With `bits ≥ 16` the op is the identity (`n_bits >= 16` disables the official quantizer).
 *
 * @module
 */

import { roundHalfEven } from "../../core/quantizer.ts";
import type { Vec } from "./types.ts";

/** Bounds of the scale (`CLIPMIN` and the official upper clamp). */
export const LWC_SCALE_MIN = 1e-5;
/** Upper bound of the scale. */
export const LWC_SCALE_MAX = 1e4;
/** Initial `γ`, `β` (`σ(4) ≈ 0.982`). */
export const LWC_INIT = 4;

/** The learnable state of one LWC-quantized matrix. */
export interface LwcParams {
  readonly rows: number;
  readonly cols: number;
  /** Input columns per group (`cols` for per-channel); the last group of a row may be shorter. */
  readonly groupSize: number;
  readonly bits: number;
  readonly symmetric: boolean;
  /** `γ` of every group, `[rows][groupsPerRow]`. */
  readonly up: Vec;
  /** `β` of every group. */
  readonly low: Vec;
}

/** Initial LWC parameters (`γ = β = 4`) for a `rows × cols` matrix. */
export function initLwc(
  rows: number,
  cols: number,
  spec: { bits: number; groupSize?: number; symmetric: boolean },
): LwcParams {
  const groupSize = spec.groupSize ?? cols;
  const n = rows * Math.ceil(cols / groupSize);
  return {
    rows,
    cols,
    groupSize,
    bits: spec.bits,
    symmetric: spec.symmetric,
    up: new Float64Array(n).fill(LWC_INIT),
    low: new Float64Array(n).fill(LWC_INIT),
  };
}

const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

/** Grid of one group: scale, zero, code bounds, and what the scale depends on. */
export interface LwcGroup {
  readonly scale: number;
  readonly zero: number;
  readonly qmin: number;
  readonly qmax: number;
  /** Indices of the group's largest and smallest weights. */
  readonly argMax: number;
  readonly argMin: number;
  readonly mx: number;
  readonly mn: number;
  /** Whether the scale is strictly inside its clamp (then it carries a gradient). */
  readonly free: boolean;
}

/** The grid of group `gi` (covering `w[from..to)`), optionally with float32 scale (folding). */
export function lwcGroup(
  w: Vec,
  p: LwcParams,
  gi: number,
  from: number,
  to: number,
  f32 = false,
): LwcGroup {
  let mx = -Infinity, mn = Infinity, argMax = from, argMin = from;
  for (let i = from; i < to; i++) {
    const v = w[i]!;
    if (v > mx) {
      mx = v;
      argMax = i;
    }
    if (v < mn) {
      mn = v;
      argMin = i;
    }
  }
  const hi = sigmoid(p.up[gi]!) * mx;
  const lo = sigmoid(p.low[gi]!) * mn;
  let raw: number;
  let zero: number, qmin: number, qmax: number;
  if (p.symmetric) {
    const half = 2 ** (p.bits - 1);
    raw = Math.max(Math.abs(hi), Math.abs(lo)) / (half - 1);
    zero = 0;
    qmin = -half;
    qmax = half - 1;
  } else {
    raw = (hi - lo) / (2 ** p.bits - 1);
    zero = NaN;
    qmin = 0;
    qmax = 2 ** p.bits - 1;
  }
  let scale = Math.min(LWC_SCALE_MAX, Math.max(LWC_SCALE_MIN, raw));
  if (f32) scale = Math.fround(scale);
  const free = raw > LWC_SCALE_MIN && raw < LWC_SCALE_MAX;
  if (!p.symmetric) zero = roundHalfEven(Math.min(1e4, Math.max(-1e4, -lo / scale)));
  return { scale, zero, qmin, qmax, argMax, argMin, mx, mn, free };
}

/** `ŵ` of `w` (`[rows][cols]`) into `out`. */
export function lwcForward(w: Vec, p: LwcParams, out: Vec): void {
  if (p.bits >= 16) {
    out.set(w);
    return;
  }
  const { rows, cols, groupSize } = p;
  const gpr = Math.ceil(cols / groupSize);
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < gpr; g++) {
      const from = r * cols + g * groupSize, to = r * cols + Math.min(cols, (g + 1) * groupSize);
      const G = lwcGroup(w, p, r * gpr + g, from, to);
      for (let i = from; i < to; i++) {
        const c = Math.min(G.qmax, Math.max(G.qmin, roundHalfEven(w[i]! / G.scale) + G.zero));
        out[i] = (c - G.zero) * G.scale;
      }
    }
  }
}

/**
 * Adds `∂L/∂γ`, `∂L/∂β` to `grads` and, when `dW` is given, `∂L/∂w` to it, given `dOut = ∂L/∂ŵ`.
 */
export function lwcBackward(
  w: Vec,
  p: LwcParams,
  dOut: Vec,
  grads: { readonly up: Vec; readonly low: Vec },
  dW?: Vec,
): void {
  if (p.bits >= 16) {
    if (dW) { for (let i = 0; i < w.length; i++) dW[i] = dW[i]! + dOut[i]!; }
    return;
  }
  const { rows, cols, groupSize } = p;
  const gpr = Math.ceil(cols / groupSize);
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < gpr; g++) {
      const gi = r * gpr + g;
      const from = r * cols + g * groupSize, to = r * cols + Math.min(cols, (g + 1) * groupSize);
      const G = lwcGroup(w, p, gi, from, to);
      let dScale = 0;
      for (let i = from; i < to; i++) {
        const u = w[i]! / G.scale;
        const rq = roundHalfEven(u) + G.zero;
        const inside = rq >= G.qmin && rq <= G.qmax;
        const c = Math.min(G.qmax, Math.max(G.qmin, rq));
        const gr = dOut[i]!;
        if (inside) {
          if (dW) dW[i] = dW[i]! + gr;
          dScale += gr * (c - G.zero - u);
        } else {
          dScale += gr * (c - G.zero);
        }
      }
      if (!G.free) continue;
      const su = sigmoid(p.up[gi]!), sl = sigmoid(p.low[gi]!);
      // d raw / d hi and d raw / d lo.
      let dHi: number, dLo: number;
      if (p.symmetric) {
        const qm = 2 ** (p.bits - 1) - 1;
        const hi = su * G.mx, lo = sl * G.mn;
        if (Math.abs(hi) >= Math.abs(lo)) {
          dHi = (dScale * Math.sign(hi)) / qm;
          dLo = 0;
        } else {
          dHi = 0;
          dLo = (dScale * Math.sign(lo)) / qm;
        }
      } else {
        const maxq = 2 ** p.bits - 1;
        dHi = dScale / maxq;
        dLo = -dScale / maxq;
      }
      grads.up[gi] = grads.up[gi]! + dHi * G.mx * su * (1 - su);
      grads.low[gi] = grads.low[gi]! + dLo * G.mn * sl * (1 - sl);
      if (dW) {
        dW[G.argMax] = dW[G.argMax]! + dHi * su;
        dW[G.argMin] = dW[G.argMin]! + dLo * sl;
      }
    }
  }
}
