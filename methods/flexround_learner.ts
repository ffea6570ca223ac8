/**
 * FlexRound's learnable quantizer for the seven linears of one block (official
 * `onliwad101/FlexRound_LRQ` `quant/UniformAffineQuantizer.py`, `mode='flexround'`), as a
 * {@linkcode BlockLearner} for the reconstruction driver.
 *
 * Per linear `W` (`[out][in]`): `δ₁` = log of the grid size per quantization group (per output
 * row in the official per-channel code), `δ₂` per weight (zeros), `δ₃` per output row (zeros);
 * `Ŵ = exp(δ₁) · clamp(round_STE(W / exp(δ₁ + δ₂ + δ₃)), −z, 2^b − 1 − z)` with the zero point
 * `z` fixed at initialization (`methods/autodiff/fake_quant.ts`). The paper's per-input-channel `s₄` is
 * not used by the official LLM code and is not learned here either.
 *
 * Initialization of `(δ₁, z)`:
 * - `clipping: false` (the official W3/W4 weight-only setting): min-max with zero in range —
 *   exactly the core quantizer's asymmetric RTN grid (`core/quantizer.ts` `paramsForRange`), so
 *   the initial block *is* the RTN block. (Official `calculate_qparams` is the same formula
 *   except for all-zero rows: scale 1e-8 there, the (−1, 1) range here.)
 * - `clipping: true` (official W4A8): the 2-D search of `perform_2D_search`: 100 range widths ×
 *   every zero point, minimising `Σ |Ŵ − W|^2.4` per group (asymmetric grids only; the official
 *   1-D search for tensors of one sign is not reproduced).
 * - symmetric: the core absmax grid (scale `max|W|/(2^(b−1)−1)`, zero `2^(b−1)`, codes clamped to
 *   `[−2^(b−1), 2^(b−1)−1]` as the official symmetric branch clamps); the official symmetric scale
 *   is `2·max|W|/(2^b−1)`. Not used by any official script.
 *
 * Extension: per-group quantization (`groupSize`) learns one `δ₁` and zero per group (the
 * official LLM code is per-channel only); `δ₂`, `δ₃` are unchanged.
 *
 * `backward` reuses the quotients `W / exp(δ₁+δ₂+δ₃)` of the last `weights()` call: the driver
 * calls `weights()`, then `backward()` before the next parameter update.
 *
 * Folding: codes `clamp(round(W / exp(δ₁+δ₂+δ₃))) + z`, scales `float32(exp(δ₁))`; the dequantized
 * weights are exactly `scale · (code − zero)` of the packed form.
 *
 * @module
 */

import {
  fakeQuantBackward,
  fakeQuantForward,
  type FakeQuantParams,
  groupsPerRow,
} from "./autodiff/fake_quant.ts";
import type { BlockWeights, LinearGrads } from "./autodiff/block.ts";
import { releaseMatrix } from "./autodiff/linear.ts";
import type { Vec } from "./autodiff/types.ts";
import type { BlockLearner, FoldedLinear } from "./calibration/reconstruct.ts";
import { denseBlockWeights } from "./calibration/reconstruct.ts";
import {
  packCodes,
  paramsForRange,
  rangeWithZero,
  roundHalfEven,
  validateSpec,
} from "../core/quantizer.ts";
import type { Kernels } from "../kernels/types.ts";
import { LINEAR_KINDS, type LinearKind, type LlamaLayer, type Matrix } from "../models/types.ts";

/** The quantizer settings of a FlexRound learner. */
export interface FlexRoundSpec {
  readonly bits: number;
  /** Input columns per group; absent for per-channel. */
  readonly groupSize?: number;
  readonly symmetric: boolean;
  /** MSE (norm 2.4) range search for the initial grid instead of min-max. */
  readonly clipping: boolean;
}

/** Grid size and zero point of one group by the official 2-D search (100 widths × all zeros). */
export function searchGroupRange(
  w: ArrayLike<number>,
  from: number,
  to: number,
  bits: number,
): { scale: number; zero: number } {
  const maxq = 2 ** bits - 1;
  const { lo, hi } = rangeWithZero(w, from, to);
  const range = hi - lo;
  if (range === 0) return paramsForRange(0, 0, bits, false);
  let best = { scale: 0, zero: 0 };
  let bestScore = Infinity;
  for (let i = 1; i <= 100; i++) {
    const scale = Math.fround(((range / 100) * i) / maxq);
    for (let zero = 0; zero <= maxq; zero++) {
      let score = 0;
      for (let j = from; j < to; j++) {
        const q = Math.min(maxq, Math.max(0, roundHalfEven(w[j]! / scale) + zero));
        score += Math.abs(scale * (q - zero) - w[j]!) ** 2.4;
      }
      if (score < bestScore) {
        bestScore = score;
        best = { scale, zero };
      }
    }
  }
  return best;
}

/** Initial FlexRound parameters of one matrix (see the module documentation). */
export function initFlexRound(m: Matrix, spec: FlexRoundSpec): FakeQuantParams {
  const groupSize = spec.groupSize ?? m.cols;
  validateSpec(
    spec.groupSize !== undefined
      ? { bits: spec.bits, granularity: "group", groupSize, symmetric: spec.symmetric }
      : { bits: spec.bits, granularity: "channel", symmetric: spec.symmetric },
    m.cols,
  );
  const gpr = Math.ceil(m.cols / groupSize);
  const logScale = new Float64Array(m.rows * gpr);
  const zero = new Float64Array(m.rows * gpr);
  for (let r = 0; r < m.rows; r++) {
    for (let g = 0; g < gpr; g++) {
      const from = r * m.cols + g * groupSize;
      const to = r * m.cols + Math.min(m.cols, (g + 1) * groupSize);
      const p = spec.clipping && !spec.symmetric
        ? searchGroupRange(m.data, from, to, spec.bits)
        : (() => {
          const { lo, hi } = rangeWithZero(m.data, from, to);
          return paramsForRange(lo, hi, spec.bits, spec.symmetric);
        })();
      logScale[r * gpr + g] = Math.log(p.scale);
      zero[r * gpr + g] = p.zero;
    }
  }
  return {
    rows: m.rows,
    cols: m.cols,
    groupSize,
    bits: spec.bits,
    logScale,
    elem: new Float64Array(m.rows * m.cols),
    row: new Float64Array(m.rows),
    zero,
  };
}

/** Packed codes and dequantized weights of the current parameters. */
export function foldFlexRound(w: Matrix, p: FakeQuantParams): FoldedLinear {
  const { rows, cols, groupSize } = p;
  const gpr = groupsPerRow(p);
  const maxq = 2 ** p.bits - 1;
  const scales = new Float32Array(rows * gpr);
  const zeros = new Uint8Array(rows * gpr);
  for (let i = 0; i < scales.length; i++) {
    scales[i] = Math.exp(p.logScale[i]!);
    zeros[i] = p.zero[i]!;
  }
  const codes = new Uint8Array(rows * cols);
  const data = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const gi = r * gpr + Math.floor(c / groupSize);
      const z = zeros[gi]!;
      const i = r * cols + c;
      const u = w.data[i]! / Math.exp(p.logScale[gi]! + p.elem[i]! + p.row[r]!);
      const q = Math.min(maxq - z, Math.max(-z, roundHalfEven(u)));
      codes[i] = q + z;
      data[i] = scales[gi]! * q;
    }
  }
  const packed = packCodes(codes, rows, cols, p.bits, { groupSize, scales, zeros });
  return { matrix: { rows, cols, data }, packed };
}

/** The FlexRound {@linkcode BlockLearner} of one dense block. */
export function flexRoundLearner(
  layer: LlamaLayer,
  spec: FlexRoundSpec,
  kernels: Kernels,
): BlockLearner {
  const base = denseBlockWeights(layer);
  const originals = Object.fromEntries(LINEAR_KINDS.map((k) => [k, base[k]])) as Record<
    LinearKind,
    Matrix
  >;
  const qp = Object.fromEntries(
    LINEAR_KINDS.map((k) => [k, initFlexRound(originals[k], spec)]),
  ) as Record<LinearKind, FakeQuantParams>;
  const initial = LINEAR_KINDS.map((k) => Float64Array.from(qp[k].logScale));
  const current = Object.fromEntries(
    LINEAR_KINDS.map((k) => [
      k,
      {
        rows: originals[k].rows,
        cols: originals[k].cols,
        data: new Float32Array(originals[k].data.length),
      },
    ]),
  ) as Record<LinearKind, Matrix>;
  const quotients = Object.fromEntries(
    LINEAR_KINDS.map((k) => [k, new Float64Array(originals[k].data.length)]),
  ) as Record<LinearKind, Float64Array>;
  const params: Vec[] = [];
  for (const k of LINEAR_KINDS) params.push(qp[k].logScale, qp[k].elem, qp[k].row);
  return {
    params,
    weights(): BlockWeights {
      for (const k of LINEAR_KINDS) {
        releaseMatrix(kernels, current[k]);
        fakeQuantForward(originals[k].data, qp[k], current[k].data, quotients[k]);
      }
      return { attnNorm: base.attnNorm, mlpNorm: base.mlpNorm, ...current };
    },
    backward(dW: LinearGrads, grads: readonly Vec[]): void {
      LINEAR_KINDS.forEach((k, i) => {
        fakeQuantBackward(originals[k].data, qp[k], dW[k], {
          logScale: grads[3 * i]!,
          elem: grads[3 * i + 1]!,
          row: grads[3 * i + 2]!,
        }, quotients[k]);
      });
    },
    fold(): Record<LinearKind, FoldedLinear> {
      for (const k of LINEAR_KINDS) releaseMatrix(kernels, current[k]);
      return Object.fromEntries(
        LINEAR_KINDS.map((k) => [k, foldFlexRound(originals[k], qp[k])]),
      ) as Record<LinearKind, FoldedLinear>;
    },
    reset(): void {
      LINEAR_KINDS.forEach((k, i) => {
        qp[k].logScale.set(initial[i]!);
        qp[k].elem.fill(0);
        qp[k].row.fill(0);
      });
    },
  };
}
