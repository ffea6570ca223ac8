/**
 * Hugging Face transformers checkpoints: `config.json` of `LlamaForCausalLM` (`model_type`
 * `llama`), `MixtralForCausalLM` (`mixtral`), `Qwen2MoeForCausalLM` (`qwen2_moe`) and
 * `OlmoeForCausalLM` (`olmoe`) into a {@linkcode LlamaConfig}, and the tensors of
 * `model.safetensors` into {@linkcode LlamaWeights}.
 *
 * Defaults of absent fields are transformers' own (`LlamaConfig`, `MixtralConfig`).
 *
 * @module
 */

import { FormatError, UnsupportedConfigError } from "../core/errors.ts";
import type { DenseMlp, LlamaConfig, LlamaLayer, LlamaWeights, Matrix, MoeMlp } from "./types.ts";
import { describe, isRecord } from "../core/describe.ts";

/** The `model_type` values {@linkcode parseHfConfig} understands. */
export const SUPPORTED_MODEL_TYPES = ["llama", "mixtral", "qwen2_moe", "olmoe"] as const;

/** transformers' defaults per model type, for fields that may be absent. */
const DEFAULTS = {
  llama: { rmsNormEps: 1e-6, ropeTheta: 10000, maxPositions: 2048 },
  mixtral: { rmsNormEps: 1e-5, ropeTheta: 1e6, maxPositions: 4096 * 32 },
  qwen2_moe: { rmsNormEps: 1e-6, ropeTheta: 10000, maxPositions: 32768 },
  olmoe: { rmsNormEps: 1e-5, ropeTheta: 10000, maxPositions: 4096 },
} as const;

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

  boolean(name: string, fallback: boolean): boolean {
    const v = this.#value(name, "a boolean", fallback);
    if (v === undefined) return fallback;
    if (typeof v !== "boolean") throw this.#wrong(name, "a boolean");
    return v;
  }
}

/**
 * Parses a transformers `config.json` of a Llama (`model_type: "llama"`), Mixtral
 * (`"mixtral"`), Qwen2-MoE (`"qwen2_moe"`) or OLMoE (`"olmoe"`) model.
 *
 * Required: `model_type`, `hidden_size`, `intermediate_size`, `num_hidden_layers`,
 * `num_attention_heads`, `vocab_size`. Defaults: `num_key_value_heads` = heads,
 * `head_dim` = hidden_size / heads, `tie_word_embeddings` false, and per model type
 * `rms_norm_eps` (llama, qwen2_moe 1e-6; mixtral, olmoe 1e-5), `rope_theta` (mixtral 1e6, else
 * 10000), `max_position_embeddings` (llama 2048, mixtral 131072, qwen2_moe 32768, olmoe 4096).
 * MoE fields, with transformers' defaults:
 * - Mixtral: `num_local_experts` 8, `num_experts_per_tok` 2, renormalised top-k;
 * - Qwen2-MoE: `num_experts` 60, `num_experts_per_tok` 4, `norm_topk_prob` false,
 *   `moe_intermediate_size` 1408 (routed experts), `shared_expert_intermediate_size` 5632 (the
 *   sigmoid-gated shared expert), `decoder_sparse_step` 1 and `mlp_only_layers` [] (the other
 *   layers have a dense MLP of `intermediate_size`), q/k/v biases (`qkv_bias`, default true);
 * - OLMoE: `num_experts` 64, `num_experts_per_tok` 8, `norm_topk_prob` false, RMSNorm over the
 *   q and k projections, `clip_qkv` (none by default), experts of `intermediate_size`.
 * RoPE style is `half` (transformers' `rotate_half`).
 *
 * @param json The parsed JSON.
 * @param file The file's name or path, for error messages.
 * @returns The model's hyper-parameters.
 * @throws {FormatError} For a missing or ill-typed field, an unknown `model_type` or a top-k
 *   larger than the expert count.
 * @throws {UnsupportedConfigError} For features the forward pass does not implement
 *   (`rope_scaling`, a sliding window, biases other than Qwen2's q/k/v ones, an activation other
 *   than SiLU).
 */
export function parseHfConfig(json: unknown, file: string): LlamaConfig {
  if (!isRecord(json)) {
    throw new FormatError(file, `config must be a JSON object, got ${describe(json)}`);
  }
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
  const type = modelType as typeof SUPPORTED_MODEL_TYPES[number];
  const defaults = DEFAULTS[type];
  const f = new Fields(json, file);
  const unsupported = (message: string) =>
    new UnsupportedConfigError(`${file}: ${message} is not supported yet`);

  const dim = f.positiveInt("hidden_size");
  const hiddenDim = f.positiveInt("intermediate_size");
  const nLayers = f.positiveInt("num_hidden_layers");
  const nHeads = f.positiveInt("num_attention_heads");
  const vocabSize = f.positiveInt("vocab_size");
  const nKvHeads = f.positiveInt("num_key_value_heads", nHeads);
  if (nHeads % nKvHeads !== 0) {
    throw new FormatError(
      file,
      `config: num_attention_heads ${nHeads} is not divisible by num_key_value_heads ${nKvHeads}`,
    );
  }
  if (json.head_dim === undefined || json.head_dim === null) {
    if (dim % nHeads !== 0) {
      throw new FormatError(
        file,
        `config: hidden_size ${dim} is not divisible by num_attention_heads ${nHeads} ` +
          `and no "head_dim" is given`,
      );
    }
  }
  const headDim = f.positiveInt("head_dim", dim / nHeads);
  if (headDim % 2 !== 0) {
    throw new FormatError(file, `config: head_dim ${headDim} must be even for RoPE`);
  }

  let ropeTheta = f.positiveNumber("rope_theta", defaults.ropeTheta);
  const ropeScaling = json.rope_scaling;
  if (ropeScaling !== undefined && ropeScaling !== null && !isDefaultRope(ropeScaling)) {
    throw unsupported(`rope_scaling ${describe(ropeScaling)}`);
  }
  // transformers v5 writes rope_theta and the scaling type into "rope_parameters".
  const ropeParameters = json.rope_parameters;
  if (ropeParameters !== undefined && ropeParameters !== null) {
    if (!isRecord(ropeParameters)) {
      throw new FormatError(
        file,
        `config field "rope_parameters" must be an object, got ${describe(ropeParameters)}`,
      );
    }
    if (!isDefaultRope(ropeParameters)) {
      throw unsupported(`rope_parameters ${describe(ropeParameters)}`);
    }
    if (ropeParameters.rope_theta !== undefined) {
      ropeTheta = new Fields(ropeParameters, file).positiveNumber("rope_theta");
    }
  }

  const hiddenAct = json.hidden_act;
  if (hiddenAct !== undefined && hiddenAct !== null && hiddenAct !== "silu") {
    throw unsupported(`hidden_act ${describe(hiddenAct)} (only "silu")`);
  }
  for (const bias of ["attention_bias", "mlp_bias"]) {
    if (f.boolean(bias, false)) throw unsupported(`${bias}: true`);
  }
  const maxSeqLen = f.positiveInt("max_position_embeddings", defaults.maxPositions);
  const window = json.sliding_window;
  // Qwen2 configs carry a sliding_window that is used only with use_sliding_window.
  const windowUsed = type !== "qwen2_moe" || f.boolean("use_sliding_window", false);
  if (windowUsed && window !== undefined && window !== null) {
    const w = f.positiveInt("sliding_window");
    if (w < maxSeqLen) throw unsupported(`sliding_window ${w} (attention over all positions only)`);
  }

  const base = {
    dim,
    hiddenDim,
    nLayers,
    nHeads,
    nKvHeads,
    headDim,
    vocabSize,
    maxSeqLen,
    normEps: f.positiveNumber("rms_norm_eps", defaults.rmsNormEps),
    ropeTheta,
    ropeStyle: "half",
    tiedEmbeddings: f.boolean("tie_word_embeddings", false),
  } as const;
  if (type === "llama") return base;
  const expertsField = type === "mixtral" ? "num_local_experts" : "num_experts";
  const nExperts = f.positiveInt(expertsField, { mixtral: 8, qwen2_moe: 60, olmoe: 64 }[type]);
  const topK = f.positiveInt("num_experts_per_tok", { mixtral: 2, qwen2_moe: 4, olmoe: 8 }[type]);
  if (topK > nExperts) {
    throw new FormatError(
      file,
      `config: num_experts_per_tok ${topK} is more than ${expertsField} ${nExperts}`,
    );
  }
  if (type === "mixtral") {
    return {
      ...base,
      moe: { nExperts, topK, normTopK: true, expertHiddenDim: hiddenDim, denseLayers: [] },
    };
  }
  const normTopK = f.boolean("norm_topk_prob", false);
  if (type === "olmoe") {
    const clip = json.clip_qkv;
    return {
      ...base,
      qkNorm: true,
      ...(clip === undefined || clip === null ? {} : { clipQkv: f.positiveNumber("clip_qkv") }),
      moe: { nExperts, topK, normTopK, expertHiddenDim: hiddenDim, denseLayers: [] },
    };
  }
  // qwen2_moe
  const step = f.positiveInt("decoder_sparse_step", 1);
  const mlpOnly = f.intList("mlp_only_layers");
  const denseLayers: number[] = [];
  for (let l = 0; l < nLayers; l++) {
    if (mlpOnly.includes(l) || (l + 1) % step !== 0) denseLayers.push(l);
  }
  const shared = f.nonNegativeInt("shared_expert_intermediate_size", 5632);
  return {
    ...base,
    qkvBias: f.boolean("qkv_bias", true),
    moe: {
      nExperts,
      topK,
      normTopK,
      expertHiddenDim: f.positiveInt("moe_intermediate_size", 1408),
      ...(shared > 0 ? { sharedHiddenDim: shared } : {}),
      denseLayers,
    },
  };
}

function isDefaultRope(value: unknown): boolean {
  if (!isRecord(value)) return false;
  const type = value.rope_type ?? value.type;
  return type === "default" &&
    Object.keys(value).every((k) => ["rope_type", "type", "rope_theta"].includes(k));
}

/**
 * Builds the weights of a transformers Llama, Mixtral, Qwen2-MoE or OLMoE checkpoint from its
 * tensors, checking every tensor's presence and shape against the config before reading it.
 *
 * Names: `model.embed_tokens.weight`, `model.layers.{i}.input_layernorm.weight`,
 * `.self_attn.{q,k,v,o}_proj.weight` (+ `.self_attn.{q,k,v}_proj.bias` with `qkvBias`,
 * `.self_attn.{q,k}_norm.weight` with `qkNorm`), `.post_attention_layernorm.weight`,
 * `.mlp.{gate,up,down}_proj.weight` (dense), `.block_sparse_moe.gate.weight` and
 * `.block_sparse_moe.experts.{e}.{w1,w3,w2}.weight` (Mixtral: gate, up, down) or
 * `.mlp.gate.weight` and `.mlp.experts.{e}.{gate,up,down}_proj.weight` (Qwen2-MoE, OLMoE; with
 * `.mlp.shared_expert.{gate,up,down}_proj.weight` and `.mlp.shared_expert_gate.weight` when the
 * config has a shared expert), `model.norm.weight` and `lm_head.weight` (not read when the
 * embeddings are tied). A tensor of an expert beyond the config's count is an error.
 *
 * The q/k rows stay in transformers' order (the `half` RoPE layout); nothing is permuted.
 *
 * @param config The parsed config.
 * @param get Float32 values of a tensor, or `undefined` when absent.
 * @param shapeOf Shape of a tensor, or `undefined` when absent.
 * @param file The checkpoint file(s), for error messages.
 * @returns The weights; `lmHead` is `embed` when tied.
 * @throws {FormatError} Naming the tensor, the expected and the actual shape.
 */
export function hfWeightsFromTensors(
  config: LlamaConfig,
  get: (name: string) => Float32Array | undefined,
  shapeOf: (name: string) => number[] | undefined,
  file: string,
): LlamaWeights {
  const { dim, hiddenDim, vocabSize, headDim } = config;
  const qDim = config.nHeads * headDim;
  const kvDim = config.nKvHeads * headDim;

  const read = (name: string, shape: number[]): Float32Array => {
    const expected = `[${shape.join(", ")}]`;
    const got = shapeOf(name);
    if (got === undefined) {
      throw new FormatError(file, `tensor "${name}" is missing (expected shape ${expected})`);
    }
    if (got.length !== shape.length || got.some((d, i) => d !== shape[i])) {
      throw new FormatError(
        file,
        `tensor "${name}" has shape [${got.join(", ")}], expected ${expected}`,
      );
    }
    const data = get(name);
    const n = shape.reduce((a, b) => a * b, 1);
    if (data === undefined) {
      throw new FormatError(file, `tensor "${name}" is missing (expected shape ${expected})`);
    }
    if (data.length !== n) {
      throw new FormatError(
        file,
        `tensor "${name}" has ${data.length} values, expected ${n} for shape ${expected}`,
      );
    }
    return data;
  };
  const matrix = (name: string, rows: number, cols: number): Matrix => ({
    rows,
    cols,
    data: read(name, [rows, cols]),
  });
  const vector = (name: string, n: number): Float32Array => read(name, [n]);

  const embed = matrix("model.embed_tokens.weight", vocabSize, dim);
  const dense = (p: string, names: readonly [string, string, string], hidden: number) => ({
    kind: "dense" as const,
    gate: matrix(`${p}.${names[0]}.weight`, hidden, dim),
    up: matrix(`${p}.${names[1]}.weight`, hidden, dim),
    down: matrix(`${p}.${names[2]}.weight`, dim, hidden),
  });
  const PROJ = ["gate_proj", "up_proj", "down_proj"] as const;
  const layers: LlamaLayer[] = [];
  for (let i = 0; i < config.nLayers; i++) {
    const p = `model.layers.${i}`;
    let mlp: DenseMlp | MoeMlp;
    const moe = config.moe;
    if (moe && !moe.denseLayers.includes(i)) {
      // Mixtral: block_sparse_moe.{gate, experts.e.w1/w3/w2}; Qwen2-MoE and OLMoE:
      // mlp.{gate, experts.e.gate_proj/up_proj/down_proj}.
      const mixtral = shapeOf(`${p}.block_sparse_moe.gate.weight`) !== undefined;
      const block = mixtral ? `${p}.block_sparse_moe` : `${p}.mlp`;
      const names = mixtral ? ["w1", "w3", "w2"] as const : PROJ;
      const extra = `${block}.experts.${moe.nExperts}.${names[0]}.weight`;
      if (shapeOf(extra) !== undefined) {
        throw new FormatError(
          file,
          `tensor "${extra}" exists but the config declares ${moe.nExperts} experts`,
        );
      }
      const experts: DenseMlp[] = [];
      for (let e = 0; e < moe.nExperts; e++) {
        experts.push(dense(`${block}.experts.${e}`, names, moe.expertHiddenDim));
      }
      const router = matrix(`${block}.gate.weight`, moe.nExperts, dim);
      mlp = moe.sharedHiddenDim === undefined ? { kind: "moe", router, experts } : {
        kind: "moe",
        router,
        experts,
        shared: dense(`${block}.shared_expert`, PROJ, moe.sharedHiddenDim),
        sharedGate: matrix(`${block}.shared_expert_gate.weight`, 1, dim),
      };
    } else {
      mlp = dense(`${p}.mlp`, PROJ, hiddenDim);
    }
    const a = `${p}.self_attn`;
    layers.push({
      attnNorm: vector(`${p}.input_layernorm.weight`, dim),
      q: matrix(`${a}.q_proj.weight`, qDim, dim),
      k: matrix(`${a}.k_proj.weight`, kvDim, dim),
      v: matrix(`${a}.v_proj.weight`, kvDim, dim),
      o: matrix(`${a}.o_proj.weight`, dim, qDim),
      ...(config.qkvBias
        ? {
          qBias: vector(`${a}.q_proj.bias`, qDim),
          kBias: vector(`${a}.k_proj.bias`, kvDim),
          vBias: vector(`${a}.v_proj.bias`, kvDim),
        }
        : {}),
      ...(config.qkNorm
        ? { qNorm: vector(`${a}.q_norm.weight`, qDim), kNorm: vector(`${a}.k_norm.weight`, kvDim) }
        : {}),
      mlpNorm: vector(`${p}.post_attention_layernorm.weight`, dim),
      mlp,
    });
  }
  const norm = vector("model.norm.weight", dim);
  const lmHead = config.tiedEmbeddings ? embed : matrix("lm_head.weight", vocabSize, dim);
  return { embed, layers, norm, lmHead };
}
