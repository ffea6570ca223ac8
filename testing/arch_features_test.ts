/**
 * The architecture description (`models/arch.ts`) decides every path's refusals: each feature is
 * recognized from the config field that carries it, and every execution path that does not list
 * a feature refuses a model using it, naming it, through the path's own check. A new op therefore
 * needs its description entry and its TypeScript reference op (which every family test runs);
 * the paths that lack it refuse it with no change of theirs. `EXAMPLES` is typed by the feature
 * list, so a new feature does not compile until it has an example here.
 *
 * @module
 */

import assert from "node:assert/strict";
import { ARCH_FEATURES, type ArchFeature, archFeatures } from "../models/arch.ts";
import { parseHfConfig } from "../models/hf_config.ts";
import type { LlamaConfig, LlamaWeights } from "../models/types.ts";
import { WINDOW_FEATURES, windowUnsupported } from "../kernels/wasm/window_forward.ts";
import { GPU_FEATURES, gpuUnsupported } from "../runners/webgpu_scorer.ts";
import { BLOCK_FEATURES } from "../methods/autodiff/block.ts";
import { reconstructionUnsupported } from "../methods/calibration/reconstruct.ts";
import { ONNX_DECODER_FEATURES, onnxUnsupported } from "../export/onnx_decoder.ts";
import { QUAROT_FEATURES, quarotUnsupported } from "../methods/quarot.ts";
import { ggufUnsupported } from "../models/formats/gguf.ts";

const base: LlamaConfig = parseHfConfig({
  model_type: "llama",
  architectures: ["LlamaForCausalLM"],
  hidden_size: 64,
  intermediate_size: 128,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  num_hidden_layers: 2,
  vocab_size: 512,
  max_position_embeddings: 256,
  rms_norm_eps: 1e-5,
  rope_theta: 10000,
}, "config.json");

const moe = { nExperts: 4, topK: 2, normTopK: true, expertHiddenDim: 32, denseLayers: [] };

/** A config change that uses each feature (and only it, but `sharedExpert` needs `moe`). */
const EXAMPLES: Record<ArchFeature, Partial<LlamaConfig>> = {
  qkvBias: { qkvBias: true },
  oBias: { oBias: true },
  mlpBias: { mlpBias: true },
  qkNormProjection: { qkNorm: "projection" },
  qkNormHead: { qkNorm: "head" },
  clipQkv: { clipQkv: 8 },
  layerNorm: { norm: "layer" },
  embedScale: { embedScale: 8 },
  learnedPositions: { positions: "learned" },
  interleavedRope: { ropeStyle: "interleaved" },
  partialRotary: { rotaryDim: 8 },
  ropeScaling: { ropeScaling: { type: "linear", factor: 2 } },
  queryScale: { queryScale: 0.5 },
  attnScale: { attnScale: 0.1 },
  attnSoftcap: { attnSoftcap: 50 },
  slidingWindow: { slidingWindows: [16, 16] },
  ungatedMlp: { mlpGated: false },
  geluTanh: { mlpAct: "gelu_tanh" },
  relu: { mlpAct: "relu" },
  sandwichNorms: { sandwichNorms: true },
  finalSoftcap: { finalSoftcap: 30 },
  moe: { moe },
  sharedExpert: { moe: { ...moe, sharedHiddenDim: 32 } },
};

/** Weights the checks look at (no layer, an in-memory embedding). */
const weights = {
  layers: [],
  embed: { rows: 0, cols: 0, data: new Float32Array(0) },
} as unknown as LlamaWeights;

/** Each path: the features it lists and its own check's reason for a config. */
const PATHS: readonly {
  name: string;
  features: readonly ArchFeature[];
  why: (c: LlamaConfig) => string | undefined;
}[] = [
  {
    name: "whole-window WASM forward",
    features: WINDOW_FEATURES,
    why: (c) => windowUnsupported({ config: c, weights }),
  },
  {
    name: "WebGPU scorer",
    features: GPU_FEATURES,
    why: (c) => gpuUnsupported({ config: c, weights }),
  },
  {
    name: "differentiable block",
    features: BLOCK_FEATURES,
    why: (c) => reconstructionUnsupported({ config: c, weights }),
  },
  { name: "ONNX exporter", features: ONNX_DECODER_FEATURES, why: (c) => onnxUnsupported(c) },
  {
    name: "quarot",
    features: QUAROT_FEATURES,
    why: (c) =>
      quarotUnsupported(c, { wBits: 4, aBits: 16, granularity: "channel", symmetric: true }),
  },
  { name: "gguf", features: ["interleavedRope"], why: (c) => ggufUnsupported(c, weights) },
];

Deno.test("the description recognizes every feature from the config field that carries it", () => {
  assert.deepEqual(archFeatures(base), []);
  for (const f of Object.keys(ARCH_FEATURES) as ArchFeature[]) {
    const uses = archFeatures({ ...base, ...EXAMPLES[f] });
    assert.deepEqual(uses, f === "sharedExpert" ? ["moe", f] : [f], f);
  }
});

Deno.test("every path refuses each feature it does not list, naming it, through its own check", () => {
  let refusals = 0;
  for (const path of PATHS) {
    assert.equal(path.why(base), undefined, `${path.name} refuses the plain Llama block`);
    for (const f of Object.keys(ARCH_FEATURES) as ArchFeature[]) {
      const c = { ...base, ...EXAMPLES[f] };
      const why = path.why(c);
      const uses = archFeatures(c);
      if (uses.every((u) => path.features.includes(u))) continue;
      assert.ok(why !== undefined, `${path.name} runs a model with ${f}`);
      // MoE is refused whole by paths without experts ("MoE blocks", "Mixture-of-Experts").
      const named = why.includes(f) || (uses.includes("moe") && /MoE|Mixture-of-Experts/.test(why));
      assert.ok(named, `${path.name} refuses ${f} without naming it: ${why}`);
      refusals++;
    }
  }
  // Every path lacks most features: the loop checked far more than a handful.
  assert.ok(refusals > 80, `${refusals} refusals`);
});
