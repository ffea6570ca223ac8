/**
 * AWQ, activation-aware weight quantization (Lin et al., MLSys 2024, arXiv 2306.00978), the
 * salience class: weights of input channels with large activations matter more, so each group of
 * linears sharing an input is scaled by a per-channel `s` searched on calibration data (folded into
 * the preceding norm or linear, so the full-precision function is unchanged), weights are clipped
 * per group where it lowers the output error, and everything is rounded to nearest.
 *
 * Follows mit-han-lab/llm-awq (`awq/quantize/pre_quant.py`, `auto_scale.py`, `auto_clip.py`,
 * `quantizer.py`, `awq/utils/calib_data.py`) and casper-hansen/AutoAWQ (`awq/quantize/
 * quantizer.py`, `scale.py`, `awq/models/*.py`), read for this port:
 * - the quantizer: per group, min-max **without zero forced into the range**
 *   (`awq_quantizer.ts`; rows record `rangeIncludesZero: false`);
 * - the block loop, groups and losses (`awq_pipeline.ts`): q/k/v from the attention norm with
 *   the whole attention as loss, v→o (skipped unless v's weight has o's shape, i.e. under
 *   grouped-query attention), gate/up from the MLP norm with the whole MLP as loss (OPT: fc1
 *   alone), up→down; all searched on the full-precision block and its captured inputs, the next
 *   block fed by the full-precision output (`propagate: "fp"`; `"quantized"` feeds the quantized
 *   block's instead);
 * - the scale search (`awq_search.ts`): grid of 20 ratios r ∈ [0, 1), `s = x̄^r` (llm-awq) or
 *   AutoAWQ's `duo_scaling` `s = x̄^r / (w̄^(1−r) + 1e-4)`, normalised by `sqrt(max · min)`,
 *   strict argmin of the mean squared output error;
 * - the clip search (`awq_clip.ts`): every linear but q and k, 512–1023 subsampled tokens,
 *   shrinks `1 − i/20` for i < 10, per-group partial dot-product error;
 * - then round-to-nearest of every linear with AWQ's quantizer.
 *
 * Defaults. The scale rule defaults to llm-awq's `x̄^r` (`duoScaling: false`): it is the paper's
 * method and its official entry, its grid contains r = 0, which is round-to-nearest exactly, so
 * the searched loss is never worse than RTN's (the test oracle), and its published numbers (the
 * paper's tables) are the ones this suite compares against; AutoAWQ's default `duo_scaling`
 * (the rule behind most AWQ checkpoints on the Hub) is one parameter away. Group size is the
 * cell's (`QuantConfig`); the official entry is W4 g128 (`bench/presets/awq.json`); per channel
 * (`q_group_size = −1`) works too. Calibration defaults to AWQ's `pileval-awq` recipe (128
 * documents, 512-token blocks, seed 42) over the suite's calibration corpus (`Method.calibration`);
 * pile-val itself is not available offline.
 *
 * Deviations, recorded in every row's notes:
 * - arithmetic is float32 (the references run the model in fp16): statistics, scales, trial
 *   weights and the quantizer in float32, forward passes on the kernels (float32 results), loss
 *   sums in float64;
 * - a group size that does not divide a linear's inputs gives that linear a shorter last group
 *   (the references assert); the rows name the linears;
 * - Gemma 2's (1 + w) norms are folded as `(1 + w)/s` (we store 1 + w); AutoAWQ's `scale_ln_fcs`
 *   as read divides w;
 * - Phi-3 (unfused here): q and k rows are never clipped, where AutoAWQ clips its fused
 *   `qkv_proj` (whose name matches none of its skip patterns); v→o follows the shape test, where
 *   AutoAWQ's Phi-3 config applies it unconditionally;
 * - Mixture-of-Experts blocks, online rotations and ungated non-ReLU MLPs are refused
 *   (`UnsupportedConfigError`).
 *
 * The chain `awq+gptq` (AWQ's scaling and clipping, then GPTQ on the transformed weights) is
 * ours: neither reference repository has it.
 *
 * @module
 */

import { UnsupportedConfigError } from "../core/errors.ts";
import { PILEVAL_AWQ } from "./calibration/pileval_awq.ts";
import { CLIP_DEFAULTS } from "./awq_clip.ts";
import { type AwqGroupRecord, type AwqOptions, runAwq } from "./awq_pipeline.ts";
import { awqSpec } from "./awq_quantizer.ts";
import {
  type Method,
  type MethodContext,
  type QuantConfig,
  summarizeDiagnostics,
} from "./types.ts";
import { requireCalibration } from "./support.ts";

type Params = Readonly<Record<string, number | boolean | string>>;

/** The AWQ method. */
export const awq: Method = {
  id: "awq",
  title: "AWQ",
  taxonomy: "salience",
  scope: "weight-only",
  version: 1,
  wBits: [2, 3, 4, 5, 6, 7, 8],
  aBits: [16],
  relativeCost: 5,
  needsCalibration: true,
  granularities: ["group", "channel"],
  models: "dense",
  calibration: { recipe: PILEVAL_AWQ, seqLen: 512, seed: 42 },
  rangeIncludesZero: () => false,
  reference: "mit-han-lab/llm-awq (pre_quant.py run_awq, auto_scale.py, auto_clip.py, " +
    "quantizer.py); casper-hansen/AutoAWQ (quantizer.py AwqQuantizer, duo_scaling)",
  params: {
    duoScaling: {
      type: "boolean",
      default: false,
      doc: "AutoAWQ's duo_scaling s = x̄^r / (w̄^(1−r) + 1e-4) instead of llm-awq's s = x̄^r",
    },
    grid: {
      type: "number",
      default: 20,
      min: 1,
      integer: true,
      doc: "Ratios r = i/grid, i < grid, of the scale search",
    },
    autoScale: {
      type: "boolean",
      default: true,
      doc: "Search and fold the per-channel scales (llm-awq auto_scale)",
    },
    clip: {
      type: "boolean",
      default: true,
      doc: "Search and apply per-group weight clipping (llm-awq mse_range, AutoAWQ apply_clip)",
    },
    clipGrid: {
      type: "number",
      default: CLIP_DEFAULTS.grid,
      min: 1,
      integer: true,
      doc: "Clip search grid: shrinks 1 − i/clipGrid",
    },
    maxShrink: {
      type: "number",
      default: CLIP_DEFAULTS.maxShrink,
      min: 0,
      max: 1,
      doc: "Largest clip shrink: i < maxShrink · clipGrid",
    },
    clipTokens: {
      type: "number",
      default: CLIP_DEFAULTS.tokens,
      min: 1,
      integer: true,
      doc: "Tokens the clip search keeps: every max(1, ⌊n / clipTokens⌋)-th",
    },
    propagate: {
      type: "string",
      default: "fp",
      choices: ["fp", "quantized"],
      doc: "Next block's calibration input: the full-precision block's output (the references) " +
        "or the quantized block's",
    },
  },
  transform: (model, q, params, ctx) =>
    new Promise((resolve) => {
      const r = run(model, q, params, ctx, false);
      resolve({ config: model.config, weights: r.weights, notes: r.notes });
    }),
  quantize: (model, q, params, ctx) =>
    new Promise((resolve) => {
      const r = run(model, q, params, ctx, true);
      resolve({
        config: model.config,
        weights: r.weights,
        packed: r.packed,
        notes: r.notes,
        diagnostics: summarizeDiagnostics(r.diagnostics),
      });
    }),
};

function run(
  model: Parameters<Method["quantize"]>[0],
  q: QuantConfig,
  params: Params,
  ctx: MethodContext,
  quantize: boolean,
) {
  if (q.aBits < 16) {
    throw new UnsupportedConfigError(
      "awq is weight-only: activation quantization is not part of it",
    );
  }
  const spec = awqSpec(q);
  const calib = requireCalibration(ctx, "awq");
  const opts: AwqOptions = {
    spec,
    rule: { duoScaling: params.duoScaling as boolean, grid: params.grid as number },
    scale: params.autoScale as boolean,
    ...(params.clip
      ? {
        clip: {
          grid: params.clipGrid as number,
          maxShrink: params.maxShrink as number,
          tokens: params.clipTokens as number,
        },
      }
      : {}),
    propagate: params.propagate as "fp" | "quantized",
    quantize,
    kernels: ctx.kernels,
    ...(ctx.onProgress ? { onProgress: ctx.onProgress } : {}),
  };
  const r = runAwq(model, calib.windows, opts);
  const recipe = calib.spec.recipe ?? "windows";
  const notes = [
    `awq ${params.duoScaling ? "AutoAWQ duo_scaling s = x̄^r/(w̄^(1−r)+1e-4)" : "llm-awq s = x̄^r"}` +
    `, grid ${params.grid}${params.autoScale ? "" : " (scaling off)"}; clip ${
      params.clip ? `${params.clipGrid} × ${params.maxShrink}, ${params.clipTokens} tokens` : "off"
    }; next block from the ${params.propagate === "fp" ? "full-precision" : "quantized"} block`,
    "float32 arithmetic (the references run the model in fp16)",
    `calibration recipe ${recipe}: ${calib.windows.length} sequences of ${calib.spec.seqLen} tokens`,
    ...r.notes,
    ...(r.groups.length ? [ratioNote(r.groups)] : []),
    ...(quantize ? [] : ["awq transform: scaled and clipped, not rounded"]),
  ];
  return { ...r, notes };
}

/** `chosen r per block: qkv 0.45 0.5 …; down …` (— where a group did not run). */
function ratioNote(groups: readonly AwqGroupRecord[]): string {
  const layers = Math.max(...groups.map((g) => g.layer)) + 1;
  const parts = (["qkv", "o", "gateup", "down"] as const).map((id) => {
    const rs = Array.from({ length: layers }, (_, l) => {
      const g = groups.find((x) => x.layer === l && x.group === id);
      return g ? String(g.ratio) : "—";
    });
    return `${id} ${rs.join(" ")}`;
  });
  return `chosen r per block: ${parts.join("; ")}`;
}
