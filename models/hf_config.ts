/**
 * Hugging Face transformers `config.json` → {@linkcode LlamaConfig}, the one architecture
 * description the forward pass, the kernels and the methods read. Families (`model_type`):
 * `llama`, `mistral`, `qwen2`, `qwen3`, `phi3`, `gemma2`, `opt` (dense) and `mixtral`,
 * `qwen2_moe`, `qwen3_moe`, `olmoe` (Mixture-of-Experts).
 *
 * Defaults of absent fields are each family's configuration class's own (transformers
 * `configuration_<family>.py`), and the architectural facts each family's modeling file
 * hard-codes (Qwen2's q/k/v biases, Gemma 2's sandwich norms and soft-caps, OPT's LayerNorm and
 * learned positions, …) become feature fields of the config. Both config spellings are read:
 * `rope_theta` / `rope_scaling` and transformers v5's `rope_parameters`, `torch_dtype` and
 * `dtype`. A feature the forward pass does not implement is refused here, by name, before any
 * weight is read.
 *
 * @module
 */

import { parseQuantizationConfig } from "./formats/quantized_import.ts";
import { FormatError, UnsupportedConfigError } from "../core/errors.ts";
import type { LlamaConfig, MlpActivation, MoeConfig, RopeScaling } from "./types.ts";
import { describe, isRecord } from "../core/describe.ts";

/** The `model_type` values {@linkcode parseHfConfig} understands. */
export const SUPPORTED_MODEL_TYPES = [
  "llama",
  "mistral",
  "qwen2",
  "qwen3",
  "phi3",
  "gemma2",
  "opt",
  "mixtral",
  "qwen2_moe",
  "qwen3_moe",
  "olmoe",
] as const;

/** One of {@linkcode SUPPORTED_MODEL_TYPES}. */
export type ModelType = typeof SUPPORTED_MODEL_TYPES[number];

/** transformers' configuration-class defaults per model type, for fields that may be absent. */
const DEFAULTS: Record<
  ModelType,
  { rmsNormEps: number; ropeTheta: number; maxPositions: number; tied: boolean }
> = {
  llama: { rmsNormEps: 1e-6, ropeTheta: 10000, maxPositions: 2048, tied: false },
  mistral: { rmsNormEps: 1e-6, ropeTheta: 10000, maxPositions: 4096 * 32, tied: false },
  qwen2: { rmsNormEps: 1e-6, ropeTheta: 10000, maxPositions: 32768, tied: false },
  qwen3: { rmsNormEps: 1e-6, ropeTheta: 10000, maxPositions: 32768, tied: false },
  phi3: { rmsNormEps: 1e-5, ropeTheta: 10000, maxPositions: 4096, tied: false },
  gemma2: { rmsNormEps: 1e-6, ropeTheta: 10000, maxPositions: 8192, tied: true },
  opt: { rmsNormEps: 1e-5, ropeTheta: 10000, maxPositions: 2048, tied: true },
  mixtral: { rmsNormEps: 1e-5, ropeTheta: 1e6, maxPositions: 4096 * 32, tied: false },
  qwen2_moe: { rmsNormEps: 1e-6, ropeTheta: 10000, maxPositions: 32768, tied: false },
  qwen3_moe: { rmsNormEps: 1e-6, ropeTheta: 10000, maxPositions: 32768, tied: false },
  olmoe: { rmsNormEps: 1e-5, ropeTheta: 10000, maxPositions: 4096, tied: false },
};

/** Typed access to config fields, with errors naming the file and the field. */
class Fields {
  constructor(readonly obj: Record<string, unknown>, readonly file: string) {}

  #value(name: string, expected: string, fallback: unknown): unknown {
    const v = this.obj[name];
    if (v === undefined || v === null) {
      if (fallback !== undefined) return undefined;
      throw new FormatError(this.file, `config field "${name}" is missing (expected ${expected})`);
    }
    return v;
  }

  #wrong(name: string, expected: string): FormatError {
    return new FormatError(
      this.file,
      `config field "${name}" must be ${expected}, got ${describe(this.obj[name])}`,
    );
  }

  /** Whether the field is present and not null. */
  has(name: string): boolean {
    return this.obj[name] !== undefined && this.obj[name] !== null;
  }

  /** A positive integer; `fallback` when absent or null (required when no fallback). */
  positiveInt(name: string, fallback?: number): number {
    const expected = "a positive integer";
    const v = this.#value(name, expected, fallback);
    if (v === undefined) return fallback!;
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v <= 0) {
      throw this.#wrong(name, expected);
    }
    return v;
  }

  /** A positive finite number. */
  positiveNumber(name: string, fallback?: number): number {
    const expected = "a positive number";
    const v = this.#value(name, expected, fallback);
    if (v === undefined) return fallback!;
    if (typeof v !== "number" || !Number.isFinite(v) || v <= 0) throw this.#wrong(name, expected);
    return v;
  }

  /** A non-negative integer. */
  nonNegativeInt(name: string, fallback: number): number {
    const v = this.#value(name, "a non-negative integer", fallback);
    if (v === undefined) return fallback;
    if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) {
      throw this.#wrong(name, "a non-negative integer");
    }
    return v;
  }

  /** A list of non-negative integers (empty when absent or null). */
  intList(name: string): number[] {
    const v = this.#value(name, "a list of integers", []);
    if (v === undefined) return [];
    if (
      !Array.isArray(v) || v.some((x) => typeof x !== "number" || !Number.isSafeInteger(x) || x < 0)
    ) {
      throw this.#wrong(name, "a list of non-negative integers");
    }
    return v as number[];
  }

  /** A list of strings, or undefined when absent or null. */
  stringList(name: string): string[] | undefined {
    const v = this.obj[name];
    if (v === undefined || v === null) return undefined;
    if (!Array.isArray(v) || v.some((x) => typeof x !== "string")) {
      throw this.#wrong(name, "a list of strings");
    }
    return v as string[];
  }

  /** A list of numbers. */
  numberList(name: string): number[] {
    const v = this.obj[name];
    if (!Array.isArray(v) || v.some((x) => typeof x !== "number" || !Number.isFinite(x))) {
      throw this.#wrong(name, "a list of numbers");
    }
    return v as number[];
  }

  boolean(name: string, fallback: boolean): boolean {
    const v = this.#value(name, "a boolean", fallback);
    if (v === undefined) return fallback;
    if (typeof v !== "boolean") throw this.#wrong(name, "a boolean");
    return v;
  }

  /** A string, or `fallback` when absent or null. */
  string(name: string, fallback: string): string {
    const v = this.obj[name];
    if (v === undefined || v === null) return fallback;
    if (typeof v !== "string") throw this.#wrong(name, "a string");
    return v;
  }
}

/** transformers' activation names → ours. */
const ACTIVATIONS: Readonly<Record<string, MlpActivation>> = {
  silu: "silu",
  swish: "silu",
  gelu_pytorch_tanh: "gelu_tanh",
  gelu_new: "gelu_tanh",
  relu: "relu",
};

/**
 * Parses a transformers `config.json` of one of {@linkcode SUPPORTED_MODEL_TYPES}.
 *
 * Required: `model_type`, `hidden_size`, `intermediate_size` (OPT: `ffn_dim`),
 * `num_hidden_layers`, `num_attention_heads`, `vocab_size`. Per family, with transformers'
 * defaults:
 * - `llama`: `attention_bias` (q, k, v and o), `mlp_bias`, `head_dim`, `rope_scaling`
 *   `llama3`/`linear` (`dynamic` equals the plain frequencies within the context);
 * - `mistral`: `sliding_window` on every layer (4096 when the key is absent, as
 *   `MistralConfig`; null: none);
 * - `qwen2`: q/k/v biases; with `use_sliding_window`, a window on layers from
 *   `max_window_layers` on (or as `layer_types` says);
 * - `qwen3`: `head_dim` (default 128), RMSNorm of q and k per head, `attention_bias`;
 * - `phi3`: fused `qkv_proj`/`gate_up_proj` (split by the loader), `partial_rotary_factor`,
 *   `sliding_window` (none by default), `longrope` scaling within the original context;
 * - `gemma2`: `(1 + w)` RMSNorms (folded into the weights by the loader), sandwich norms,
 *   GeGLU (`hidden_activation`), embeddings × √hidden, attention scale
 *   `query_pre_attn_scalar^−½`, soft-caps `attn_logit_softcapping` and
 *   `final_logit_softcapping`, a window on even layers (or as `layer_types` says), tied;
 * - `opt`: pre-LayerNorm blocks (eps 1e-5) with biases, ReLU MLP (`ffn_dim`), learned
 *   positions (offset 2), queries scaled after their projection, tied;
 * - `mixtral`: 8 experts, top-2, renormalised; optional `sliding_window`;
 * - `qwen2_moe`: routed experts (`moe_intermediate_size`), a sigmoid-gated shared expert,
 *   `decoder_sparse_step` and `mlp_only_layers` dense layers, q/k/v biases, `norm_topk_prob`;
 * - `qwen3_moe`: Qwen3 attention, routed experts only;
 * - `olmoe`: RMSNorm over the whole q and k projections, `clip_qkv`, `norm_topk_prob`.
 *
 * @param json The parsed JSON.
 * @param file The file's name or path, for error messages.
 * @returns The model's hyper-parameters and features.
 * @throws {FormatError} For a missing or ill-typed field, an unknown `model_type` or
 *   inconsistent sizes.
 * @throws {UnsupportedConfigError} For features the forward pass does not implement (naming
 *   them), e.g. `yarn` RoPE, OPT-350m's post-LayerNorm blocks, exact-erf GELU.
 */
export function parseHfConfig(json: unknown, file: string): LlamaConfig {
  if (!isRecord(json)) {
    throw new FormatError(file, `config must be a JSON object, got ${describe(json)}`);
  }
  const type = parseModelType(json, file);
  const defaults = DEFAULTS[type];
  const f = new Fields(json, file);
  const qc = json.quantization_config;
  // Quantized checkpoints of the formats `models/formats/quantized_import.ts` reads load with packed
  // linears (the loader routes them there); any other quant_method is refused by name.
  if (qc !== undefined && qc !== null) parseQuantizationConfig(qc, file);

  const { dim, hiddenDim, nLayers, nHeads, nKvHeads, headDim, vocabSize, maxSeqLen } = parseShape(
    f,
    file,
    type,
  );
  const mlpAct = parseActivation(f, file, type);
  const rope = parseRopeFields(f, json, file, type, headDim, maxSeqLen);
  const { qkvBias, oBias, mlpBias } = parseBiases(f, file, type);

  const slidingWindows = parseWindows(f, json, file, type, nLayers);
  const config: Record<string, unknown> = {
    dim,
    hiddenDim,
    nLayers,
    nHeads,
    nKvHeads,
    headDim,
    vocabSize,
    maxSeqLen,
    normEps: f.positiveNumber(
      type === "opt" ? "layer_norm_eps" : "rms_norm_eps",
      defaults.rmsNormEps,
    ),
    ...rope,
    ropeStyle: "half",
    tiedEmbeddings: f.boolean("tie_word_embeddings", defaults.tied),
    family: type,
    ...(qkvBias ? { qkvBias: true } : {}),
    ...(oBias ? { oBias: true } : {}),
    ...(mlpBias ? { mlpBias: true } : {}),
    ...(mlpAct !== "silu" ? { mlpAct } : {}),
    ...(slidingWindows ? { slidingWindows } : {}),
  };

  if (type === "qwen3" || type === "qwen3_moe") config.qkNorm = "head";
  if (type === "gemma2") addGemma2Features(f, json, dim, config);
  if (type === "opt") addOptFeatures(f, file, dim, headDim, config);
  const moe = parseMoe(f, file, type, nLayers, hiddenDim);
  if (moe) config.moe = moe;
  if (type === "olmoe") {
    config.qkNorm = "projection";
    if (f.has("clip_qkv")) config.clipQkv = f.positiveNumber("clip_qkv");
  }
  return config as unknown as LlamaConfig;
}

/** The error for a config feature the forward pass does not implement, naming it. */
function unsupportedFeature(file: string, message: string): UnsupportedConfigError {
  return new UnsupportedConfigError(`${file}: ${message} is not supported yet`);
}

/** The `model_type` field, which must be one of {@linkcode SUPPORTED_MODEL_TYPES}. */
function parseModelType(json: Record<string, unknown>, file: string): ModelType {
  const modelType = json.model_type;
  if (
    typeof modelType !== "string" ||
    !(SUPPORTED_MODEL_TYPES as readonly string[]).includes(modelType)
  ) {
    throw new FormatError(
      file,
      `config field "model_type" is ${describe(modelType)}; supported: ${
        SUPPORTED_MODEL_TYPES.map((t) => `"${t}"`).join(", ")
      }`,
    );
  }
  return modelType as ModelType;
}

/** The model's sizes, as {@linkcode parseShape} reads them. */
interface ConfigShape {
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  vocabSize: number;
  maxSeqLen: number;
}

/** Sizes: hidden, MLP, layers, query and key/value heads, head, vocabulary and context. */
function parseShape(f: Fields, file: string, type: ModelType): ConfigShape {
  const dim = f.positiveInt("hidden_size");
  const hiddenDim = f.positiveInt(type === "opt" ? "ffn_dim" : "intermediate_size");
  const nLayers = f.positiveInt("num_hidden_layers");
  const nHeads = f.positiveInt("num_attention_heads");
  const vocabSize = f.positiveInt("vocab_size");
  const nKvHeads = type === "opt" ? nHeads : f.positiveInt("num_key_value_heads", nHeads);
  if (nHeads % nKvHeads !== 0) {
    throw new FormatError(
      file,
      `config: num_attention_heads ${nHeads} is not divisible by num_key_value_heads ${nKvHeads}`,
    );
  }
  const defaultHeadDim = { qwen3: 128, gemma2: 256 }[type as string];
  if (!f.has("head_dim") && defaultHeadDim === undefined && dim % nHeads !== 0) {
    throw new FormatError(
      file,
      `config: hidden_size ${dim} is not divisible by num_attention_heads ${nHeads} ` +
        `and no "head_dim" is given`,
    );
  }
  const headDim = type === "opt" ? dim / nHeads : f.positiveInt(
    "head_dim",
    defaultHeadDim ?? dim / nHeads,
  );
  const maxSeqLen = f.positiveInt("max_position_embeddings", DEFAULTS[type].maxPositions);
  return { dim, hiddenDim, nLayers, nHeads, nKvHeads, headDim, vocabSize, maxSeqLen };
}

/** The MLP activation: `hidden_act` (Gemma 2: `hidden_activation`; OPT: `activation_function`). */
function parseActivation(f: Fields, file: string, type: ModelType): MlpActivation {
  // Gemma2Config has only `hidden_activation` (its MLP never reads `hidden_act`).
  const actField = type === "gemma2"
    ? "hidden_activation"
    : type === "opt"
    ? "activation_function"
    : "hidden_act";
  const actName = f.string(
    actField,
    type === "gemma2" ? "gelu_pytorch_tanh" : type === "opt" ? "relu" : "silu",
  );
  const mlpAct = ACTIVATIONS[actName];
  if (mlpAct === undefined) {
    throw unsupportedFeature(
      file,
      `${actField} ${JSON.stringify(actName)} (supported: ${Object.keys(ACTIVATIONS).join(", ")})`,
    );
  }
  return mlpAct;
}

/** The config's RoPE fields (OPT, with learned positions, gets only the default base). */
function parseRopeFields(
  f: Fields,
  json: Record<string, unknown>,
  file: string,
  type: ModelType,
  headDim: number,
  maxSeqLen: number,
): { ropeTheta: number; ropeScaling?: RopeScaling; rotaryDim?: number } {
  const rope = type === "opt" ? undefined : parseRope(f, json, file, type, headDim, maxSeqLen);
  return rope
    ? {
      ropeTheta: rope.theta,
      ...(rope.scaling ? { ropeScaling: rope.scaling } : {}),
      ...(rope.rotaryDim !== headDim ? { rotaryDim: rope.rotaryDim } : {}),
    }
    : { ropeTheta: DEFAULTS[type].ropeTheta };
}

/** Which linears have biases, refusing a bias flag the family's modeling file ignores. */
function parseBiases(
  f: Fields,
  file: string,
  type: ModelType,
): { qkvBias: boolean; oBias: boolean; mlpBias: boolean } {
  // Biases: Qwen2 and Qwen2-MoE hard-code q/k/v biases; llama, qwen3, qwen3_moe and olmoe have
  // `attention_bias` (q, k, v and o); llama has `mlp_bias`; OPT `enable_bias` (everything).
  let qkvBias = false, oBias = false, mlpBias = false;
  if (type === "qwen2") qkvBias = true;
  else if (type === "qwen2_moe") qkvBias = f.boolean("qkv_bias", true);
  else if (type === "opt") qkvBias = oBias = mlpBias = f.boolean("enable_bias", true);
  else if (["llama", "qwen3", "qwen3_moe", "olmoe", "gemma2"].includes(type)) {
    qkvBias = oBias = f.boolean("attention_bias", false);
  }
  if (type === "llama") mlpBias = f.boolean("mlp_bias", false);
  for (const bias of ["attention_bias", "mlp_bias"]) {
    const applies = bias === "attention_bias"
      ? ["llama", "qwen3", "qwen3_moe", "olmoe", "gemma2"].includes(type)
      : type === "llama";
    if (!applies && f.boolean(bias, false)) {
      throw unsupportedFeature(file, `${bias}: true for model_type "${type}"`);
    }
  }
  return { qkvBias, oBias, mlpBias };
}

/** Gemma 2: sandwich norms, embeddings × √hidden, attention scale and soft-caps, into `config`. */
function addGemma2Features(
  f: Fields,
  json: Record<string, unknown>,
  dim: number,
  config: Record<string, unknown>,
): void {
  config.sandwichNorms = true;
  config.embedScale = Math.fround(Math.sqrt(dim));
  config.attnScale = 1 / Math.sqrt(f.positiveNumber("query_pre_attn_scalar", 256));
  const attnCap = f.has("attn_logit_softcapping")
    ? f.positiveNumber("attn_logit_softcapping")
    : json.attn_logit_softcapping === null
    ? undefined
    : 50;
  const finalCap = f.has("final_logit_softcapping")
    ? f.positiveNumber("final_logit_softcapping")
    : json.final_logit_softcapping === null
    ? undefined
    : 30;
  if (attnCap !== undefined) config.attnSoftcap = attnCap;
  if (finalCap !== undefined) config.finalSoftcap = finalCap;
}

/** OPT: LayerNorm, learned positions, ungated MLP and query scaling, into `config`. */
function addOptFeatures(
  f: Fields,
  file: string,
  dim: number,
  headDim: number,
  config: Record<string, unknown>,
): void {
  if (!f.boolean("do_layer_norm_before", true)) {
    throw unsupportedFeature(
      file,
      `do_layer_norm_before: false (OPT-350m's post-LayerNorm blocks)`,
    );
  }
  const proj = f.positiveInt("word_embed_proj_dim", dim);
  if (proj !== dim) {
    throw unsupportedFeature(
      file,
      `word_embed_proj_dim ${proj} ≠ hidden_size ${dim} (project_in/out)`,
    );
  }
  if (f.boolean("_remove_final_layer_norm", false)) {
    throw unsupportedFeature(file, `_remove_final_layer_norm: true`);
  }
  if (!f.boolean("layer_norm_elementwise_affine", true)) {
    throw unsupportedFeature(file, `layer_norm_elementwise_affine: false`);
  }
  config.norm = "layer";
  config.positions = "learned";
  config.mlpGated = false;
  // q_proj output (bias included) is multiplied by head_dim^−½; scores are not scaled again.
  config.queryScale = 1 / Math.sqrt(headDim);
  config.attnScale = 1;
}

/** RoPE: base, rotated dimensions and scaling, from either config spelling. */
function parseRope(
  f: Fields,
  json: Record<string, unknown>,
  file: string,
  type: ModelType,
  headDim: number,
  maxSeqLen: number,
): { theta: number; rotaryDim: number; scaling?: RopeScaling } {
  // transformers v5 writes rope_theta, partial_rotary_factor and the scaling into
  // "rope_parameters"; earlier versions use top-level rope_theta and "rope_scaling".
  const params = json.rope_parameters;
  if (params !== undefined && params !== null && !isRecord(params)) {
    throw new FormatError(
      file,
      `config field "rope_parameters" must be an object, got ${describe(params)}`,
    );
  }
  const p = isRecord(params) ? new Fields(params, `${file} rope_parameters`) : undefined;
  let theta = f.positiveNumber("rope_theta", DEFAULTS[type].ropeTheta);
  if (p?.has("rope_theta")) theta = p.positiveNumber("rope_theta");
  let factor = f.has("partial_rotary_factor") ? f.positiveNumber("partial_rotary_factor") : 1;
  if (p?.has("partial_rotary_factor")) factor = p.positiveNumber("partial_rotary_factor");
  if (factor > 1) {
    throw new FormatError(file, `config: partial_rotary_factor ${factor} is above 1`);
  }
  const rotaryDim = Math.floor(headDim * factor);
  if (rotaryDim < 2 || rotaryDim % 2 !== 0) {
    throw new FormatError(
      file,
      `config: head_dim ${headDim} × partial_rotary_factor ${factor} gives ${rotaryDim} ` +
        `rotary dimensions, expected a positive even number`,
    );
  }
  const raw = isRecord(json.rope_scaling) ? json.rope_scaling : isRecord(params) ? params : null;
  if (
    json.rope_scaling !== undefined && json.rope_scaling !== null && !isRecord(json.rope_scaling)
  ) {
    throw new FormatError(
      file,
      `config field "rope_scaling" must be an object or null, got ${describe(json.rope_scaling)}`,
    );
  }
  if (!raw) return { theta, rotaryDim };
  const s = new Fields(raw, `${file} rope_scaling`);
  const kind = s.string("rope_type", s.string("type", "default"));
  switch (kind) {
    case "default":
      return { theta, rotaryDim };
    case "dynamic":
      // NTK-dynamic scaling changes the frequencies only beyond max_position_embeddings.
      return { theta, rotaryDim };
    case "linear":
      return { theta, rotaryDim, scaling: { type: "linear", factor: s.positiveNumber("factor") } };
    case "llama3":
      return {
        theta,
        rotaryDim,
        scaling: {
          type: "llama3",
          factor: s.positiveNumber("factor"),
          lowFreqFactor: s.positiveNumber("low_freq_factor"),
          highFreqFactor: s.positiveNumber("high_freq_factor"),
          originalMaxPositions: s.positiveInt("original_max_position_embeddings"),
        },
      };
    case "longrope":
    case "su": {
      // Phi-3: within the original context the short factors apply, and cos/sin are scaled by
      // sqrt(1 + ln(max/orig) / ln(orig)) at every length.
      // Phi3Config declares original_max_position_embeddings (default 4096), so transformers
      // always takes it from the config.
      const orig = f.positiveInt("original_max_position_embeddings", 4096);
      const short = s.numberList("short_factor");
      if (short.length !== rotaryDim / 2) {
        throw new FormatError(
          file,
          `rope_scaling.short_factor has ${short.length} entries, expected ${rotaryDim / 2}`,
        );
      }
      const ratio = maxSeqLen / orig;
      const attentionFactor = s.has("attention_factor")
        ? s.positiveNumber("attention_factor")
        : ratio <= 1
        ? 1
        : Math.sqrt(1 + Math.log(ratio) / Math.log(orig));
      return {
        theta,
        rotaryDim,
        scaling: {
          type: "longrope",
          shortFactor: short,
          attentionFactor,
          originalMaxPositions: orig,
        },
      };
    }
    default:
      throw unsupportedFeature(
        file,
        `rope_scaling type ${JSON.stringify(kind)} (supported: llama3, linear, longrope, dynamic)`,
      );
  }
}

/** Per-layer sliding windows (0 = full attention), or undefined when no layer has one. */
function parseWindows(
  f: Fields,
  json: Record<string, unknown>,
  file: string,
  type: ModelType,
  nLayers: number,
): number[] | undefined {
  if (type === "opt" || type === "olmoe" || type === "llama") {
    if (f.has("sliding_window")) {
      throw new UnsupportedConfigError(
        `${file}: sliding_window for model_type "${type}" is not supported yet`,
      );
    }
    return undefined;
  }
  let window: number | undefined;
  if (type === "mistral") {
    window = json.sliding_window === undefined ? 4096 : undefined;
    if (f.has("sliding_window")) window = f.positiveInt("sliding_window");
  } else if (type === "qwen2" || type === "qwen3" || type === "qwen2_moe" || type === "qwen3_moe") {
    if (f.boolean("use_sliding_window", false) && f.has("sliding_window")) {
      window = f.positiveInt("sliding_window");
    }
  } else if (type === "gemma2") {
    window = f.positiveInt("sliding_window", 4096);
  } else if (f.has("sliding_window")) {
    window = f.positiveInt("sliding_window"); // phi3, mixtral
  }
  if (window === undefined) return undefined;
  const types = f.stringList("layer_types");
  let sliding: (l: number) => boolean;
  if (types) {
    if (types.length !== nLayers) {
      throw new FormatError(
        file,
        `config field "layer_types" has ${types.length} entries, expected ${nLayers}`,
      );
    }
    for (const [i, t] of types.entries()) {
      if (t !== "sliding_attention" && t !== "full_attention") {
        throw new FormatError(
          file,
          `config field "layer_types"[${i}] is ${JSON.stringify(t)}, expected ` +
            `"sliding_attention" or "full_attention"`,
        );
      }
    }
    sliding = (l) => types[l] === "sliding_attention";
  } else if (type === "gemma2") {
    sliding = (l) => l % 2 === 0;
  } else if (type === "qwen2" || type === "qwen3" || type === "qwen2_moe") {
    const from = f.nonNegativeInt("max_window_layers", 28);
    sliding = (l) => l >= from;
  } else {
    sliding = () => true;
  }
  const windows = Array.from({ length: nLayers }, (_, l) => (sliding(l) ? window! : 0));
  return windows.some((w) => w > 0) ? windows : undefined;
}

/** The Mixture-of-Experts section of the MoE families. */
function parseMoe(
  f: Fields,
  file: string,
  type: ModelType,
  nLayers: number,
  hiddenDim: number,
): MoeConfig | undefined {
  if (!["mixtral", "qwen2_moe", "qwen3_moe", "olmoe"].includes(type)) return undefined;
  const expertsField = type === "mixtral" ? "num_local_experts" : "num_experts";
  const nExperts = f.positiveInt(
    expertsField,
    { mixtral: 8, qwen2_moe: 60, qwen3_moe: 128, olmoe: 64 }[type as string]!,
  );
  const topK = f.positiveInt(
    "num_experts_per_tok",
    { mixtral: 2, qwen2_moe: 4, qwen3_moe: 8, olmoe: 8 }[type as string]!,
  );
  if (topK > nExperts) {
    throw new FormatError(
      file,
      `config: num_experts_per_tok ${topK} is more than ${expertsField} ${nExperts}`,
    );
  }
  if (type === "mixtral") {
    return { nExperts, topK, normTopK: true, expertHiddenDim: hiddenDim, denseLayers: [] };
  }
  const normTopK = f.boolean("norm_topk_prob", false);
  if (type === "olmoe") {
    return { nExperts, topK, normTopK, expertHiddenDim: hiddenDim, denseLayers: [] };
  }
  const step = f.positiveInt("decoder_sparse_step", 1);
  const mlpOnly = f.intList("mlp_only_layers");
  const denseLayers: number[] = [];
  for (let l = 0; l < nLayers; l++) {
    if (mlpOnly.includes(l) || (l + 1) % step !== 0) denseLayers.push(l);
  }
  const expertHiddenDim = f.positiveInt(
    "moe_intermediate_size",
    type === "qwen2_moe" ? 1408 : 768,
  );
  if (type === "qwen3_moe") {
    return { nExperts, topK, normTopK, expertHiddenDim, denseLayers };
  }
  const shared = f.nonNegativeInt("shared_expert_intermediate_size", 5632);
  return {
    nExperts,
    topK,
    normTopK,
    expertHiddenDim,
    ...(shared > 0 ? { sharedHiddenDim: shared } : {}),
    denseLayers,
  };
}
