/**
 * SmoothQuant (Xiao et al., ICML 2023, arXiv 2211.10438; mit-han-lab/smoothquant `smooth.py`,
 * `calibration.py`, `fake_quant.py`): activation outliers are migrated into the weights by a
 * per-input-channel factor, then weights and activations are quantized.
 *
 * 1. Per-channel `max|X_j|` of every linear input over the calibration windows (full-precision
 *    model; `methods/calibration/act_stats.ts`).
 * 2. `s_j = max|X_j|^α / max|W_{:,j}|^(1−α)`, clamped below at 1e-5, where `max|W_{:,j}|` (also
 *    clamped at 1e-5) runs over the rows of every linear sharing the input: q, k and v; gate and up
 *    (and, in MoE blocks, the router and every expert).
 * 3. Folded into the preceding RMSNorm weight (÷ s) and the consumers' columns (× s)
 *    (`methods/smoothing.ts`); o and down are not smoothed, as in the official code.
 * 4. Weights quantized by RTN with the cell's quantizer (the `wa` preset uses per-channel
 *    symmetric absmax, the official W8A8 setting); activations by the cell's activation quantizer
 *    (default per-token dynamic symmetric; `methods/activations.ts`). The official levels are
 *    cell settings: O1 = per-tensor weights + per-token dynamic activations, O2 = per-tensor
 *    weights + per-tensor dynamic, O3 = per-tensor weights + per-tensor static (`wa-levels`).
 *
 * α defaults to the code's 0.5; for model families with a published α (the README's table) that
 * α is the default instead, and the row records the value used.
 *
 * Deviations: calibration uses the suite's calibration set (default 128 windows × 256 tokens of
 * TinyStories' calibration half) rather than 512 × 512 of the Pile; windows start with BOS.
 *
 * @module
 */

import { collectActivationStats } from "./calibration/act_stats.ts";
import { expertMlps, type Matrix } from "../models/types.ts";
import { quantizeTransformed } from "./chain.ts";
import { rtn } from "./rtn.ts";
import { foldSmoothing, type LayerSmoothing } from "./smoothing.ts";
import type { Method, TransformedModel } from "./types.ts";
import { requireCalibration } from "./support.ts";

/** Floor of SmoothQuant's weight maxima and smoothing factors (`clamp(min=1e-5)`). */
export const SMOOTH_FLOOR = 1e-5;

/** α of the official README per model family (first match wins); 0.5 otherwise. */
const ALPHA_BY_MODEL: readonly [RegExp, number][] = [
  [/llama-2-70b/i, 0.9],
  [/llama-2-(7|13)b/i, 0.85],
  [/llama-3(\.\d)?-(8|70)b/i, 0.85],
  [/mixtral/i, 0.8],
  [/mistral-7b/i, 0.8],
  [/falcon-40b/i, 0.7],
  [/falcon-7b/i, 0.6],
];

/** SmoothQuant's default α for a model id (README table; 0.5 otherwise). */
export function smoothQuantAlpha(modelId: string): number {
  return ALPHA_BY_MODEL.find(([re]) => re.test(modelId))?.[1] ?? 0.5;
}

/** Largest `|w|` of each column over the rows of every matrix (all `[out][n]`). */
export function columnAbsMax(ms: readonly Matrix[]): Float32Array {
  const n = ms[0]!.cols;
  const out = new Float32Array(n);
  for (const m of ms) {
    for (let r = 0; r < m.rows; r++) {
      for (let j = 0; j < n; j++) {
        const a = Math.abs(m.data[r * n + j]!);
        if (a > out[j]!) out[j] = a;
      }
    }
  }
  return out;
}

/** `s_j = max(actMax_j^α / max(wMax_j, 1e-5)^(1−α), 1e-5)`, in float32. */
export function smoothingFactors(
  actMax: Float32Array,
  wMax: Float32Array,
  alpha: number,
): Float32Array {
  return actMax.map((a, j) =>
    Math.max(
      Math.pow(a, alpha) / Math.pow(Math.max(wMax[j]!, SMOOTH_FLOOR), 1 - alpha),
      SMOOTH_FLOOR,
    )
  );
}

/** The SmoothQuant method. */
export const smoothquant: Method = {
  id: "smoothquant",
  title: "SmoothQuant",
  taxonomy: "salience",
  scope: "weight-activation",
  version: 1,
  wBits: [2, 3, 4, 5, 6, 7, 8],
  aBits: [2, 3, 4, 5, 6, 7, 8, 16],
  relativeCost: 1.3,
  needsCalibration: true,
  reference: "mit-han-lab/smoothquant (smooth.py smooth_lm, calibration.py get_act_scales)",
  params: {
    alpha: {
      type: "number",
      default: 0.5,
      min: 0,
      max: 1,
      doc: "Migration strength α (0: none; 1: all outliers to the weights); per-model defaults",
    },
  },
  modelDefaults: (modelId) => ({ alpha: smoothQuantAlpha(modelId) }),
  transform(model, _q, params, ctx) {
    return new Promise<TransformedModel>((resolve) => {
      const calib = requireCalibration(ctx, "smoothquant");
      const alpha = params.alpha as number;
      const stats = collectActivationStats(model, calib.windows, ctx.kernels);
      const layers = model.weights.layers.map((layer, l): LayerSmoothing => {
        const mlp = layer.mlp;
        // MoE: the router, every expert's gate and up (the shared one too) and the shared
        // expert's gate share the MLP input.
        const consumers = mlp.kind === "dense" ? present([mlp.gate, mlp.up]) : [
          mlp.router,
          ...expertMlps(mlp).flatMap((e) => present([e.gate, e.up])),
          ...(mlp.sharedGate ? [mlp.sharedGate] : []),
        ];
        return {
          qkv: smoothingFactors(
            stats[l]!.qkv.absMax,
            columnAbsMax([layer.q, layer.k, layer.v]),
            alpha,
          ),
          gateup: smoothingFactors(stats[l]!.gateup.absMax, columnAbsMax(consumers), alpha),
        };
      });
      resolve({
        config: model.config,
        weights: foldSmoothing(model.weights, layers, model.config),
        notes: [
          `smoothquant α=${alpha}: q/k/v and gate/up inputs smoothed; o, down not (official)`,
        ],
      });
    });
  },
  async quantize(model, q, params, ctx) {
    return quantizeTransformed(
      await smoothquant.transform!(model, q, params, ctx),
      rtn,
      q,
      {},
      ctx,
    );
  },
};

/** The matrices of a list that exist (ungated MLPs have no gate). */
function present(ms: readonly (Matrix | undefined)[]): Matrix[] {
  return ms.filter((m): m is Matrix => m !== undefined);
}
