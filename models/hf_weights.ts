/**
 * The tensors of a transformers checkpoint → {@linkcode LlamaWeights}, for every family of
 * `hf_config.ts`: each family's tensor names, fused tensors split (Phi-3 `qkv_proj` and
 * `gate_up_proj`), Gemma's `(1 + w)` norm weights folded, OPT's names mapped onto the shared
 * layout. Every tensor's presence and shape is checked against the config before it is read,
 * and a tensor the architecture does not use is an error (a config that disagrees with its
 * checkpoint must not load as a different model).
 *
 * Matrices are read eagerly into float32, or kept in their stored dtype and materialized on
 * access (`lazy_matrix.ts`) for checkpoints too large to hold in float32.
 *
 * @module
 */

import { FormatError } from "../core/errors.ts";
import { StoredMatrix } from "./lazy_matrix.ts";
import { readFloat32, type TensorStore } from "./tensor_store.ts";
import type {
  DenseMlp,
  LlamaConfig,
  LlamaLayer,
  LlamaWeights,
  Matrix,
  MoeConfig,
  MoeMlp,
} from "./types.ts";

/** Where the builder reads tensors from. */
export interface TensorSource {
  /** The tensor names present. */
  names(): Iterable<string>;
  /** Shape of a tensor, or `undefined` when absent. */
  shape(name: string): readonly number[] | undefined;
  /** Rows `[rowStart, rowStart + rows)` of a 2-D tensor with `cols` columns. */
  matrix(name: string, rows: number, cols: number, rowStart: number): Matrix;
  /** All values of a tensor, as a fresh float32 array. */
  vector(name: string): Float32Array;
  /**
   * Planning only: instead of checking a tensor against the source, record that the
   * architecture reads `name` with `shape` (see {@linkcode hfTensorSpecs}).
   */
  declare?(name: string, shape: readonly number[]): void;
}

/** A tensor the architecture reads: its name and shape. */
export interface TensorShape {
  readonly name: string;
  readonly shape: readonly number[];
}

/**
 * Every tensor a transformers checkpoint of `config` holds, in reading order (the inverse of
 * {@linkcode hfWeights}: one description of the names, for loaders, writers of synthetic
 * checkpoints and exporters). OPT names use the `model.decoder.` prefix.
 */
export function hfTensorSpecs(config: LlamaConfig): TensorShape[] {
  const specs: TensorShape[] = [];
  const empty = new Float32Array(0);
  hfWeights(config, {
    names: () => [],
    shape: () => undefined,
    matrix: (_name, rows, cols) => ({ rows, cols, data: empty }),
    vector: () => empty,
    declare: (name, shape) => specs.push({ name, shape: [...shape] }),
  }, "plan");
  return specs;
}

/** A source over a {@linkcode TensorStore}: lazy (stored dtype, read on access) or eager. */
export function storeSource(store: TensorStore, lazy: boolean): TensorSource {
  return {
    names: () => store.tensors.keys(),
    shape: (name) => store.tensors.get(name)?.shape,
    matrix: (name, rows, cols, rowStart) =>
      lazy ? new StoredMatrix(rows, cols, store, name, rowStart) : {
        rows,
        cols,
        data: readFloat32(store, name, rowStart * cols, (rowStart + rows) * cols).slice(),
        dtype: store.tensors.get(name)?.dtype ?? "F32",
      },
    vector: (name) => readFloat32(store, name).slice(),
  };
}

/** Tensor names of OPT checkpoints start with `model.decoder.` (or `decoder.` in some files). */
function optPrefix(src: TensorSource): string {
  const set = new Set(src.names());
  if (set.has("model.decoder.embed_tokens.weight")) return "model.decoder";
  if (set.has("decoder.embed_tokens.weight")) return "decoder";
  return "model.decoder";
}

/** Names a builder may leave unread: buffers some exporters save. */
const IGNORABLE = /(^|\.)rotary_emb\.inv_freq$|(^|\.)attn\.masked_bias$|(^|\.)attn\.bias$/;

/**
 * Builds the weights of a transformers checkpoint of `config`'s family from `src`.
 *
 * @param config The parsed config (`parseHfConfig`).
 * @param src The checkpoint's tensors.
 * @param file The checkpoint file(s), for error messages.
 * @returns The weights; `lmHead` is `embed` when tied.
 * @throws {FormatError} Naming the tensor and the expected and actual shape when one is missing
 *   or misshapen, or naming a tensor the config's architecture does not use.
 */
export function hfWeights(config: LlamaConfig, src: TensorSource, file: string): LlamaWeights {
  const { dim, vocabSize } = config;
  const family = config.family ?? "llama";
  const r = new TensorReader(src, file, family === "gemma2");
  const opt = family === "opt";
  const root = opt ? optPrefix(src) : "model";
  const embed = r.matrix(`${root}.embed_tokens.weight`, vocabSize, dim);
  const layers: LlamaLayer[] = [];
  for (let i = 0; i < config.nLayers; i++) {
    layers.push(readLayer(r, config, family, `${root}.layers.${i}`, i));
  }
  const normName = opt ? `${root}.final_layer_norm` : `${root}.norm`;
  const norm = r.vector(`${normName}.weight`, dim);
  const normBias = opt ? r.vector(`${normName}.bias`, dim) : undefined;
  const positions = opt
    ? r.matrix(`${root}.embed_positions.weight`, config.maxSeqLen + 2, dim)
    : undefined;
  let lmHead: Matrix;
  if (config.tiedEmbeddings) {
    lmHead = embed;
    // A tied checkpoint may still store the classifier; transformers ties it to the embedding.
    if (src.shape("lm_head.weight") !== undefined) r.used.add("lm_head.weight");
  } else {
    lmHead = r.matrix("lm_head.weight", vocabSize, dim);
  }
  checkAllUsed(src, r.used, file, family);
  return {
    embed,
    layers,
    norm,
    ...(normBias ? { normBias } : {}),
    ...(positions ? { positions } : {}),
    lmHead,
  };
}

/** Shape-checked reads from a {@linkcode TensorSource}, recording the tensors used. */
class TensorReader {
  /** The names of the tensors read (or declared) so far. */
  readonly used = new Set<string>();

  constructor(
    readonly src: TensorSource,
    readonly file: string,
    /** Gemma: fold the `(1 + w)` of its RMSNorms into the norm weights. */
    readonly gemma: boolean,
  ) {}

  /** Checks that tensor `name` has `shape` (or declares it, when planning) and marks it used. */
  check(name: string, shape: readonly number[]): void {
    const src = this.src;
    if (src.declare) {
      src.declare(name, shape);
      this.used.add(name);
      return;
    }
    const expected = `[${shape.join(", ")}]`;
    const got = src.shape(name);
    if (got === undefined) {
      throw new FormatError(this.file, `tensor "${name}" is missing (expected shape ${expected})`);
    }
    if (got.length !== shape.length || got.some((d, i) => d !== shape[i])) {
      throw new FormatError(
        this.file,
        `tensor "${name}" has shape [${got.join(", ")}], expected ${expected}`,
      );
    }
    this.used.add(name);
  }

  /** A whole 2-D tensor of shape `[rows, cols]`. */
  matrix(name: string, rows: number, cols: number): Matrix {
    this.check(name, [rows, cols]);
    return this.src.matrix(name, rows, cols, 0);
  }

  /** Consecutive row blocks of one fused tensor, as separate matrices. */
  split(name: string, parts: readonly number[], cols: number): Matrix[] {
    const rows = parts.reduce((a, b) => a + b, 0);
    this.check(name, [rows, cols]);
    let at = 0;
    return parts.map((n) => {
      const m = this.src.matrix(name, n, cols, at);
      at += n;
      return m;
    });
  }

  /** A 1-D tensor of `n` values (Gemma's norm weights folded to `1 + w`). */
  vector(name: string, n: number): Float32Array {
    this.check(name, [n]);
    if (this.src.declare) return this.src.vector(name);
    const v = this.src.vector(name);
    // Gemma's RMSNorm multiplies by (1 + w), computed in float32: folded here once.
    return this.gemma && /norm\.weight$/.test(name) ? v.map((x) => Math.fround(1 + x)) : v;
  }

  /** A bias vector when `present`, else undefined (nothing read). */
  bias(name: string, n: number, present: boolean | undefined): Float32Array | undefined {
    return present ? this.vector(name, n) : undefined;
  }
}

/** The gated MLP projections' names in most families. */
const PROJ = ["gate_proj", "up_proj", "down_proj"] as const;

/** One decoder block under prefix `p` (layer `i`): MLP, attention, norms, then biases and o. */
function readLayer(
  r: TensorReader,
  config: LlamaConfig,
  family: string,
  p: string,
  i: number,
): LlamaLayer {
  const { dim, headDim } = config;
  const opt = family === "opt";
  const qDim = config.nHeads * headDim;
  const kvDim = config.nKvHeads * headDim;
  const a = `${p}.self_attn`;
  const mlp = readMlp(r, config, family, p, i);
  let q: Matrix, k: Matrix, v: Matrix;
  if (family === "phi3") {
    [q, k, v] = r.split(`${a}.qkv_proj.weight`, [qDim, kvDim, kvDim], dim) as [
      Matrix,
      Matrix,
      Matrix,
    ];
  } else {
    q = r.matrix(`${a}.q_proj.weight`, qDim, dim);
    k = r.matrix(`${a}.k_proj.weight`, kvDim, dim);
    v = r.matrix(`${a}.v_proj.weight`, kvDim, dim);
  }
  const oName = opt ? `${a}.out_proj` : `${a}.o_proj`;
  const qkNorm = config.qkNorm === "head"
    ? {
      qNorm: r.vector(`${a}.q_norm.weight`, headDim),
      kNorm: r.vector(`${a}.k_norm.weight`, headDim),
    }
    : config.qkNorm === "projection"
    ? { qNorm: r.vector(`${a}.q_norm.weight`, qDim), kNorm: r.vector(`${a}.k_norm.weight`, kvDim) }
    : {};
  const norms = readLayerNorms(r, family, p, dim);
  const qBias = r.bias(`${a}.q_proj.bias`, qDim, config.qkvBias);
  const kBias = r.bias(`${a}.k_proj.bias`, kvDim, config.qkvBias);
  const vBias = r.bias(`${a}.v_proj.bias`, kvDim, config.qkvBias);
  const oBias = r.bias(`${oName}.bias`, dim, config.oBias);
  return {
    ...norms,
    q,
    k,
    v,
    o: r.matrix(`${oName}.weight`, dim, qDim),
    ...(qBias ? { qBias } : {}),
    ...(kBias ? { kBias } : {}),
    ...(vBias ? { vBias } : {}),
    ...(oBias ? { oBias } : {}),
    ...qkNorm,
    mlp,
  };
}

/** A block's norms: OPT's LayerNorms, Gemma's sandwich norms or the pre-attention/MLP pair. */
function readLayerNorms(
  r: TensorReader,
  family: string,
  p: string,
  dim: number,
): Pick<
  LlamaLayer,
  "attnNorm" | "attnNormBias" | "postAttnNorm" | "mlpNorm" | "mlpNormBias" | "postMlpNorm"
> {
  if (family === "opt") {
    return {
      attnNorm: r.vector(`${p}.self_attn_layer_norm.weight`, dim),
      attnNormBias: r.vector(`${p}.self_attn_layer_norm.bias`, dim),
      mlpNorm: r.vector(`${p}.final_layer_norm.weight`, dim),
      mlpNormBias: r.vector(`${p}.final_layer_norm.bias`, dim),
    };
  }
  if (family === "gemma2") {
    return {
      attnNorm: r.vector(`${p}.input_layernorm.weight`, dim),
      postAttnNorm: r.vector(`${p}.post_attention_layernorm.weight`, dim),
      mlpNorm: r.vector(`${p}.pre_feedforward_layernorm.weight`, dim),
      postMlpNorm: r.vector(`${p}.post_feedforward_layernorm.weight`, dim),
    };
  }
  return {
    attnNorm: r.vector(`${p}.input_layernorm.weight`, dim),
    mlpNorm: r.vector(`${p}.post_attention_layernorm.weight`, dim),
  };
}

/** The feed-forward block of layer `i`: OPT fc1/fc2, Phi-3 fused gate_up, MoE or dense. */
function readMlp(
  r: TensorReader,
  config: LlamaConfig,
  family: string,
  p: string,
  i: number,
): DenseMlp | MoeMlp {
  const { dim, hiddenDim } = config;
  const moe = config.moe;
  if (family === "opt") {
    return {
      kind: "dense",
      up: r.matrix(`${p}.fc1.weight`, hiddenDim, dim),
      down: r.matrix(`${p}.fc2.weight`, dim, hiddenDim),
      ...(config.mlpBias
        ? { upBias: r.vector(`${p}.fc1.bias`, hiddenDim), downBias: r.vector(`${p}.fc2.bias`, dim) }
        : {}),
    };
  }
  if (family === "phi3") {
    const [gate, up] = r.split(`${p}.mlp.gate_up_proj.weight`, [hiddenDim, hiddenDim], dim);
    return {
      kind: "dense",
      gate: gate!,
      up: up!,
      down: r.matrix(`${p}.mlp.down_proj.weight`, dim, hiddenDim),
    };
  }
  if (moe && !moe.denseLayers.includes(i)) return readMoe(r, config, family, p, moe);
  return readDense(r, config, `${p}.mlp`, PROJ, hiddenDim);
}

/**
 * A Mixture-of-Experts block. Mixtral: block_sparse_moe.{gate, experts.e.w1/w3/w2}; Qwen2-MoE,
 * Qwen3-MoE and OLMoE: mlp.{gate, experts.e.gate_proj/up_proj/down_proj}.
 */
function readMoe(
  r: TensorReader,
  config: LlamaConfig,
  family: string,
  p: string,
  moe: MoeConfig,
): MoeMlp {
  const mixtral = family === "mixtral";
  const block = mixtral ? `${p}.block_sparse_moe` : `${p}.mlp`;
  const names = mixtral ? ["w1", "w3", "w2"] as const : PROJ;
  const extra = `${block}.experts.${moe.nExperts}.${names[0]}.weight`;
  if (r.src.shape(extra) !== undefined) {
    throw new FormatError(
      r.file,
      `tensor "${extra}" exists but the config declares ${moe.nExperts} experts`,
    );
  }
  const experts: DenseMlp[] = [];
  for (let e = 0; e < moe.nExperts; e++) {
    experts.push(readDense(r, config, `${block}.experts.${e}`, names, moe.expertHiddenDim));
  }
  const router = r.matrix(`${block}.gate.weight`, moe.nExperts, config.dim);
  return moe.sharedHiddenDim === undefined ? { kind: "moe", router, experts } : {
    kind: "moe",
    router,
    experts,
    shared: readDense(r, config, `${block}.shared_expert`, PROJ, moe.sharedHiddenDim),
    sharedGate: r.matrix(`${block}.shared_expert_gate.weight`, 1, config.dim),
  };
}

/** A gated dense MLP under prefix `p` with projections `names` (gate, up, down). */
function readDense(
  r: TensorReader,
  config: LlamaConfig,
  p: string,
  names: readonly [string, string, string],
  hidden: number,
): DenseMlp {
  const dim = config.dim;
  return {
    kind: "dense",
    gate: r.matrix(`${p}.${names[0]}.weight`, hidden, dim),
    up: r.matrix(`${p}.${names[1]}.weight`, hidden, dim),
    down: r.matrix(`${p}.${names[2]}.weight`, dim, hidden),
    ...(config.mlpBias
      ? {
        gateBias: r.vector(`${p}.${names[0]}.bias`, hidden),
        upBias: r.vector(`${p}.${names[1]}.bias`, hidden),
        downBias: r.vector(`${p}.${names[2]}.bias`, dim),
      }
      : {}),
  };
}

/** Refuses tensors of `src` that were not read (except {@linkcode IGNORABLE} buffers). */
function checkAllUsed(
  src: TensorSource,
  used: ReadonlySet<string>,
  file: string,
  family: string,
): void {
  const unused = [...src.names()].filter((n) => !used.has(n) && !IGNORABLE.test(n));
  if (unused.length > 0) {
    const shown = unused.slice(0, 5).map((n) => `"${n}"`).join(", ");
    throw new FormatError(
      file,
      `${unused.length} tensor(s) are not used by the ${family} architecture the config ` +
        `describes (${shown}${unused.length > 5 ? ", …" : ""}): the config and the checkpoint ` +
        `disagree (e.g. a bias, norm or expert the config does not declare)`,
    );
  }
}

/**
 * Builds the weights from float32 tensor getters (eagerly): `get` returns a tensor's values,
 * `shapeOf` its shape, both `undefined` when absent; `names` lists every tensor (default: not
 * checked for unused tensors).
 */
export function hfWeightsFromTensors(
  config: LlamaConfig,
  get: (name: string) => Float32Array | undefined,
  shapeOf: (name: string) => number[] | undefined,
  file: string,
  names: Iterable<string> = [],
): LlamaWeights {
  const read = (name: string) => {
    const data = get(name);
    if (data === undefined) throw new FormatError(file, `tensor "${name}" is missing`);
    const n = (shapeOf(name) ?? []).reduce((a, b) => a * b, 1);
    if (data.length !== n) {
      throw new FormatError(
        file,
        `tensor "${name}" has ${data.length} values, expected ${n} for shape [${shapeOf(name)}]`,
      );
    }
    return data;
  };
  return hfWeights(config, {
    names: () => names,
    shape: shapeOf,
    matrix: (name, rows, cols, rowStart) => {
      const data = read(name);
      if (data.length < (rowStart + rows) * cols) {
        throw new FormatError(file, `tensor "${name}" has ${data.length} values`);
      }
      return { rows, cols, data: data.subarray(rowStart * cols, (rowStart + rows) * cols) };
    },
    vector: (name) => read(name).slice(),
  }, file);
}
