/**
 * The in-memory form of a Llama-family model, shared by every loader, method, kernel and task.
 *
 * All weights are float32. Linear weights are stored row-major as `[out][in]` (the layout of
 * PyTorch's `nn.Linear.weight`, of safetensors files and of llama2.c checkpoints), so one output
 * channel is one contiguous row.
 *
 * @module
 */

import type { ActivationQuantization } from "../core/act_quantizer.ts";

/** A row-major float32 matrix; for a linear layer `rows` = out features, `cols` = in features. */
export interface Matrix {
  /** Number of rows (output features of a linear layer). */
  readonly rows: number;
  /** Number of columns (input features of a linear layer). */
  readonly cols: number;
  /** `rows * cols` values, row after row. */
  readonly data: Float32Array;
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
  /** q/k/v projections carry a bias (Qwen2-MoE). Absent: no bias. */
  readonly qkvBias?: boolean;
  /**
   * RMSNorm over each token's whole q and k projections before RoPE (OLMoE `q_norm`/`k_norm`,
   * one weight per projected feature, epsilon `normEps`). Absent: no such norm.
   */
  readonly qkNorm?: boolean;
  /** q, k and v are clamped to `[−clipQkv, clipQkv]` after projection (OLMoE `clip_qkv`). */
  readonly clipQkv?: number;
}

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

/** The SwiGLU feed-forward block: down(silu(gate x) * up x). */
export interface DenseMlp {
  readonly kind: "dense";
  /** `[hiddenDim][dim]` (llama2.c w1). */
  readonly gate: Matrix;
  /** `[hiddenDim][dim]` (llama2.c w3). */
  readonly up: Matrix;
  /** `[dim][hiddenDim]` (llama2.c w2). */
  readonly down: Matrix;
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
  /** RMSNorm weight before attention, `[dim]`. */
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
  /** RMSNorm weights over the q and k projections when `qkNorm`. */
  readonly qNorm?: Float32Array;
  readonly kNorm?: Float32Array;
  /** RMSNorm weight before the MLP, `[dim]`. */
  readonly mlpNorm: Float32Array;
  readonly mlp: DenseMlp | MoeMlp;
}

/** All weights of a Llama-family model. */
export interface LlamaWeights {
  /** Token embedding `[vocabSize][dim]`. */
  readonly embed: Matrix;
  readonly layers: readonly LlamaLayer[];
  /** Final RMSNorm weight, `[dim]`. */
  readonly norm: Float32Array;
  /** Classifier `[vocabSize][dim]`; the same object as `embed` when tied. */
  readonly lmHead: Matrix;
  /**
   * Fake quantization of the linear layers' inputs (weight-activation cells); absent: float
   * activations. Carried with the weights so every consumer of the model (tasks, worker pools)
   * runs it the same way.
   */
  readonly activations?: ActivationQuantization;
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
  readonly bosId: number;
  readonly eosId: number;
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
