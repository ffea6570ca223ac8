/**
 * A quantized decoder as one ONNX model for perplexity, a minimal Llama graph of plain ONNX ops:
 * `input_ids` `[1, T]` (int64; `T` fixed or symbolic) → `logits` `[1, T, vocab]`,
 * no KV cache, every op in the standard domain except the quantized linears, which are
 * `com.microsoft.MatMulNBits` (`matmulnbits.ts`, float32 scales: the packed weight exactly).
 *
 * Per block: RMSNorm as Mul → ReduceMean → Add ε → Sqrt → Div → Mul γ (the decomposition, not
 * `SimplifiedLayerNormalization`); q/k/v projections (+ `Add` for biases), Reshape to heads
 * (+ per-head q/k RMSNorm for Qwen3), Transpose; RoPE (`rotate_half`) from cos/sin tables of
 * our own `configRopeTable` (so `rope_scaling` is the forward pass's) gathered at positions
 * `Range(0, T)`; GQA by Unsqueeze → Expand → Reshape; scores MatMul · scale + a causal (and
 * sliding-window) mask computed from the positions (0 / −1e9), Softmax, MatMul v; o projection
 * and residual; SiLU-gated MLP as `g · Sigmoid(g) · u`; final norm and the classifier as `Gemm`
 * with `transB` (the tied embedding shared with the `Gather`).
 *
 * Linears not in the packed map are float `MatMul`s. onnxruntime-web 1.20.1's WASM kernel runs
 * MatMulNBits at 4 bits only (`matmulnbits_ort_test.ts`), so other widths are refused; its
 * WebGPU kernel is wrong for blocks above 32 (`matmulnbits_webgpu_test.ts`), which the report
 * flags. Features of the architecture description outside {@linkcode ONNX_DECODER_FEATURES} are
 * refused by name (`models/arch.ts`).
 *
 * @module
 */

import { UnsupportedConfigError } from "../core/errors.ts";
import type { PackedWeight } from "../core/quantizer.ts";
import { isHalfDtype } from "../core/storage_dtype.ts";
import { type ArchFeature, unsupportedFeatures } from "../models/arch.ts";
import { linearSite } from "../models/linears.ts";
import { configRopeTable } from "../models/rope.ts";
import type {
  DenseMlp,
  LinearKind,
  LlamaConfig,
  LlamaLayer,
  LlamaWeights,
  Matrix,
} from "../models/types.ts";
import { exportMatMulNBits } from "./matmulnbits.ts";
import { matMulNBitsNodes } from "./matmulnbits_graph.ts";
import {
  encodeOnnxModel,
  type OnnxAttributeValue,
  onnxInitializer,
  type OnnxNode,
  onnxNode,
  type OnnxTensor,
  onnxValueInfo,
} from "./onnx_proto.ts";
import { floatTensor, type RawTensor, rawTensor } from "../models/formats/tensor.ts";

/** The architecture features the ONNX exporter emits. */
export const ONNX_DECODER_FEATURES: readonly ArchFeature[] = [
  "qkvBias",
  "oBias",
  "mlpBias",
  "qkNormHead",
  "slidingWindow",
  "ropeScaling",
];

/** Bit-width of the MatMulNBits linears (the one onnxruntime-web 1.20.1's WASM kernel runs). */
export const ONNX_LINEAR_BITS = 4;

/** Options of {@linkcode onnxDecoder}. */
export interface OnnxDecoderOptions {
  /** `T`: a fixed token count or a symbolic dimension name (default `"T"`). */
  readonly tokens?: number | string;
  /** Rows of the RoPE tables, the longest input (default min(context, 4096)). */
  readonly positions?: number;
}

/** What the graph holds, for the manifest. */
export interface OnnxDecoderReport {
  readonly opset: Readonly<Record<string, number>>;
  readonly positions: number;
  readonly matMulNBits: number;
  readonly floatMatMuls: number;
  /** Distinct MatMulNBits block sizes. */
  readonly blockSizes: readonly number[];
  /** Deviations from our forward pass and runtime caveats. */
  readonly notes: readonly string[];
}

const OPSETS = { "": 17, "com.microsoft": 1 } as const;

/** A graph under construction: unique value names, nodes and initializers in order. */
class GraphBuilder {
  readonly nodes: OnnxNode[] = [];
  readonly initializers: OnnxTensor[] = [];
  #n = 0;
  #consts = new Map<string, string>();

  fresh(hint: string): string {
    return `${hint}_${this.#n++}`;
  }

  op(
    type: string,
    inputs: readonly string[],
    hint: string,
    attrs: Readonly<Record<string, OnnxAttributeValue>> = {},
  ): string {
    const out = this.fresh(hint);
    this.nodes.push(onnxNode(type, inputs, [out], attrs, { name: out }));
    return out;
  }

  init(name: string, t: RawTensor): string {
    this.initializers.push(onnxInitializer(name, t));
    return name;
  }

  /** A shared int64 constant. */
  i64(values: readonly number[], scalar = false): string {
    const key = `i64:${scalar}:${values.join(",")}`;
    const hit = this.#consts.get(key);
    if (hit) return hit;
    const name = this.init(
      this.fresh("const_i64"),
      rawTensor(
        "i64",
        "I64",
        scalar ? [] : [values.length],
        BigInt64Array.from(values.map(BigInt)),
      ),
    );
    this.#consts.set(key, name);
    return name;
  }

  /** A shared float32 scalar constant. */
  f32(value: number): string {
    const key = `f32:${value}`;
    const hit = this.#consts.get(key);
    if (hit) return hit;
    const name = this.init(this.fresh("const_f32"), floatTensor("f32", [value], [], "F32"));
    this.#consts.set(key, name);
    return name;
  }
}

/** The decoder graph under construction: the builder, its inputs and what it has counted. */
interface DecoderGraph {
  readonly g: GraphBuilder;
  readonly c: LlamaConfig;
  readonly packed: ReadonlyMap<string, PackedWeight>;
  /** RoPE cos/sin rows gathered at the positions. */
  readonly cos: string;
  readonly sin: string;
  /** `row − col` of the positions and its causal comparison, for the masks. */
  readonly diff: string;
  readonly causal: string;
  /** Attention masks by sliding window (0: causal only). */
  readonly masks: Map<number, string>;
  readonly blockSizes: Set<number>;
  readonly halfLinears: Set<string>;
  nbits: number;
  floats: number;
}

/**
 * The ONNX model (protobuf bytes) of a quantized decoder: `weights` as the model computes them,
 * with the linears in `packed` (our site names, `QuantizedModel.packed`) as MatMulNBits.
 *
 * @throws {UnsupportedConfigError} Naming every architecture feature the graph does not emit.
 * @throws {RangeError} For online rotations or activation quantization (not expressible here), a
 *   packed linear that is not 4-bit, whose group size is not a power of two ≥ 16, or with
 *   act-order groups.
 */
export function onnxDecoder(
  config: LlamaConfig,
  weights: LlamaWeights,
  packed: ReadonlyMap<string, PackedWeight> = new Map(),
  options: OnnxDecoderOptions = {},
): { model: Uint8Array; report: OnnxDecoderReport } {
  checkExportable(config, weights);
  const c = config;
  const positions = options.positions ?? Math.min(c.maxSeqLen, 4096);
  const g = new GraphBuilder();

  const embed = g.init(
    "embed_tokens",
    floatTensor("embed", w32(weights.embed), [c.vocabSize, c.dim], "F32"),
  );
  const flatIds = g.op("Reshape", ["input_ids", g.i64([-1])], "ids");
  let h = g.op("Gather", [embed, flatIds], "embedded", { axis: { int: 0 } });

  const s: DecoderGraph = {
    g,
    c,
    packed,
    ...positionValues(g, c, positions),
    masks: new Map(),
    blockSizes: new Set(),
    halfLinears: new Set(),
    nbits: 0,
    floats: 0,
  };
  for (let l = 0; l < c.nLayers; l++) {
    const layer = weights.layers[l]!;
    h = attentionBlock(s, h, layer, l);
    h = mlpBlock(s, h, layer, l);
  }
  logitsNodes(s, h, weights, embed);

  const notes = decoderNotes(s);
  const tokens = options.tokens ?? "T";
  const model = encodeOnnxModel({
    name: `lowbit ${c.family ?? "llama"} decoder`,
    nodes: g.nodes,
    initializers: g.initializers,
    inputs: [onnxValueInfo("input_ids", "I64", [1, tokens])],
    outputs: [onnxValueInfo("logits", "F32", [1, tokens, c.vocabSize])],
  }, { opsets: OPSETS });
  return {
    model,
    report: {
      opset: OPSETS,
      positions,
      matMulNBits: s.nbits,
      floatMatMuls: s.floats,
      blockSizes: [...s.blockSizes].sort((a, b) => a - b),
      notes,
    },
  };
}

/** Why the ONNX graph cannot express `config`'s architecture (the features it lacks), or undefined. */
export function onnxUnsupported(config: LlamaConfig): string | undefined {
  return unsupportedFeatures("the ONNX exporter", config, ONNX_DECODER_FEATURES);
}

/** Refuses architecture features, online rotations and activation quantizers the graph lacks. */
function checkExportable(config: LlamaConfig, weights: LlamaWeights): void {
  const why = onnxUnsupported(config);
  if (why) throw new UnsupportedConfigError(why);
  if (weights.online) {
    throw new RangeError("the ONNX exporter does not emit online rotations (QuaRot)");
  }
  if (weights.activations) {
    throw new RangeError(
      "the ONNX exporter writes weight-only models; this one quantizes activations",
    );
  }
}

/** Positions 0…T−1 and the tables and masks they index. */
function positionValues(
  g: GraphBuilder,
  c: LlamaConfig,
  positions: number,
): { cos: string; sin: string; diff: string; causal: string } {
  const hd = c.headDim;
  const shape = g.op("Shape", ["input_ids"], "ids_shape");
  const T = g.op("Gather", [shape, g.i64([1], true)], "T", { axis: { int: 0 } });
  const pos = g.op("Range", [g.i64([0], true), T, g.i64([1], true)], "positions");
  const { cosFull, sinFull } = fullRopeTables(c, positions);
  const cos = g.op(
    "Gather",
    [g.init("rope_cos", floatTensor("cos", cosFull, [positions, hd], "F32")), pos],
    "cos",
    { axis: { int: 0 } },
  );
  const sin = g.op(
    "Gather",
    [g.init("rope_sin", floatTensor("sin", sinFull, [positions, hd], "F32")), pos],
    "sin",
    { axis: { int: 0 } },
  );
  const rows = g.op("Unsqueeze", [pos, g.i64([1])], "pos_rows");
  const cols = g.op("Unsqueeze", [pos, g.i64([0])], "pos_cols");
  const diff = g.op("Sub", [rows, cols], "pos_diff");
  const causal = g.op("GreaterOrEqual", [diff, g.i64([0], true)], "causal");
  return { cos, sin, diff, causal };
}

/** Our `configRopeTable` widened to `[positions][headDim]` (each half-row repeated). */
function fullRopeTables(
  c: LlamaConfig,
  positions: number,
): { cosFull: Float32Array; sinFull: Float32Array } {
  const hd = c.headDim;
  const rope = configRopeTable(c, positions);
  const half = hd / 2;
  const cosFull = new Float32Array(positions * hd), sinFull = new Float32Array(positions * hd);
  for (let p = 0; p < positions; p++) {
    for (let i = 0; i < hd; i++) {
      cosFull[p * hd + i] = rope.cos[p * half + (i % half)]!;
      sinFull[p * hd + i] = rope.sin[p * half + (i % half)]!;
    }
  }
  return { cosFull, sinFull };
}

/** The additive attention mask (0 / −1e9) of a sliding window (0: causal only), built once. */
function maskFor(s: DecoderGraph, window: number): string {
  const { g } = s;
  const hit = s.masks.get(window);
  if (hit) return hit;
  const allowed = window > 0
    ? g.op("And", [s.causal, g.op("Less", [s.diff, g.i64([window], true)], "in_window")], "allowed")
    : s.causal;
  const m = g.op("Where", [allowed, g.f32(0), g.f32(-1e9)], `mask_w${window}`);
  s.masks.set(window, m);
  return m;
}

/** RMSNorm over the last axis as Mul → ReduceMean → Add ε → Sqrt → Div → Mul γ. */
function rmsnorm(s: DecoderGraph, x: string, weight: Float32Array, name: string): string {
  const { g } = s;
  const sq = g.op("Mul", [x, x], `${name}_sq`);
  const ms = g.op("ReduceMean", [sq], `${name}_ms`, {
    axes: { ints: [-1] },
    keepdims: { int: 1 },
  });
  const rs = g.op("Sqrt", [g.op("Add", [ms, g.f32(s.c.normEps)], `${name}_eps`)], `${name}_rms`);
  const w = g.init(`${name}.weight`, floatTensor(name, weight, [weight.length], "F32"));
  return g.op("Mul", [g.op("Div", [x, rs], `${name}_div`), w], name);
}

/** `x + bias`, or `x` without a bias. */
function addBias(g: GraphBuilder, x: string, bias: Float32Array | undefined, name: string): string {
  return bias
    ? g.op(
      "Add",
      [x, g.init(`${name}.bias`, floatTensor(name, bias, [bias.length], "F32"))],
      `${name}_biased`,
    )
    : x;
}

/** A linear of block `l`: MatMulNBits when packed (4-bit only), else a float MatMul. */
function linear(s: DecoderGraph, x: string, m: Matrix, l: number, kind: LinearKind): string {
  const { g } = s;
  const site = linearSite(l, kind).name;
  const p = s.packed.get(site);
  const out = g.fresh(site);
  if (p) {
    if (isHalfDtype(m.dtype)) s.halfLinears.add(m.dtype);
    if (p.bits !== ONNX_LINEAR_BITS) {
      throw new RangeError(
        `${site}: onnxruntime-web 1.20.1 runs MatMulNBits at 4 bits only (its WASM kernel ` +
          `refuses ${p.bits}); export a 4-bit model`,
      );
    }
    const mw = exportMatMulNBits(p, { name: site });
    s.blockSizes.add(mw.attributes.block_size);
    const { nodes, initializers } = matMulNBitsNodes(site, x, out, mw);
    g.nodes.push(...nodes);
    g.initializers.push(...initializers);
    s.nbits++;
    return out;
  }
  // Float linear: MatMul by the transposed weight [in][out].
  const d = w32(m);
  const t = new Float32Array(m.rows * m.cols);
  for (let o = 0; o < m.rows; o++) {
    for (let i = 0; i < m.cols; i++) t[i * m.rows + o] = d[o * m.cols + i]!;
  }
  const wt = g.init(`${site}.weight_t`, floatTensor(site, t, [m.cols, m.rows], "F32"));
  g.nodes.push(onnxNode("MatMul", [x, wt], [out], {}, { name: out }));
  s.floats++;
  return out;
}

/** `[T, n·hd]` → `[n, T, hd]` (with the per-head RMSNorm when given). */
function heads(s: DecoderGraph, x: string, n: number, name: string, norm?: Float32Array): string {
  const { g } = s;
  let r = g.op("Reshape", [x, g.i64([-1, n, s.c.headDim])], `${name}_heads`);
  if (norm) r = rmsnorm(s, r, norm, `${name}_norm`);
  return g.op("Transpose", [r], `${name}_t`, { perm: { ints: [1, 0, 2] } });
}

/** RoPE by `rotate_half`: `x · cos + [−x₂, x₁] · sin`. */
function applyRope(s: DecoderGraph, x: string, name: string): string {
  const { g } = s;
  const hd = s.c.headDim, half = hd / 2;
  const x1 = g.op("Slice", [x, g.i64([0]), g.i64([half]), g.i64([2])], `${name}_x1`);
  const x2 = g.op("Slice", [x, g.i64([half]), g.i64([hd]), g.i64([2])], `${name}_x2`);
  const rot = g.op("Concat", [g.op("Neg", [x2], `${name}_negx2`), x1], `${name}_rot`, {
    axis: { int: 2 },
  });
  return g.op("Add", [
    g.op("Mul", [x, s.cos], `${name}_cos`),
    g.op("Mul", [rot, s.sin], `${name}_sin`),
  ], `${name}_rope`);
}

/** GQA: each key/value head repeated for its query heads (Unsqueeze → Expand → Reshape). */
function repeatKv(s: DecoderGraph, x: string, name: string): string {
  const { g } = s;
  const { nHeads: H, nKvHeads: KV, headDim: hd } = s.c;
  if (H === KV) return x;
  const u = g.op("Unsqueeze", [x, g.i64([1])], `${name}_u`);
  const e = g.op("Expand", [u, g.i64([KV, H / KV, 1, 1])], `${name}_rep`);
  return g.op("Reshape", [e, g.i64([H, -1, hd])], `${name}_gqa`);
}

/** Block `l`'s attention and its residual: the new hidden state. */
function attentionBlock(s: DecoderGraph, h: string, layer: LlamaLayer, l: number): string {
  const { g, c } = s;
  const H = c.nHeads, KV = c.nKvHeads, hd = c.headDim;
  const scale = c.attnScale ?? 1 / Math.sqrt(hd);
  const p = `layers.${l}`;
  const xn = rmsnorm(s, h, layer.attnNorm, `${p}.attn_norm`);
  const q = addBias(g, linear(s, xn, layer.q, l, "q"), layer.qBias, `${p}.q`);
  const k = addBias(g, linear(s, xn, layer.k, l, "k"), layer.kBias, `${p}.k`);
  const v = addBias(g, linear(s, xn, layer.v, l, "v"), layer.vBias, `${p}.v`);
  const qh = applyRope(s, heads(s, q, H, `${p}.q`, layer.qNorm), `${p}.q`);
  const kh = repeatKv(s, applyRope(s, heads(s, k, KV, `${p}.k`, layer.kNorm), `${p}.k`), `${p}.k`);
  const vh = repeatKv(s, heads(s, v, KV, `${p}.v`), `${p}.v`);
  const kt = g.op("Transpose", [kh], `${p}.kT`, { perm: { ints: [0, 2, 1] } });
  const scores = g.op("Mul", [g.op("MatMul", [qh, kt], `${p}.qk`), g.f32(scale)], `${p}.scores`);
  const masked = g.op("Add", [scores, maskFor(s, c.slidingWindows?.[l] ?? 0)], `${p}.masked`);
  const probs = g.op("Softmax", [masked], `${p}.probs`, { axis: { int: -1 } });
  const ctx = g.op("MatMul", [probs, vh], `${p}.ctx`);
  const ctxT = g.op("Transpose", [ctx], `${p}.ctx_t`, { perm: { ints: [1, 0, 2] } });
  const att = g.op("Reshape", [ctxT, g.i64([-1, H * hd])], `${p}.att`);
  const o = addBias(g, linear(s, att, layer.o, l, "o"), layer.oBias, `${p}.o`);
  return g.op("Add", [h, o], `${p}.h_attn`);
}

/** Block `l`'s SiLU-gated MLP (`g · Sigmoid(g) · u`) and its residual: the new hidden state. */
function mlpBlock(s: DecoderGraph, h: string, layer: LlamaLayer, l: number): string {
  const { g } = s;
  const p = `layers.${l}`;
  const mlp = layer.mlp as DenseMlp;
  const xm = rmsnorm(s, h, layer.mlpNorm, `${p}.mlp_norm`);
  const gate = addBias(g, linear(s, xm, mlp.gate!, l, "gate"), mlp.gateBias, `${p}.gate`);
  const up = addBias(g, linear(s, xm, mlp.up, l, "up"), mlp.upBias, `${p}.up`);
  const act = g.op("Mul", [gate, g.op("Sigmoid", [gate], `${p}.sigmoid`)], `${p}.silu`);
  const hidden = g.op("Mul", [act, up], `${p}.hidden`);
  const down = addBias(g, linear(s, hidden, mlp.down, l, "down"), mlp.downBias, `${p}.down`);
  return g.op("Add", [h, down], `${p}.h_mlp`);
}

/** The final norm and the classifier `Gemm` (`transB`, the tied embedding shared) → `logits`. */
function logitsNodes(s: DecoderGraph, h: string, weights: LlamaWeights, embed: string): void {
  const { g, c } = s;
  const xf = rmsnorm(s, h, weights.norm, "final_norm");
  const head = weights.lmHead === weights.embed
    ? embed
    : g.init("lm_head", floatTensor("lm_head", w32(weights.lmHead), [c.vocabSize, c.dim], "F32"));
  const logits2 = g.op("Gemm", [xf, head], "logits_2d", { transB: { int: 1 } });
  g.nodes.push(
    onnxNode("Reshape", [logits2, g.i64([1, -1, c.vocabSize])], ["logits"], {}, { name: "logits" }),
  );
}

/** The report's notes: unrounded half-precision linears, WebGPU-unsafe block sizes. */
function decoderNotes(s: DecoderGraph): string[] {
  const notes: string[] = [];
  if (s.halfLinears.size > 0) {
    notes.push(
      `our model rounds dequantized linear weights to the checkpoint's ${
        [...s.halfLinears].join("/")
      }; ` +
        "the graph's linears compute them unrounded (float32)",
    );
  }
  if ([...s.blockSizes].some((b) => b > 32)) {
    notes.push(
      "MatMulNBits blocks above 32 compute wrong results on onnxruntime-web 1.20.1's WebGPU EP " +
        "(export/matmulnbits_webgpu_test.ts); run this model on the WASM EP",
    );
  }
  return notes;
}

/** A matrix's values as float32. */
function w32(m: Matrix): Float32Array {
  return m.data;
}
