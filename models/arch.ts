/**
 * The architecture features a decoder config may use, named once: every way a supported family
 * departs from the plain Llama block. The reference forward pass (`forward.ts`) implements all
 * of them; every other execution path (the whole-window WASM forward, the WebGPU window scorer,
 * the differentiable block of the learned methods, the ONNX exporter) declares the features it
 * implements and refuses a model that uses any other, by name, instead of computing a
 * different model.
 *
 * @module
 */

import type { LlamaConfig } from "./types.ts";

/** Every feature, with what it means. */
export const ARCH_FEATURES = {
  qkvBias: "biases on the q, k and v projections",
  oBias: "a bias on the attention output projection",
  mlpBias: "biases on the MLP projections",
  qkNormProjection: "RMSNorm over the whole q and k projections (OLMoE)",
  qkNormHead: "RMSNorm of q and k per head (Qwen3)",
  clipQkv: "q, k and v clamped after projection (OLMoE clip_qkv)",
  layerNorm: "LayerNorm with biases instead of RMSNorm (OPT)",
  embedScale: "token embeddings scaled (Gemma)",
  learnedPositions: "learned absolute positions instead of RoPE (OPT)",
  interleavedRope: "RoPE on interleaved pairs (llama2.c)",
  partialRotary: "RoPE on the first part of each head only (Phi-3 partial_rotary_factor)",
  ropeScaling: "scaled RoPE frequencies (Llama 3, linear, longrope)",
  queryScale: "queries scaled after their projection (OPT)",
  attnScale: "an attention score scale other than 1/√head_dim (Gemma 2)",
  attnSoftcap: "attention score soft-capping (Gemma 2)",
  slidingWindow: "sliding-window attention (Mistral, Gemma 2, Phi-3, Qwen2 with windows)",
  ungatedMlp: "an MLP without a gate projection (OPT)",
  geluTanh: "the tanh-approximated GELU activation (Gemma)",
  relu: "the ReLU activation (OPT)",
  sandwichNorms: "norms on the attention and MLP outputs (Gemma 2)",
  finalSoftcap: "final logit soft-capping (Gemma 2)",
  moe: "Mixture-of-Experts blocks",
  sharedExpert: "a sigmoid-gated shared expert (Qwen2-MoE)",
} as const;

/** One of {@linkcode ARCH_FEATURES}. */
export type ArchFeature = keyof typeof ARCH_FEATURES;

/** The features `c` uses, in {@linkcode ARCH_FEATURES} order. */
export function archFeatures(c: LlamaConfig): ArchFeature[] {
  const uses: Record<ArchFeature, boolean> = {
    qkvBias: c.qkvBias === true,
    oBias: c.oBias === true,
    mlpBias: c.mlpBias === true,
    qkNormProjection: c.qkNorm === "projection",
    qkNormHead: c.qkNorm === "head",
    clipQkv: c.clipQkv !== undefined,
    layerNorm: c.norm === "layer",
    embedScale: c.embedScale !== undefined && c.embedScale !== 1,
    learnedPositions: c.positions === "learned",
    interleavedRope: c.positions !== "learned" && c.ropeStyle === "interleaved",
    partialRotary: c.rotaryDim !== undefined && c.rotaryDim !== c.headDim,
    ropeScaling: c.ropeScaling !== undefined,
    queryScale: c.queryScale !== undefined && c.queryScale !== 1,
    attnScale: c.attnScale !== undefined && c.attnScale !== 1 / Math.sqrt(c.headDim),
    attnSoftcap: c.attnSoftcap !== undefined,
    slidingWindow: (c.slidingWindows ?? []).some((w) => w > 0),
    ungatedMlp: c.mlpGated === false,
    geluTanh: c.mlpAct === "gelu_tanh",
    relu: c.mlpAct === "relu",
    sandwichNorms: c.sandwichNorms === true,
    finalSoftcap: c.finalSoftcap !== undefined,
    moe: c.moe !== undefined,
    sharedExpert: c.moe?.sharedHiddenDim !== undefined,
  };
  return (Object.keys(ARCH_FEATURES) as ArchFeature[]).filter((f) => uses[f]);
}

/**
 * Why the execution path `path`, which implements `supported`, cannot run a model of config
 * `c` (naming the features it lacks), or undefined when it can.
 */
export function unsupportedFeatures(
  path: string,
  c: LlamaConfig,
  supported: readonly ArchFeature[],
): string | undefined {
  const missing = archFeatures(c).filter((f) => !supported.includes(f));
  if (missing.length === 0) return undefined;
  return `${path} does not implement ${
    missing.map((f) => `${f} (${ARCH_FEATURES[f]})`).join(", ")
  }`;
}

/** The features of the plain Llama block's neighbours that most paths implement. */
export const LLAMA_FEATURES: readonly ArchFeature[] = ["interleavedRope"];
