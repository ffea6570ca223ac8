/**
 * QuaRot (Ashkboos et al., 2024, arXiv 2404.00456; spcl/QuaRot `fake_quant/` @5008669),
 * the rotation class: the model is rotated into a function-preserving basis where activations
 * have no outlier channels, then weights and activations are quantized.
 *
 * 1. Norm fusion (`norm_fusion.ts`, QuaRot's `fuse_layer_norms`): every RMSNorm γ is folded into
 *    the linears reading the norm (q/k/v, gate/up, lm_head, whose tie to the embedding is cut),
 *    norms become weightless with the model's ε; `centerEmbeddings` optionally centres the
 *    embedding rows.
 * 2. Residual rotation Q (`rotation.ts`, `rotate_model`): `rotateMode` "hadamard" (Q = diag(ε)·M_dᵀ)
 *    or "random" (QR of a Gaussian matrix), from `seed`; E ← E·Q, readers W ← W·Q, writers (o,
 *    down) W ← Qᵀ·W with their biases.
 * 3. Extra transforms with online halves (`hadamard_fusion.ts`): a Hadamard before down (fused
 *    into down's columns), and before o a Hadamard across heads with the head-wise Hadamard fused
 *    into v's rows and the full one into o's columns; a seeded dense orthogonal matrix where no
 *    exact Hadamard exists (our extension; each site's `onlineRotation` is in the notes).
 * 4. Weights: RTN here (QuaRot's `--w_rtn`, with `wClip` its `--w_clip` MSE range search), or GPTQ
 *    with the chain `quarot+gptq` (QuaRot's default and the paper's main setting; GPTQ calibrates
 *    on the rotated model with the online transforms applied and float activations, as QuaRot's
 *    `gptq_fwrd` runs before the activation quantizers are configured). Embeddings and lm_head
 *    stay in full precision. QuaRot's setting is per-channel symmetric (`w_groupsize` −1,
 *    `w_asym` False): the cell's `symmetric` flag with channel granularity. Our symmetric grid,
 *    `scale = max|w| / (2^(b−1) − 1)` with codes clamped to [−2^(b−1), 2^(b−1) − 1], is QuaRot's
 *    `WeightQuantizer` sym grid (not IST-DASLab GPTQ's `sym=True` grid, which the gptq method's
 *    note refers to); only the floor differs (an all-zero row: scale 1 here, 1e-5/maxq there).
 * 5. Activations: the cell's activation quantizer (A < 16), per token, symmetric by default, on
 *    the input of every linear but lm_head, after the online transforms. The clipping ratio is the
 *    cell's `act.clip` (QuaRot's `--a_clip_ratio`: code default 1.0, the paper's runs 0.9; the
 *    `quarot` preset uses 0.9 and the row label shows `-clip0.9`). Only per-token dynamic
 *    activations exist in QuaRot: per-tensor and static settings are refused.
 *
 * Not supported (refused as unsupported configurations): QuaRot's 4-bit KV cache (k/v quantized
 * after RoPE with a head-wise Hadamard on q and k): our forward has no KV quantizer, and the
 * suite's `bmm` activation option (q/k/v quantized before RoPE) is not QuaRot's scheme, so it is
 * refused; `int8_down_proj`; activation groups (`a_groupsize`). Architectures: LayerNorm (OPT),
 * Gemma 2's sandwich norms, Mixture-of-Experts blocks and `clip_qkv` (a clamp of v's outputs does
 * not commute with the head-wise Hadamard).
 *
 * Deviations from spcl/QuaRot, also in every row's notes:
 * - random draws (ε, Gaussian matrices) come from our seeded generator, not torch's; the seed and
 *   the Hadamard table ids are recorded;
 * - `centerEmbeddings` defaults to false (QuaRot always centres, which changes an RMSNorm model);
 * - the model's norm ε is kept (QuaRot's `RMSN` uses 1e-5);
 * - every fusion is float64 rounded once to float32, also the extra Hadamards QuaRot fuses in
 *   float32, and weights stay float32 (QuaRot casts back to the fp16 checkpoint dtype);
 * - the online transforms compute in float64 and round once to float32 (QuaRot: in fp16, or in
 *   fp32 with `--fp32_had`);
 * - the cross-head online transform is the full M_heads ⊗ I, and sites without an exact Hadamard
 *   get a dense orthogonal matrix (QuaRot asserts, or for 20 heads computes a non-identity);
 * - a v_proj bias is transformed with v's rows (QuaRot's Llama path has none);
 * - activation codes: our symmetric activation quantizer clamps codes to ±(2^(b−1) − 1), QuaRot's
 *   to [−2^(b−1), 2^(b−1) − 1]; they differ only for values clipped below −clip·max|x| (clip < 1);
 *   an all-zero token gets step 1e-5/qmax here, 1 there (both quantize it to 0);
 * - RTN with groups is allowed (QuaRot's `rtn_fwrd` asserts per-channel);
 * - calibration for `quarot+gptq` is the suite's calibration set (BOS-first windows), not
 *   WikiText-2 train 128 × 2048.
 *
 * @module
 */

import { UnsupportedConfigError } from "../core/errors.ts";
import { unsupportedFeatures } from "../models/arch.ts";
import type { LlamaConfig, LlamaWeights } from "../models/types.ts";
import { groupParamsMse } from "./gptq_core.ts";
import { fuseOnlineRotations } from "./hadamard_fusion.ts";
import { fuseNorms } from "./norm_fusion.ts";
import {
  type ResidualRotation,
  residualRotation,
  type RotateMode,
  rotateResidual,
} from "./rotation.ts";
import { quantizeLinears } from "./rtn.ts";
import type { Method, QuantConfig, TransformedModel } from "./types.ts";

/** Architecture features the rotation keeps exact (every other one is refused). */
export const QUAROT_FEATURES = [
  "qkvBias",
  "oBias",
  "mlpBias",
  "qkNormProjection",
  "qkNormHead",
  "embedScale",
  "learnedPositions",
  "interleavedRope",
  "partialRotary",
  "ropeScaling",
  "queryScale",
  "attnScale",
  "attnSoftcap",
  "slidingWindow",
  "ungatedMlp",
  "geluTanh",
  "relu",
  "finalSoftcap",
] as const;

/** Parameters of {@linkcode quarotTransform}. */
export interface QuarotParams {
  readonly rotateMode: RotateMode;
  readonly seed: number;
  readonly centerEmbeddings: boolean;
  /** A given residual rotation instead of the one drawn from `rotateMode` and `seed` (tests). */
  readonly rotation?: ResidualRotation;
}

/**
 * Why `quarot` cannot run configuration `q` on a model of config `c`, or undefined when it can:
 * unsupported architecture features, MoE, activation settings other than per-token dynamic, the
 * `bmm` (q/k/v output) quantizer, per-tensor weights.
 */
export function quarotUnsupported(c: LlamaConfig, q: QuantConfig): string | undefined {
  const arch = unsupportedFeatures("quarot", c, QUAROT_FEATURES);
  if (arch) {
    return `${arch}: LayerNorm biases, sandwich norms and MoE experts cannot be rotated ` +
      `exactly, and a clamp of v does not commute with its Hadamard`;
  }
  if (q.granularity === "tensor") {
    return "quarot quantizes weights per output channel (or per group), not per tensor";
  }
  const act = q.act;
  if (q.aBits < 16 && act) {
    if (act.bmm) {
      return "quarot's KV-cache quantization (k after RoPE with a head-wise Hadamard, v after " +
        "v_proj) is not implemented, and the bmm option (q/k/v before RoPE) is not its scheme";
    }
    if (act.granularity !== "token" || act.static) {
      return "quarot quantizes activations per token and dynamically only";
    }
  }
  return undefined;
}

/**
 * Steps 1–3 of the module documentation: the rotated full-precision model with its online
 * transforms (it computes the input model's function unless `centerEmbeddings`), and the notes
 * that record what was done.
 */
export function quarotTransform(
  config: LlamaConfig,
  weights: LlamaWeights,
  p: QuarotParams,
): TransformedModel {
  const tied = weights.lmHead === weights.embed || config.tiedEmbeddings;
  const fused = fuseNorms(config, weights, { centerEmbeddings: p.centerEmbeddings });
  const rot = p.rotation ?? residualRotation(config.dim, p.rotateMode, p.seed);
  const rotated = rotateResidual(fused.weights, rot);
  const online = fuseOnlineRotations(fused.config, rotated, p.seed);
  const notes = [
    `quarot: norms fused (ε ${config.normEps} kept)${tied ? ", lm_head untied" : ""}; ` +
    `centerEmbeddings=${p.centerEmbeddings}`,
    `quarot: rotateMode=${rot.mode}${
      rot.requested !== rot.mode ? ` (hadamard asked: no Hadamard of order ${config.dim})` : ""
    } seed=${p.seed} Q = ${rot.id}; random draws from our generator, not torch's`,
    `quarot: onlineRotation.o=${online.o.onlineRotation}: ${online.o.id}${
      online.o.reason ? ` (fallback: ${online.o.reason})` : ""
    }`,
    `quarot: onlineRotation.down=${online.down.onlineRotation}: ${online.down.id}${
      online.down.reason ? ` (fallback: ${online.down.reason})` : ""
    }`,
    "quarot: fusions in float64, weights kept in float32; embeddings and lm_head not quantized",
  ];
  return { config: fused.config, weights: online.weights, notes };
}

function params(p: Readonly<Record<string, number | boolean | string>>): QuarotParams {
  return {
    rotateMode: p.rotateMode as RotateMode,
    seed: p.seed as number,
    centerEmbeddings: p.centerEmbeddings as boolean,
  };
}

function check(model: { config: LlamaConfig; weights: LlamaWeights }, q: QuantConfig): void {
  const why = quarotUnsupported(model.config, q);
  if (why) throw new UnsupportedConfigError(why);
  if (model.weights.online) {
    throw new UnsupportedConfigError("quarot: the model already carries online rotations");
  }
}

/** Notes about the weight and activation quantizers of a cell. */
function quantNotes(q: QuantConfig): string[] {
  const notes = [
    q.symmetric
      ? "quarot weights symmetric: max|w|/(2^(b−1)−1), QuaRot's WeightQuantizer sym grid"
      : "quarot weights asymmetric (QuaRot's --w_asym)",
  ];
  if (q.aBits < 16) {
    notes.push(
      `quarot activations A${q.aBits} per token, clip ratio ${q.act?.clip ?? 1}; symmetric ` +
        "codes clamped to ±(2^(b−1)−1), QuaRot's to [−2^(b−1), 2^(b−1)−1]",
    );
  }
  return notes;
}

/** The QuaRot method: rotation, then RTN weights (`quarot+gptq` for GPTQ weights). */
export const quarot: Method = {
  id: "quarot",
  title: "QuaRot",
  taxonomy: "rotation",
  scope: "weight-activation",
  version: 1,
  wBits: [2, 3, 4, 5, 6, 7, 8],
  aBits: [2, 3, 4, 5, 6, 7, 8, 16],
  relativeCost: 1.5,
  needsCalibration: false,
  granularities: ["channel", "group"],
  models: "dense",
  reference: "spcl/QuaRot fake_quant (rotation_utils.py fuse_layer_norms, rotate_model; " +
    "hadamard_utils.py; main.py online Hadamards; gptq_utils.py rtn_fwrd)",
  params: {
    rotateMode: {
      type: "string",
      default: "hadamard",
      choices: ["hadamard", "random"],
      doc: "Residual rotation Q: random Hadamard diag(ε)·M_dᵀ or random orthogonal (QR)",
    },
    seed: {
      type: "number",
      default: 0,
      min: 0,
      max: 2 ** 31 - 1,
      integer: true,
      doc: "Seed of Q and of the dense fallback rotations (our generator, not torch's)",
    },
    centerEmbeddings: {
      type: "boolean",
      default: false,
      doc: "Subtract each embedding row's mean, as QuaRot always does (changes an RMSNorm model)",
    },
    wClip: {
      type: "boolean",
      default: false,
      doc: "RTN weights only: GPTQ's MSE range search per row (QuaRot's --w_clip); in the " +
        "quarot+gptq chain use gptq.mse",
    },
  },
  transform(model, q, p) {
    return new Promise((resolve) => {
      check(model, q);
      if (p.wClip === true) {
        throw new UnsupportedConfigError(
          "quarot.wClip applies to quarot's own RTN weights; in a chain set the quantizer's " +
            "clipping (gptq.mse)",
        );
      }
      const t = quarotTransform(model.config, model.weights, params(p));
      resolve({ ...t, notes: [...t.notes, ...quantNotes(q)] });
    });
  },
  quantize(model, q, p) {
    return new Promise((resolve) => {
      check(model, q);
      const t = quarotTransform(model.config, model.weights, params(p));
      const wClip = p.wClip === true;
      const { weights, packed } = quantizeLinears(t.weights, q, wClip ? groupParamsMse : undefined);
      const notes = [
        ...t.notes,
        ...quantNotes(q),
        `weights: RTN${wClip ? " with GPTQ's MSE range search (--w_clip)" : ""}`,
      ];
      if (q.granularity === "group") {
        notes.push("RTN with groups: an extension (QuaRot's rtn_fwrd is per-channel)");
      }
      resolve({ config: t.config, weights, packed, notes });
    });
  },
};
