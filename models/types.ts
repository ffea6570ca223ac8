/**
 * The decoder every loader, method, kernel and task shares, described once: a config whose
 * feature fields name every way a supported architecture departs from Llama (q/k/v biases,
 * q/k norms, LayerNorm, GeGLU or ReLU MLPs, sliding windows, soft-capping, learned positions,
 * Mixture-of-Experts, …; see `arch.ts`), and the weights those features need.
 *
 * Weights read as float32 (`Matrix.data`; large checkpoints keep their stored dtype and
 * materialize one block at a time, see `lazy_matrix.ts`). Linear weights are row-major
 * `[out][in]` (the layout of PyTorch's `nn.Linear.weight`, of safetensors files and of llama2.c
 * checkpoints), so one output channel is one contiguous row.
 *
 * @module
 */

import type { ActivationQuantization } from "../core/act_quantizer.ts";
import type { PackedWeight } from "../core/quantizer.ts";

/**
 * A row-major float32 matrix; for a linear layer `rows` = out features, `cols` = in features.
 * `data` may be materialized on access (`lazy_matrix.ts`: weights kept in their stored dtype or
 * as packed codes); read it once per use rather than once per element.
 */
export interface Matrix {
  /** Number of rows (output features of a linear layer). */
  readonly rows: number;
  /** Number of columns (input features of a linear layer). */
  readonly cols: number;
  /** `rows * cols` values, row after row. */
  readonly data: Float32Array;
  /**
   * The exact packed form when the matrix is a quantized weight (`data` is its dequantization,
   * rounded to `dtype` when that is a 16-bit format).
   */
  readonly packed?: PackedWeight;
  /** Storage dtype of the checkpoint tensor (safetensors name: `BF16`, `F16`, …); absent: F32. */
  readonly dtype?: string;
}

/** How rotary position embeddings pair the dimensions of a head. */
export type RopeStyle =
  /** llama2.c / Meta: rotate pairs (x[2i], x[2i+1]). */
  | "interleaved"
  /** Hugging Face `rotate_half`: rotate pairs (x[i], x[i + headDim/2]). */
  | "half";

/** Architecture hyper-parameters of a Llama-family model (dense or Mixture-of-Experts). */
export interface LlamaConfig {
  /** Hidden size (`hidden_size`, llama2.c `dim`). */
  readonly dim: number;
  /** Feed-forward inner size of one (dense) MLP or of one expert. */
  readonly hiddenDim: number;
  readonly nLayers: number;
  readonly nHeads: number;
  /** Key/value heads (grouped-query attention when < nHeads). */
  readonly nKvHeads: number;
  /** Size of one attention head (`dim / nHeads` unless the config says otherwise). */
  readonly headDim: number;
  readonly vocabSize: number;
  /** Longest context the model was trained for. */
  readonly maxSeqLen: number;
  /** RMSNorm epsilon. */
  readonly normEps: number;
  /** RoPE base frequency. */
  readonly ropeTheta: number;
  readonly ropeStyle: RopeStyle;
  /** Whether the classifier shares the token embedding matrix. */
  readonly tiedEmbeddings: boolean;
  /** Mixture-of-Experts routing, absent for dense models. */
  readonly moe?: MoeConfig;
  /** q/k/v projections carry a bias (Qwen2, Qwen2-MoE, OPT). Absent: no bias. */
  readonly qkvBias?: boolean;
  /**
   * RMSNorm of q and k after projection, before RoPE, epsilon `normEps`: over each token's whole
   * projection (`projection`: OLMoE, one weight per projected feature) or over each head
   * (`head`: Qwen3, one weight per head dimension shared by all heads). Absent: none.
   */
  readonly qkNorm?: "projection" | "head";
  /** q, k and v are clamped to `[−clipQkv, clipQkv]` after projection (OLMoE `clip_qkv`). */
  readonly clipQkv?: number;
  /**
   * The transformers `model_type` the config came from (`llama`, `qwen2`, `gemma2`, `opt`, …),
   * or `llama2c`. Informational (method defaults, provenance); the forward pass reads only the
   * feature fields below.
   */
  readonly family?: string;
  /**
   * Normalization layers: RMSNorm `x / sqrt(mean x² + ε) · w` (default) or LayerNorm
   * `(x − mean) / sqrt(var + ε) · w + b` with biases (OPT).
   */
  readonly norm?: "rms" | "layer";
  /** Token embeddings are multiplied by this float32 value (Gemma: √dim). Absent: 1. */
  readonly embedScale?: number;
  /**
   * Position information: rotary embeddings on q and k (`rope`, default) or a learned absolute
   * position embedding added to the token embedding (`learned`, OPT: row `position + 2`).
   */
  readonly positions?: "rope" | "learned";
  /** Leading dimensions of each head that RoPE rotates (partial rotary). Absent: `headDim`. */
  readonly rotaryDim?: number;
  /** RoPE frequency scaling (Llama 3 `rope_type: "llama3"`). Absent: plain frequencies. */
  readonly ropeScaling?: RopeScaling;
  /** Multiplier of attention scores q·k. Absent: `1/√headDim`. */
  readonly attnScale?: number;
  /**
   * Queries are multiplied by this after their projection and bias, in float32 (OPT's
   * `q_proj(x) · head_dim^−½`, with `attnScale` 1). Absent: 1.
   */
  readonly queryScale?: number;
  /** Attention scores are soft-capped to `cap · tanh(s / cap)` before the mask (Gemma 2). */
  readonly attnSoftcap?: number;
  /**
   * Per layer, the sliding attention window: a query at position i sees keys j with
   * `i − window < j ≤ i`; 0 means the whole causal prefix. Absent: no window anywhere.
   */
  readonly slidingWindows?: readonly number[];
  /** The attention output projection has a bias (OPT). */
  readonly oBias?: boolean;
  /** The MLP projections have biases (OPT fc1/fc2). */
  readonly mlpBias?: boolean;
  /** MLP activation (default `silu`): `gelu_tanh` (Gemma), `gelu` (erf), `relu` (OPT). */
  readonly mlpAct?: MlpActivation;
  /**
   * The MLP is gated, `down(act(gate x) · up x)` (default), or plain, `down(act(up x))` (OPT's
   * fc1 = up, fc2 = down; no gate matrix).
   */
  readonly mlpGated?: boolean;
  /**
   * Gemma 2 "sandwich" norms: the attention and MLP outputs are normalized again before being
   * added to the residual (`postAttnNorm`, `postMlpNorm`).
   */
  readonly sandwichNorms?: boolean;
  /** Final logits are soft-capped to `cap · tanh(z / cap)` (Gemma 2). */
  readonly finalSoftcap?: number;
}

/** An MLP activation function. */
export type MlpActivation = "silu" | "gelu_tanh" | "gelu" | "relu";

/**
 * RoPE frequency scaling. `llama3`: frequencies with wavelength above `original / low` are
 * divided by `factor`, those below `original / high` kept, and the band between interpolated
 * (transformers `_compute_llama3_parameters`). `linear`: every frequency divided by `factor`.
 */
export type RopeScaling =
  | {
    readonly type: "llama3";
    readonly factor: number;
    readonly lowFreqFactor: number;
    readonly highFreqFactor: number;
    readonly originalMaxPositions: number;
  }
  | { readonly type: "linear"; readonly factor: number }
  | {
    /**
     * Phi-3 `longrope` within the original context: frequencies divided by the short factors,
     * cos and sin multiplied by `attentionFactor`. Positions beyond `originalMaxPositions`
     * (where transformers switches to the long factors) are refused.
     */
    readonly type: "longrope";
    readonly shortFactor: readonly number[];
    readonly attentionFactor: number;
    readonly originalMaxPositions: number;
  };

/** Routing hyper-parameters of a Mixture-of-Experts layer (Mixtral / Qwen-MoE / OLMoE layouts). */
export interface MoeConfig {
  readonly nExperts: number;
  /** Experts chosen per token. */
  readonly topK: number;
  /**
   * Renormalise the chosen experts' softmax weights to sum to 1 (Mixtral: true; Qwen2-MoE and
   * OLMoE: their `norm_topk_prob`, false by default).
   */
  readonly normTopK: boolean;
  /** Inner size of one routed expert (Mixtral: `intermediate_size`). */
  readonly expertHiddenDim: number;
  /**
   * Inner size of the always-on shared expert whose output is scaled by `sigmoid(sharedGate·x)`
   * (Qwen2-MoE `shared_expert_intermediate_size`); absent: no shared expert.
   */
  readonly sharedHiddenDim?: number;
  /**
   * Layers whose feed-forward block is a dense MLP of `hiddenDim` (Qwen2-MoE `mlp_only_layers`
   * and layers off `decoder_sparse_step`); empty when every layer is sparse.
   */
  readonly denseLayers: readonly number[];
}

/**
 * A dense feed-forward block: gated `down(act(gate x) · up x)` (SwiGLU, GeGLU) or, without a
 * gate matrix, `down(act(up x))` (OPT).
 */
export interface DenseMlp {
  readonly kind: "dense";
  /** `[hiddenDim][dim]` (llama2.c w1); absent in ungated MLPs. */
  readonly gate?: Matrix;
  /** `[hiddenDim][dim]` (llama2.c w3; OPT fc1). */
  readonly up: Matrix;
  /** `[dim][hiddenDim]` (llama2.c w2; OPT fc2). */
  readonly down: Matrix;
  /** Biases (`mlpBias`): `[hiddenDim]`, `[hiddenDim]`, `[dim]`. */
  readonly gateBias?: Float32Array;
  readonly upBias?: Float32Array;
  readonly downBias?: Float32Array;
}

/**
 * A Mixture-of-Experts feed-forward block: a linear router over dense experts, and optionally a
 * shared expert every token goes through, weighted by `sigmoid(sharedGate · x)` (Qwen2-MoE).
 *
 * Where experts are numbered (calibration, statistics, linear sites), the shared expert is
 * number `experts.length` (see `expertMlps`).
 */
export interface MoeMlp {
  readonly kind: "moe";
  /** `[nExperts][dim]` router logits. */
  readonly router: Matrix;
  readonly experts: readonly DenseMlp[];
  /** The shared expert (Qwen2-MoE `shared_expert`). */
  readonly shared?: DenseMlp;
  /** `[1][dim]`, the shared expert's gate logit (Qwen2-MoE `shared_expert_gate`). */
  readonly sharedGate?: Matrix;
}

/** The experts of a MoE block in their numbering: the routed ones, then the shared one if any. */
export function expertMlps(mlp: MoeMlp): readonly DenseMlp[] {
  return mlp.shared ? [...mlp.experts, mlp.shared] : mlp.experts;
}

/** One decoder block. */
export interface LlamaLayer {
  /** Norm weight before attention, `[dim]`. */
  readonly attnNorm: Float32Array;
  /** `[nHeads*headDim][dim]`. */
  readonly q: Matrix;
  /** `[nKvHeads*headDim][dim]`. */
  readonly k: Matrix;
  /** `[nKvHeads*headDim][dim]`. */
  readonly v: Matrix;
  /** `[dim][nHeads*headDim]`. */
  readonly o: Matrix;
  /** Biases of q, k and v (`[nHeads*headDim]`, `[nKvHeads*headDim]` ×2) when `qkvBias`. */
  readonly qBias?: Float32Array;
  readonly kBias?: Float32Array;
  readonly vBias?: Float32Array;
  /**
   * RMSNorm weights of q and k when `qkNorm`: `[nHeads·headDim]` and `[nKvHeads·headDim]` over
   * the projection, or `[headDim]` each per head.
   */
  readonly qNorm?: Float32Array;
  readonly kNorm?: Float32Array;
  /** Bias of the output projection (`oBias`), `[dim]`. */
  readonly oBias?: Float32Array;
  /** LayerNorm biases of the two norms (`norm: "layer"`), `[dim]`. */
  readonly attnNormBias?: Float32Array;
  readonly mlpNormBias?: Float32Array;
  /** Norms of the attention and MLP outputs (`sandwichNorms`), `[dim]`. */
  readonly postAttnNorm?: Float32Array;
  readonly postMlpNorm?: Float32Array;
  /** Norm weight before the MLP, `[dim]`. */
  readonly mlpNorm: Float32Array;
  readonly mlp: DenseMlp | MoeMlp;
}

/** All weights of a Llama-family model. */
export interface LlamaWeights {
  /** Token embedding `[vocabSize][dim]`. */
  readonly embed: Matrix;
  readonly layers: readonly LlamaLayer[];
  /** Final norm weight, `[dim]`. */
  readonly norm: Float32Array;
  /** Final LayerNorm bias (`norm: "layer"`), `[dim]`. */
  readonly normBias?: Float32Array;
  /**
   * Learned absolute positions (`positions: "learned"`): `[maxSeqLen + 2][dim]`, position `p`
   * reads row `p + 2` (OPT's offset).
   */
  readonly positions?: Matrix;
  /** Classifier `[vocabSize][dim]`; the same object as `embed` when tied. */
  readonly lmHead: Matrix;
  /**
   * Fake quantization of the linear layers' inputs (weight-activation cells); absent: float
   * activations. Carried with the weights so every consumer of the model (tasks, worker pools)
   * runs it the same way.
   */
  readonly activations?: ActivationQuantization;
  /**
   * Online rotations of linear inputs (QuaRot): applied to the input of o and of down in every
   * dense block, before the activation quantizer and before calibration observers see it.
   * Absent: none.
   */
  readonly online?: OnlineRotations;
}

/**
 * An orthogonal transform applied to each token's input of a linear during the forward pass
 * (its transpose is fused into the linear's weight, so the float model is unchanged):
 * - `hadamard`: `x ← M_n·x` with QuaRot's Hadamard `M_n = (hadK ⊗ H_{n/K})/√n`
 *   (`core/hadamard.ts` `applyHadamard`);
 * - `cross-head`: `x ← (M_heads ⊗ I_headDim)·x`, a Hadamard across heads (before o);
 * - `matrix`: `x ← Q·x` with a dense orthogonal `Q` (`[n][n]` row-major), where no Hadamard of
 *   that size is available.
 */
export type OnlineRotation =
  | { readonly kind: "hadamard"; readonly n: number }
  | { readonly kind: "cross-head"; readonly heads: number; readonly headDim: number }
  | { readonly kind: "matrix"; readonly n: number; readonly matrix: Float32Array };

/** The online rotations of a model's linear inputs. */
export interface OnlineRotations {
  /** Before o (the attention output). */
  readonly o?: OnlineRotation;
  /** Before down (the MLP hidden activation). */
  readonly down?: OnlineRotation;
}

/** The seven kinds of linear layer that weight quantization acts on. */
export const LINEAR_KINDS = ["q", "k", "v", "o", "gate", "up", "down"] as const;
/** One of {@linkcode LINEAR_KINDS}. */
export type LinearKind = typeof LINEAR_KINDS[number];

/** Text ↔ token ids. */
export interface Tokenizer {
  /** Where the vocabulary came from (`llama2c` tok*.bin or a `tokenizer.json`). */
  readonly kind: "llama2c" | "hf";
  readonly vocabSize: number;
  /** The token sequences start with: BOS, or EOS for tokenizers without one (`hasBos` false). */
  readonly bosId: number;
  readonly eosId: number;
  /** Whether the vocabulary has a BOS token (Qwen's has none). Absent: true. */
  readonly hasBos?: boolean;
  /**
   * sha256 identifying what the tokenizer encodes with (its files and the implementation), so a
   * text's token stream can be cached per machine (`tasks/token_cache.ts`). Absent: not cached.
   */
  readonly fingerprint?: string;
  /**
   * Encode text the SentencePiece-Llama way: one dummy-prefix space is prepended; BOS is added
   * only when `bos` is true. No EOS.
   */
  encode(text: string, options?: { bos?: boolean }): number[];
  /** Decode ids to text, dropping special tokens. */
  decode(ids: readonly number[]): string;
}

/** A file a model was read from, for provenance. */
export interface SourceFile {
  /** Path relative to the model's root (e.g. `stories260K/stories260K.bin`). */
  readonly path: string;
  readonly bytes: number;
  /** Lower-case hex sha256 of the file's bytes. */
  readonly sha256: string;
}

/** A loaded model: config, weights, tokenizer and where they came from. */
export interface LoadedModel {
  /** Registry id or reference the model was loaded from. */
  readonly id: string;
  readonly format: "llama2c" | "hf";
  readonly config: LlamaConfig;
  readonly weights: LlamaWeights;
  readonly tokenizer: Tokenizer;
  /** The files read, with their hashes. */
  readonly files: readonly SourceFile[];
}

/** What a forward pass needs: the decoder config and its weights. */
export interface ForwardModel {
  readonly config: LlamaConfig;
  readonly weights: LlamaWeights;
}
