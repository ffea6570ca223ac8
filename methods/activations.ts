/**
 * The activation stage of weight-activation cells: after a method has quantized the weights, the
 * cell's activation quantizer is attached to the model (`weights.activations`), static ranges are
 * calibrated, and the quantization-kernel share is measured.
 *
 * - A method that defines its own activation quantizer (CrossQuant) has set
 *   `weights.activations`; its bits and options are kept. Otherwise the cell's quantizer is the
 *   uniform one of `QuantConfig.act` (default: per-token dynamic symmetric).
 * - Static per-tensor ranges (SmoothQuant O3): `[min, max]` of each site's inputs over the
 *   calibration windows, times the clipping ratio, collected on the weight-quantized model with
 *   float activations in one pass (SmoothQuant calibrates its static scales on the smoothed model).
 * - Quantization kernel: the fraction of activation elements that quantize to zero, per site and
 *   over all sites, on the first {@linkcode ZERO_FRACTION_WINDOWS} calibration windows (the
 *   calibration half of the corpus, not the evaluation data), with its standard error over windows.
 *
 * @module
 */

import {
  ACT_SITES,
  type ActivationQuantization,
  DEFAULT_ACT_OPTIONS,
  type SiteQuant,
  validateActQuant,
  ZeroCounter,
} from "../core/act_quantizer.ts";
import { UnsupportedConfigError } from "../core/errors.ts";
import { RunningStats } from "../core/stats.ts";
import { collectActivationStats } from "./calibration/act_stats.ts";
import { forward } from "../runners/forward.ts";
import type { MethodContext, QuantConfig, QuantizedModel } from "./types.ts";

/** Calibration windows the quantization-kernel share is measured on. */
export const ZERO_FRACTION_WINDOWS = 32;

/**
 * Attaches the activation quantizer of `q` to a weight-quantized model (no-op for `aBits` ≥ 16)
 * and measures its quantization kernel when calibration windows are available.
 */
export function applyActivationQuant(
  qm: QuantizedModel,
  q: QuantConfig,
  ctx: Pick<MethodContext, "kernels" | "calibration">,
): QuantizedModel {
  if (q.aBits >= 16) {
    if (qm.weights.activations) {
      throw new TypeError("A weight-only configuration got a model with an activation quantizer");
    }
    return qm;
  }
  const options = qm.weights.activations?.options ?? q.act ?? DEFAULT_ACT_OPTIONS;
  validateActQuant(q.aBits, options);
  let aq: ActivationQuantization = qm.weights.activations ??
    { bits: q.aBits, kernel: "uniform", options };
  if (qm.routerAbits !== undefined) aq = { ...aq, routerBits: qm.routerAbits };
  const moe = qm.weights.layers.some((l) => l.mlp.kind !== "dense");
  if (moe && (aq.kernel !== "uniform" || options.granularity !== "token")) {
    throw new UnsupportedConfigError(
      "MoE blocks support per-token dynamic activation quantization only (experts see one token " +
        "at a time)",
    );
  }
  const windows = ctx.calibration?.windows;
  if (aq.kernel === "uniform" && options.static) {
    if (!windows) {
      throw new TypeError(
        "Static activation ranges need a calibration set (MethodContext.calibration)",
      );
    }
    const stats = collectActivationStats(
      { config: qm.config, weights: { ...qm.weights, activations: undefined } },
      windows,
      ctx.kernels,
    );
    const layers = stats.map((layer) => {
      const out: Record<string, SiteQuant> = {};
      for (const site of ACT_SITES) {
        const s = layer[site];
        let lo = 0, hi = 0;
        for (let j = 0; j < s.min.length; j++) {
          lo = Math.min(lo, s.min[j]!);
          hi = Math.max(hi, s.max[j]!);
        }
        out[site] = { range: { lo: lo * options.clip, hi: hi * options.clip } };
      }
      return out;
    });
    aq = { ...aq, layers };
  }
  const model = { config: qm.config, weights: { ...qm.weights, activations: aq } };
  const notes = [...qm.notes];
  if (options.granularity === "tensor" && !options.static) {
    notes.push(
      "per-tensor dynamic activations: one step per evaluation window (per token when decoding)",
    );
  }
  let activationZeros: QuantizedModel["activationZeros"];
  if (windows) {
    const use = windows.slice(0, ZERO_FRACTION_WINDOWS);
    const total = new ZeroCounter();
    const perWindow = new RunningStats();
    for (const w of use) {
      const counter = new ZeroCounter();
      forward(model, w, { kernels: ctx.kernels, zeroCounter: counter, logits: "last" });
      perWindow.push(counter.fraction());
      for (const site of Object.keys(counter.total)) {
        total.add(site, counter.zeros[site]!, counter.total[site]!);
      }
    }
    const bySite: Record<string, number> = {};
    for (const site of Object.keys(total.total)) bySite[site] = total.fraction(site);
    activationZeros = {
      fraction: perWindow.mean,
      stderr: use.length > 1 ? perWindow.stderr : null,
      windows: use.length,
      bySite,
      source: `first ${use.length} calibration windows`,
    };
  }
  return {
    ...qm,
    weights: model.weights,
    notes,
    ...(activationZeros ? { activationZeros } : {}),
  };
}
