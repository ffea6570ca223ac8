/**
 * GPTQ (Frantar et al., 2023), the compensation-class method: each linear layer is quantized one
 * column at a time, and every column's rounding error is spread over the columns not yet
 * quantized, weighted by the inverse Hessian of the layer's reconstruction loss
 * (arXiv 2210.17323; IST-DASLab/gptq `gptq.py`, `llama.py`).
 *
 * Pipeline: the shared sequential calibration pipeline (`methods/calibration/sequential.ts`) runs the
 * calibration windows block by block through the already quantized model, stage by stage with
 * `trueSequential`, and hands every linear its Gram matrix; here `H = 2/N · Σ x xᵀ` (N = number
 * of calibration sequences, the reference's running average) goes to the layer algorithm in
 * `gptq_core.ts`.
 *
 * Deviations from the reference, recorded in every row's notes:
 * - the symmetric grid is the core quantizer's absmax convention (shared with RTN), not GPTQ's
 *   `sym=True` grid (see `gptq_core.ts`);
 * - a Hessian that is not positive definite after damping is retried with ×10 damping (up to
 *   `maxDampRetries` times) instead of failing; every retry is noted;
 * - arithmetic is float64 (the reference runs float32);
 * - calibration windows start with BOS (see `methods/calibration/set.ts`);
 * - `trueSequential` defaults to on (the reference's LLaMA recommendation, off in its CLI).
 *
 * Weight-activation cells (A < 16): GPTQ calibrates the weights on float inputs and the cell's
 * activation quantizer is attached afterwards (`methods/activations.ts`), as the GPTQ baselines of
 * weight-activation papers are run (GPTQ weights, round-to-nearest activations); GPTQ itself
 * quantizes only weights.
 *
 * @module
 */

import { noteMaterialized } from "../models/residency.ts";
import { UnsupportedConfigError } from "../core/errors.ts";
import { quantizeSequential } from "./calibration/sequential.ts";
import { GPTQ_DEFAULTS, gptqQuantizeLayer } from "./gptq_core.ts";
import {
  type Method,
  type MethodContext,
  type QuantConfig,
  type QuantizedModel,
  summarizeDiagnostics,
} from "./types.ts";
import { requireCalibration } from "./support.ts";

/** The GPTQ method. */
export const gptq: Method = {
  id: "gptq",
  title: "GPTQ",
  taxonomy: "compensation",
  scope: "weight-only",
  version: 1,
  wBits: [2, 3, 4, 5, 6, 7, 8],
  aBits: [2, 3, 4, 5, 6, 7, 8, 16],
  relativeCost: 3.5,
  needsCalibration: true,
  granularities: ["channel", "group"],
  reference: "IST-DASLab/gptq (gptq.py GPTQ.fasterquant, llama.py llama_sequential)",
  params: {
    percdamp: {
      type: "number",
      default: GPTQ_DEFAULTS.percdamp,
      min: 0,
      doc: "Damping λ = percdamp · mean(diag H) added to the Hessian's diagonal",
    },
    blockSize: {
      type: "number",
      default: GPTQ_DEFAULTS.blockSize,
      min: 1,
      integer: true,
      doc: "Columns per lazy batch",
    },
    actOrder: {
      type: "boolean",
      default: GPTQ_DEFAULTS.actOrder,
      doc: "Quantize columns in order of descending diag(H) (the reference's --act-order)",
    },
    groupParams: {
      type: "string",
      default: GPTQ_DEFAULTS.groupParams,
      choices: ["reference", "updated", "static"],
      doc: "Group scales from the outer matrix as the reference reads it (reference), from the " +
        "fully updated columns (updated), or from the original weights up front (static)",
    },
    mse: {
      type: "boolean",
      default: GPTQ_DEFAULTS.mse,
      doc: "MSE grid search for the clipping range (grid 100, max shrink 0.8, norm 2.4)",
    },
    trueSequential: {
      type: "boolean",
      default: true,
      doc: "Quantize blocks in stages {q,k,v} → {o} → {gate,up} → {down}, re-collecting inputs",
    },
    maxDampRetries: {
      type: "number",
      default: GPTQ_DEFAULTS.maxDampRetries,
      min: 0,
      integer: true,
      doc: "Retries with ×10 damping when H + λI is not positive definite",
    },
  },
  // A promise whose executor runs the (synchronous) work, so a throw becomes a rejection.
  quantize: (model, q, params, ctx) =>
    new Promise((resolve) => resolve(quantizeGptq(model, q, params, ctx))),
};

function quantizeGptq(
  model: Parameters<Method["quantize"]>[0],
  q: QuantConfig,
  params: Readonly<Record<string, number | boolean | string>>,
  ctx: MethodContext,
): QuantizedModel {
  if (q.granularity === "tensor") {
    throw new UnsupportedConfigError(
      "gptq quantizes per output channel or per group, not per tensor",
    );
  }
  const calib = requireCalibration(ctx, "gptq");
  const notes: string[] = [
    "windows start with BOS; float64 arithmetic; ×10 damping retries",
  ];
  if (q.symmetric) notes.push("symmetric grid: core absmax convention, not GPTQ sym=True");
  const options = {
    bits: q.wBits,
    ...(q.granularity === "group" ? { groupSize: q.groupSize! } : {}),
    symmetric: q.symmetric,
    percdamp: params.percdamp as number,
    blockSize: params.blockSize as number,
    actOrder: params.actOrder as boolean,
    groupParams: params.groupParams as "reference" | "updated" | "static",
    mse: params.mse as boolean,
    maxDampRetries: params.maxDampRetries as number,
  };
  const result = quantizeSequential(model, calib, (inp) => {
    const n = inp.matrix.cols;
    // H = 2/N · Σ x xᵀ, scaled where GPTQ reads it (no n × n copy).
    const r = gptqQuantizeLayer(inp.matrix.data, inp.matrix.rows, n, inp.gram, {
      ...options,
      hessianScale: 2 / inp.sequences,
      ...(ctx.kernels.f64 ? { f64: ctx.kernels.f64 } : {}),
    });
    // GPTQ's working arrays (W, H's inverse factor: n² float64, 1 GB for Llama-2-7B's down) live
    // in the backend's memory (a WASM memory keeps its size once grown, and later layers and
    // panels reuse it) or, on the reference, in JavaScript arrays that are garbage now: let a
    // collection run before the next linear allocates its own.
    noteMaterialized(n * n * 8);
    if (r.dampRetries > 0) {
      notes.push(`${inp.site.name}: H + λI needed percdamp ${r.percdampUsed}`);
    }
    return {
      matrix: { rows: inp.matrix.rows, cols: n, data: r.dequantized },
      packed: r.groupIndex ? { ...r.packed, groupIndex: r.groupIndex } : r.packed,
      stats: { loss: r.loss, dampRetries: r.dampRetries, deadColumns: r.deadColumns },
    };
  }, {
    trueSequential: params.trueSequential as boolean,
    kernels: ctx.kernels,
    ...(ctx.onProgress ? { onProgress: ctx.onProgress } : {}),
  });
  return {
    config: model.config,
    weights: result.weights,
    packed: result.packed,
    notes,
    diagnostics: summarizeDiagnostics(result.diagnostics),
  };
}
