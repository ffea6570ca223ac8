/**
 * CrossQuant (arXiv 2410.07505; no public code): an activation quantizer that scales each element
 * by its token's and its channel's absolute maxima, `Δ_ij = t_i^α · c_j^(1−α) / (2^(b−1) − 1)`,
 * so that far fewer activations fall in the quantization kernel (round to zero) than with
 * per-token quantization (α = 1). Weights are quantized by RTN with the cell's quantizer
 * (per-channel in the paper's W8A8 / W4A8 settings).
 *
 * Two variants, recorded in the row as the `variant` parameter:
 * - `dynamic` (default): `c` is taken over the tokens of the current call (the evaluation
 *   window; in decoding, the one token — then `Δ_ij = t_i^α |x_ij|^(1−α)/qmax`). Nothing is folded.
 * - `static`: `c` is each input channel's absolute maximum over the calibration windows
 *   (full-precision model) and `c^(1−α)` is folded into the weights' columns, with the inverse in
 *   the preceding RMSNorm (q/k/v and gate/up inputs) or in up's rows (down input); the o input has
 *   no foldable producer under grouped-query attention and keeps its `c` in the quantizer. Folding
 *   is exact in full precision; the weight quantizer then sees the folded weights.
 *
 * No public code exists; choices the abstract does not settle, documented here and in rows:
 * α sits on the token factor (α = 1 is per-token); α defaults to 0.5 (the paper reports
 * model-dependent values; sweep it with the `wa-alpha` preset); `clip` scales `t_i`; maxima below
 * 1e-5 are floored to 1e-5; the attention products (`bmm`) use per-token quantization.
 *
 * @module
 */

import { UnsupportedConfigError } from "../core/errors.ts";
import type { ActivationQuantization, SiteQuant } from "../core/act_quantizer.ts";
import { DEFAULT_ACT_OPTIONS } from "../core/act_quantizer.ts";
import { collectActivationStats } from "./calibration/act_stats.ts";
import { quantizeTransformed } from "./chain.ts";
import { rtn } from "./rtn.ts";
import { foldSmoothing, type LayerSmoothing } from "./smoothing.ts";
import type { Method, TransformedModel } from "./types.ts";
import { requireCalibration } from "./support.ts";

/** The CrossQuant method. */
export const crossquant: Method = {
  id: "crossquant",
  title: "CrossQuant",
  taxonomy: "salience",
  scope: "weight-activation",
  version: 1,
  wBits: [2, 3, 4, 5, 6, 7, 8],
  aBits: [2, 3, 4, 5, 6, 7, 8],
  relativeCost: 1.2,
  needsCalibration: true,
  models: "dense",
  reference: "arXiv 2410.07505 (no public code; see the module documentation)",
  params: {
    alpha: {
      type: "number",
      default: 0.5,
      min: 0,
      max: 1,
      doc: "Exponent of the token maximum (1 − α on the channel maximum); 1 = per-token",
    },
    variant: {
      type: "string",
      default: "dynamic",
      choices: ["dynamic", "static"],
      doc: "Channel maxima from the current call (dynamic) or from calibration, folded (static)",
    },
  },
  transform(model, q, params, ctx) {
    return new Promise<TransformedModel>((resolve) => {
      if (model.config.moe) {
        throw new UnsupportedConfigError(
          "crossquant on MoE blocks is not implemented (experts' channel maxima are per expert)",
        );
      }
      const options = q.act ?? DEFAULT_ACT_OPTIONS;
      if (q.aBits >= 16) {
        throw new UnsupportedConfigError("crossquant is an activation quantizer: give A bits < 16");
      }
      if (!options.symmetric || options.granularity !== "token" || options.static) {
        throw new UnsupportedConfigError(
          "crossquant's steps are symmetric and per element: per-tensor, static-range and " +
            "asymmetric activation settings do not apply (use the variant parameter)",
        );
      }
      const alpha = params.alpha as number;
      const base: ActivationQuantization = { bits: q.aBits, kernel: "crossquant", alpha, options };
      if (params.variant === "dynamic") {
        resolve({
          config: model.config,
          weights: { ...model.weights, activations: base },
          notes: [`crossquant α=${alpha}, dynamic channel maxima (per call)`],
        });
        return;
      }
      const calib = requireCalibration(ctx, "crossquant static");
      const stats = collectActivationStats(model, calib.windows, ctx.kernels);
      const pow = (c: Float32Array) => c.map((v) => Math.pow(Math.max(v, 1e-5), 1 - alpha));
      const folds: LayerSmoothing[] = [];
      const sites: Record<string, SiteQuant>[] = [];
      for (const layer of stats) {
        const f = {
          qkv: pow(layer.qkv.absMax),
          gateup: pow(layer.gateup.absMax),
          down: pow(layer.down.absMax),
        };
        folds.push(f);
        sites.push({
          qkv: { channelMax: layer.qkv.absMax, folded: f.qkv },
          o: { channelMax: layer.o.absMax },
          gateup: { channelMax: layer.gateup.absMax, folded: f.gateup },
          down: { channelMax: layer.down.absMax, folded: f.down },
        });
      }
      resolve({
        config: model.config,
        weights: {
          ...foldSmoothing(model.weights, folds, model.config),
          activations: { ...base, layers: sites },
        },
        notes: [
          `crossquant α=${alpha}, static channel maxima from calibration; c^(1−α) folded into ` +
          "q/k/v, gate/up and down columns (o: kept in the quantizer)",
        ],
      });
    });
  },
  async quantize(model, q, params, ctx) {
    return quantizeTransformed(await crossquant.transform!(model, q, params, ctx), rtn, q, {}, ctx);
  },
};
