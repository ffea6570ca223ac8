/**
 * QuaRot's first step, `fuse_layer_norms` (spcl/QuaRot `fake_quant/rotation_utils.py`): the weight
 * γ of every RMSNorm is folded into the linears that read the norm's output, and the norm keeps
 * only its normalisation, so that a later rotation of the residual stream commutes with it
 * (‖Qᵀx‖ = ‖x‖, so RMSNorm(Qᵀx) = Qᵀ·RMSNorm(x) for a weightless norm).
 *
 * - W_{q,k,v} ← W·diag(γ_attn), W_{gate,up} ← W·diag(γ_mlp), W_lmHead ← W·diag(γ_final), each
 *   product taken in float64 and rounded once to float32 (QuaRot: `W.double() * γ.double()`, cast
 *   back to the checkpoint's dtype).
 * - Every norm weight becomes ones; the model's ε is kept (QuaRot's replacement `RMSN` hard-codes
 *   1e-5, which changes a model trained with another ε, e.g. Qwen2's 1e-6).
 * - A tied classifier is untied first: the model gets its own lm_head matrix (QuaRot clones the
 *   tied parameter), and the config says `tiedEmbeddings: false`.
 * - `centerEmbeddings` replaces every embedding row (and learned position row) e by e − mean(e),
 *   as QuaRot does for every model. That keeps a LayerNorm model's residual stream zero-mean; for
 *   an RMSNorm model it is not function-preserving (spcl/QuaRot#7, facebookresearch/SpinQuant#14),
 *   so it is off by default here and recorded.
 *
 * Refused (TypeError; `quarot.ts` names them as unsupported configurations first): LayerNorm
 * models (their β would become biases of every consumer, lm_head included, which has no bias
 * here; QuaRot's OPT path is known not to be exact, spcl/QuaRot#30), Gemma 2's sandwich norms
 * (a norm on a block's output cannot be folded into anything) and MoE blocks.
 *
 * New arrays are made for everything changed; the input weights are not modified.
 *
 * @module
 */

import type { DenseMlp, LlamaConfig, LlamaLayer, LlamaWeights, Matrix } from "../models/types.ts";

/** Options of {@linkcode fuseNorms}. */
export interface NormFusionOptions {
  /** Subtract each embedding row's mean (QuaRot's default; not function-preserving for RMSNorm). */
  readonly centerEmbeddings: boolean;
}

/** A model after {@linkcode fuseNorms}. */
export interface FusedModel {
  /** The input config with `tiedEmbeddings: false`. */
  readonly config: LlamaConfig;
  readonly weights: LlamaWeights;
}

/**
 * Folds every norm weight into its consumers and replaces the norms by ones (see the module
 * documentation). The result computes the same function as the input when `centerEmbeddings` is
 * false (up to float32 rounding of the folded products).
 *
 * @throws {TypeError} for LayerNorm models, sandwich norms or MoE blocks.
 */
export function fuseNorms(
  config: LlamaConfig,
  weights: LlamaWeights,
  options: NormFusionOptions,
): FusedModel {
  if (config.norm === "layer" || weights.normBias) {
    throw new TypeError("fuseNorms: LayerNorm biases cannot be folded (lm_head has no bias)");
  }
  const ones = () => new Float32Array(config.dim).fill(1);
  const layers = weights.layers.map((layer, l): LlamaLayer => {
    if (layer.postAttnNorm || layer.postMlpNorm) {
      throw new TypeError(`fuseNorms: layer ${l} has sandwich norms, which cannot be folded`);
    }
    if (layer.attnNormBias || layer.mlpNormBias) {
      throw new TypeError(`fuseNorms: layer ${l} has LayerNorm biases`);
    }
    if (layer.mlp.kind !== "dense") {
      throw new TypeError(`fuseNorms: layer ${l} is a Mixture-of-Experts block`);
    }
    const g = layer.attnNorm;
    const mlp: DenseMlp = layer.mlp;
    const gm = layer.mlpNorm;
    return {
      ...layer,
      attnNorm: ones(),
      mlpNorm: ones(),
      q: scaleColumns(layer.q, g),
      k: scaleColumns(layer.k, g),
      v: scaleColumns(layer.v, g),
      mlp: {
        ...mlp,
        ...(mlp.gate ? { gate: scaleColumns(mlp.gate, gm) } : {}),
        up: scaleColumns(mlp.up, gm),
      },
    };
  });
  // lm_head gets its own matrix here even when tied: the product below is always a new array.
  const lmHead = scaleColumns(weights.lmHead, weights.norm);
  const center = options.centerEmbeddings;
  const embed = center ? centerRows(weights.embed) : weights.embed;
  const positions = center && weights.positions ? centerRows(weights.positions) : weights.positions;
  return {
    config: { ...config, tiedEmbeddings: false },
    weights: {
      ...weights,
      embed,
      ...(positions ? { positions } : {}),
      layers,
      norm: ones(),
      lmHead,
    },
  };
}

/** `W·diag(γ)`: column j times γ_j, the product rounded once to float32. */
export function scaleColumns(m: Matrix, gamma: Float32Array): Matrix {
  if (gamma.length !== m.cols) {
    throw new RangeError(`Norm weight of length ${gamma.length} for a matrix of ${m.cols} columns`);
  }
  const src = m.data;
  const data = new Float32Array(src.length);
  for (let r = 0; r < m.rows; r++) {
    const o = r * m.cols;
    for (let j = 0; j < m.cols; j++) data[o + j] = src[o + j]! * gamma[j]!;
  }
  return { rows: m.rows, cols: m.cols, data };
}

/** Every row minus its mean (mean and differences in float64, rounded once). */
export function centerRows(m: Matrix): Matrix {
  const src = m.data;
  const data = new Float32Array(src.length);
  for (let r = 0; r < m.rows; r++) {
    const o = r * m.cols;
    let mean = 0;
    for (let j = 0; j < m.cols; j++) mean += src[o + j]!;
    mean /= m.cols;
    for (let j = 0; j < m.cols; j++) data[o + j] = src[o + j]! - mean;
  }
  return { rows: m.rows, cols: m.cols, data };
}
