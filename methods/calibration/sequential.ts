/**
 * The sequential layer-wise calibration pipeline every calibration-based method shares
 * (IST-DASLab/gptq `llama.py` `llama_sequential`: blocks in order, each calibrated on the outputs
 * of the already quantized blocks before it, so errors propagate).
 *
 * Calibration windows are embedded once; then decoder blocks are processed one at a time:
 * 1. For each stage of the block — with `trueSequential`, {q, k, v} → {o} → {gate, up} → {down};
 *    without it, all seven linears at once — run every window through the block as it is now
 *    (earlier stages already quantized) and accumulate the Gram matrix `Σ x xᵀ` of each linear's
 *    inputs over all calibration tokens (q, k and v share one input, as do gate and up).
 * 2. Hand each linear of the stage, with its Gram matrix, to the method's quantizer; the
 *    quantized weight replaces the original at once.
 * 3. Run every window through the fully quantized block: these outputs are the next block's
 *    inputs, so quantization errors propagate as they will at inference.
 *
 * Memory: the hidden states of all windows at one block boundary, plus one block's Gram matrices
 * (in MoE blocks one expert's at a time), plus the rows a merged MoE product holds (bounded, see
 * `DOWN_STAGE_BYTES` and `MERGED_ROWS`).
 * Every linear also gets a diagnostic: the relative output reconstruction error on the inputs it
 * was calibrated with, `‖(W − Ŵ)X‖² / ‖WX‖² = tr(ΔW G ΔWᵀ) / tr(W G Wᵀ)` with `G = Σ x xᵀ`.
 *
 * MoE blocks are processed in stages {q,k,v} → {o} → {every expert's gate, up} → {every expert's
 * down} (also without `trueSequential`): each expert is calibrated on the tokens the (full-
 * precision) router sends to it in the block as quantized so far. An expert that receives no
 * calibration token is calibrated on every token of the block's router input instead (EAQuant's
 * fallback rule; never an empty Gram matrix or a NaN scale); the diagnostics carry each expert's
 * token count and the fallbacks. The router itself is not quantized here.
 *
 * @module
 */

import { noteMaterialized } from "../../models/residency.ts";
import { UnsupportedConfigError } from "../../core/errors.ts";
import { dequantizePacked, type PackedWeight } from "../../core/quantizer.ts";
import { isLazy, PackedMatrix } from "../../models/lazy_matrix.ts";
import type { Kernels } from "../../kernels/types.ts";
import {
  attnInput,
  attnResidual,
  createKvCache,
  denseMlp,
  embedTokens,
  expertRowPieces,
  layerForward,
  type LinearObserver,
  mlpForward,
  mlpInput,
  mlpResidual,
  selfAttention,
} from "../../runners/forward.ts";
import type { ActSite } from "../../core/act_quantizer.ts";
import { type LinearSite, linearSite } from "../../models/linears.ts";
import { expertTokens, routeTokens, type Routing } from "../../models/routing.ts";
import {
  type DenseMlp,
  expertMlps,
  type ForwardModel,
  type LinearKind,
  type LlamaConfig,
  type LlamaLayer,
  type LlamaWeights,
  type Matrix,
  type MoeMlp,
} from "../../models/types.ts";
import type { CalibrationSet } from "./set.ts";
import { accumulate, type Accumulator, complete, newAccumulator } from "./gram.ts";
import { concatWindows, windowGroups, windowsMlp } from "../../runners/forward_windows.ts";

/**
 * Bytes of rows an expert's down stage multiplies at once (its inputs, gate and up products and
 * captured down inputs): 512 MiB, about 2,800 of Mixtral's tokens.
 */
const DOWN_STAGE_BYTES = 512 * 2 ** 20;

/** Stages of GPTQ's `--true-sequential`, in order. */
export const TRUE_SEQUENTIAL_STAGES: readonly (readonly LinearKind[])[] = [
  ["q", "k", "v"],
  ["o"],
  ["gate", "up"],
  ["down"],
];

/** One stage holding every linear of a block (`trueSequential: false`). */
export const ONE_STAGE: readonly (readonly LinearKind[])[] = [
  ["q", "k", "v", "o", "gate", "up", "down"],
];

/** What a method's quantizer gets for one linear layer. */
export interface LinearInputs {
  readonly site: LinearSite;
  /** The full-precision weight `[out][in]`. */
  readonly matrix: Matrix;
  /** `Σ x xᵀ` over every calibration token, `[in][in]` row-major. */
  readonly gram: Float64Array;
  /** Calibration tokens summed into `gram`. */
  readonly tokens: number;
  /** Calibration sequences (windows) those tokens came from. */
  readonly sequences: number;
  /** Largest `|x_i|` of every input channel over the calibration tokens. */
  readonly absMax: Float32Array;
}

/** What a method's quantizer returns for one linear layer. */
export interface LinearOutcome {
  /** The weight to use from now on (dequantized), `[out][in]`. */
  readonly matrix: Matrix;
  /** The packed integer form, when the method produces one. */
  readonly packed?: PackedWeight;
  /** The method's own numbers for this layer (e.g. GPTQ's loss), kept in the row. */
  readonly stats?: Readonly<Record<string, number>>;
}

/** Quantizes one linear layer given its calibration inputs. */
export type LinearQuantizer = (inputs: LinearInputs) => LinearOutcome;

/** Per-linear diagnostics of a calibrated quantization. */
export interface LinearDiagnostic {
  readonly name: string;
  readonly layer: number;
  readonly kind: LinearKind;
  /** Expert index in MoE blocks. */
  readonly expert?: number;
  /** Calibration tokens of this linear (MoE experts: those routed to it). */
  readonly tokens?: number;
  /** True when an expert got no routed token and was calibrated on every token instead. */
  readonly fallback?: boolean;
  /** `‖(W − Ŵ)X‖² / ‖WX‖²` on the calibration inputs of this layer. */
  readonly relError: number;
  readonly stats?: Readonly<Record<string, number>>;
}

/** Options of {@linkcode quantizeSequential}. */
export interface SequentialOptions {
  /** Quantize a block in stages, re-collecting inputs after each (default true). */
  readonly trueSequential?: boolean;
  readonly kernels: Kernels;
  /** Progress in passes over the calibration set. */
  readonly onProgress?: (done: number, total: number) => void;
  /**
   * Rows a merged MoE product takes at most (default: `MERGED_ROWS` of `runners/forward_windows.ts`, and for an
   * expert's down stage what `DOWN_STAGE_BYTES` holds); the numbers do not depend on it.
   */
  readonly maxMergedRows?: number;
}

/** The outcome of {@linkcode quantizeSequential}. */
export interface SequentialResult {
  readonly weights: LlamaWeights;
  /** Packed weights by linear name (`layers.0.q`), where the quantizer produced them. */
  readonly packed: Map<string, PackedWeight>;
  /** One entry per linear, in processing order. */
  readonly diagnostics: LinearDiagnostic[];
}

/** Which linears read the same input: the Gram matrix is collected once per group. */
function inputGroup(kind: LinearKind): ActSite {
  if (kind === "q" || kind === "k" || kind === "v") return "qkv";
  if (kind === "gate" || kind === "up") return "gateup";
  return kind;
}

/** `tr(A G Aᵀ)` for `A` `[rows][cols]` (float32) and symmetric `G` (as float32), via the kernels. */
function quadraticTrace(
  a: Float32Array,
  rows: number,
  gram: Float64Array,
  cols: number,
  kernels: Kernels,
  blockRows: number,
): number {
  // `a G` a block of G's rows at a time (G is symmetric, so they are columns of the product):
  // each entry is the same sum over all `cols` as one product with the whole of G, and only one
  // block of G is ever held in float32 (0.8 GB less for a 14,336-wide down).
  const ag = new Float32Array(rows * cols);
  for (let c0 = 0; c0 < cols; c0 += blockRows) {
    const nb = Math.min(blockRows, cols - c0);
    const block = Float32Array.from(gram.subarray(c0 * cols, (c0 + nb) * cols));
    const out = new Float32Array(rows * nb);
    const m = { rows: nb, cols, data: block };
    kernels.matmul(a, rows, m, out);
    kernels.forget?.(m);
    for (let r = 0; r < rows; r++) ag.set(out.subarray(r * nb, (r + 1) * nb), r * cols + c0);
  }
  let s = 0;
  for (let i = 0; i < rows * cols; i++) s += a[i]! * ag[i]!;
  return s;
}

/** Rows of the Gram matrix {@linkcode relativeReconstructionError} converts at once. */
const TRACE_BLOCK_ROWS = 2048;

/** Relative output error `tr(ΔW G ΔWᵀ) / tr(W G Wᵀ)` (`blockRows`: rows of G taken at once). */
export function relativeReconstructionError(
  w: Matrix,
  wq: Matrix,
  gram: Float64Array,
  kernels: Kernels,
  blockRows = TRACE_BLOCK_ROWS,
): number {
  const d = new Float32Array(w.data.length);
  for (let i = 0; i < d.length; i++) d[i] = w.data[i]! - wq.data[i]!;
  const num = quadraticTrace(d, w.rows, gram, w.cols, kernels, blockRows);
  const den = quadraticTrace(w.data, w.rows, gram, w.cols, kernels, blockRows);
  return den > 0 ? num / den : num === 0 ? 0 : Infinity;
}

/**
 * The matrix to keep for a quantized linear: for weights streamed from their file, the packed
 * form (dequantized on access) when it reproduces the quantizer's values bit for bit, so a model
 * larger than memory in float32 stays compact; otherwise the quantizer's matrix.
 */
function compact(source: Matrix, out: LinearOutcome): Matrix {
  if (!isLazy(source) || !out.packed) return out.matrix;
  const packed = new PackedMatrix(out.packed);
  const a = dequantizePacked(out.packed);
  const b = out.matrix.data;
  for (let i = 0; i < a.length; i++) {
    if (!Object.is(a[i], b[i])) return out.matrix;
  }
  return packed;
}

function linearOf(layer: LlamaLayer, kind: LinearKind, expert?: number): Matrix | undefined {
  if (kind === "q" || kind === "k" || kind === "v" || kind === "o") return layer[kind];
  const mlp = layer.mlp;
  return mlp.kind === "dense" ? mlp[kind] : expertMlps(mlp)[expert!]![kind];
}

function withLinear(layer: LlamaLayer, kind: LinearKind, m: Matrix, expert?: number): LlamaLayer {
  if (kind === "q" || kind === "k" || kind === "v" || kind === "o") return { ...layer, [kind]: m };
  const mlp = layer.mlp;
  if (mlp.kind === "dense") return { ...layer, mlp: { ...mlp, [kind]: m } };
  if (mlp.shared && expert === mlp.experts.length) {
    return { ...layer, mlp: { ...mlp, shared: { ...mlp.shared, [kind]: m } } };
  }
  const experts = mlp.experts.map((e, i) => (i === expert ? { ...e, [kind]: m } : e));
  return { ...layer, mlp: { ...mlp, experts } };
}

/** The state the steps of {@linkcode quantizeSequential} share. */
interface SequentialState {
  readonly config: LlamaConfig;
  readonly kernels: Kernels;
  readonly quantizeLinear: LinearQuantizer;
  /** Carries `onProgress`. */
  readonly options: SequentialOptions;
  /** The blocks as quantized so far (the same array as `work.weights.layers`). */
  readonly layers: LlamaLayer[];
  /** The model being quantized: `layers` with the original embedding, norm and head. */
  readonly work: ForwardModel;
  readonly packed: Map<string, PackedWeight>;
  readonly diagnostics: LinearDiagnostic[];
  /** Calibration windows. */
  readonly sequences: number;
  /** The hidden states of every window at the current block's input (updated in place). */
  readonly xs: Float32Array[];
  /** Passes over the calibration set in all, and done so far. */
  readonly total: number;
  passes: number;
}

/** Reports one more pass over the calibration set. */
function progress(s: SequentialState): void {
  s.options.onProgress?.(++s.passes, s.total);
}

/** Runs one window through block `l` of the model as quantized so far (in place). */
function runBlock(
  s: SequentialState,
  l: number,
  x: Float32Array,
  T: number,
  observe?: LinearObserver,
): void {
  const cache = createKvCache(s.config, T);
  layerForward(s.work, l, x, T, cache, s.kernels, observe);
}

/** Collects the Gram matrices of `stage` with `fill`, then quantizes the stage's linears. */
function runStage(
  s: SequentialState,
  l: number,
  stage: readonly LinearKind[],
  fill: (accs: Map<ActSite, Accumulator>) => void,
): void {
  const present = stage.filter((kind) => linearOf(s.layers[l]!, kind) !== undefined);
  const accs = new Map<ActSite, Accumulator>();
  for (const kind of present) {
    const g = inputGroup(kind);
    if (accs.has(g)) continue;
    accs.set(g, newAccumulator(linearOf(s.layers[l]!, kind)!.cols));
  }
  fill(accs);
  progress(s);
  for (const acc of accs.values()) complete(acc);
  for (const kind of present) quantizeOne(s, l, kind, accs.get(inputGroup(kind))!);
  for (const acc of accs.values()) noteMaterialized(acc.gram.byteLength);
}

/** Throws an error naming the linear when its Gram matrix holds NaN or ±Infinity. */
function checkFiniteGram(name: string, l: number, gram: Float64Array): void {
  for (let i = 0; i < gram.length; i++) {
    if (!Number.isFinite(gram[i]!)) {
      throw new RangeError(
        `${name}: the calibration inputs hold NaN or ±Infinity (from block ${l}'s inputs)`,
      );
    }
  }
}

/** Calls the method's quantizer, prefixing its errors (but unsupported configs) with `name`. */
function callQuantizer(
  s: SequentialState,
  site: LinearSite,
  matrix: Matrix,
  acc: Accumulator,
): LinearOutcome {
  const { quantizeLinear } = s;
  try {
    return quantizeLinear({
      site,
      matrix,
      gram: acc.gram,
      tokens: acc.tokens,
      sequences: s.sequences,
      absMax: acc.absMax,
    });
  } catch (e) {
    if (e instanceof Error && !(e instanceof UnsupportedConfigError)) {
      e.message = `${site.name}: ${e.message}`;
    }
    throw e;
  }
}

/** Quantizes one linear on its accumulated inputs, replaces it and records its diagnostic. */
function quantizeOne(
  s: SequentialState,
  l: number,
  kind: LinearKind,
  acc: Accumulator,
  expert?: number,
  extra: { tokens?: number; fallback?: boolean } = {},
): void {
  const { layers } = s;
  const mlp = layers[l]!.mlp;
  const site = linearSite(l, kind, expert, mlp.kind === "moe" ? mlp.experts.length : undefined);
  const name = site.name;
  complete(acc);
  checkFiniteGram(name, l, acc.gram);
  const matrix = linearOf(layers[l]!, kind, expert)!;
  const out = callQuantizer(s, site, matrix, acc);
  if (out.matrix.rows !== matrix.rows || out.matrix.cols !== matrix.cols) {
    throw new RangeError(
      `${name}: the quantizer returned ${out.matrix.rows}×${out.matrix.cols}, expected ${matrix.rows}×${matrix.cols}`,
    );
  }
  layers[l] = withLinear(layers[l]!, kind, compact(matrix, out), expert);
  if (out.packed) s.packed.set(name, out.packed);
  s.diagnostics.push({
    name,
    layer: l,
    kind,
    ...(expert !== undefined ? { expert, tokens: extra.tokens ?? acc.tokens } : {}),
    ...(extra.fallback ? { fallback: true } : {}),
    relError: relativeReconstructionError(matrix, out.matrix, acc.gram, s.kernels),
    ...(out.stats ? { stats: out.stats } : {}),
  });
}

/**
 * A dense block without `trueSequential`, in one stage: every input from the full-precision
 * block, then one pass through the quantized block.
 */
function oneStageBlock(s: SequentialState, l: number): void {
  const { dim } = s.config;
  runStage(s, l, ONE_STAGE[0]!, (accs) => {
    const observer: LinearObserver = (kind, x, T) => {
      const acc = kind === "router" ? undefined : accs.get(inputGroup(kind));
      if (acc && (kind === "q" || kind === "o" || kind === "up" || kind === "down")) {
        accumulate(acc, x, T, s.kernels);
      }
      return kind === "down"; // the rest of the block is not needed
    };
    for (const x of s.xs) runBlock(s, l, x.slice(), x.length / dim, observer);
  });
  for (const x of s.xs) runBlock(s, l, x, x.length / dim);
  progress(s);
}

/** The {q, k, v} and {o} stages of block `l`; returns every window's attention output. */
function attentionStages(s: SequentialState, l: number): Float32Array[] {
  const { config, kernels, work, xs } = s;
  const { dim } = config;
  const qDim = config.nHeads * config.headDim;
  const atts: Float32Array[] = [];
  runStage(s, l, ["q", "k", "v"], (accs) => {
    for (const x of xs) {
      const T = x.length / dim;
      accumulate(accs.get("qkv")!, attnInput(work, l, x, T, kernels), T, kernels);
    }
  });
  runStage(s, l, ["o"], (accs) => {
    for (const x of xs) {
      const T = x.length / dim;
      const xn = attnInput(work, l, x, T, kernels);
      const att = new Float32Array(T * qDim);
      selfAttention(work, l, xn, T, createKvCache(config, T), kernels, att);
      accumulate(accs.get("o")!, att, T, kernels);
      atts.push(att);
    }
  });
  return atts;
}

/**
 * The dense MLP of block `l` in stages {gate, up} → {down} given the attention outputs (emptied
 * on the way), then the block outputs into `xs`.
 */
function denseMlpStages(s: SequentialState, l: number, atts: Float32Array[]): void {
  const { kernels, work, xs } = s;
  const { dim } = s.config;
  const hs: Float32Array[] = [];
  runStage(s, l, ["gate", "up"], (accs) => {
    xs.forEach((x, w) => {
      const T = x.length / dim;
      const h = attnResidual(work, l, atts[w]!, x, T, kernels);
      accumulate(accs.get("gateup")!, mlpInput(work, l, h, T, kernels), T, kernels);
      hs.push(h);
    });
  });
  atts.length = 0;
  runStage(s, l, ["down"], (accs) => {
    for (const h of hs) {
      const T = h.length / dim;
      mlpForward(work, l, mlpInput(work, l, h, T, kernels), T, kernels, new Float32Array(0), (
        k,
        g,
      ) => {
        if (k === "down") accumulate(accs.get("down")!, g, T, kernels);
        return k === "down";
      });
    }
  });
  hs.forEach((h, w) => {
    const T = h.length / dim;
    const out = new Float32Array(h.length);
    mlpForward(work, l, mlpInput(work, l, h, T, kernels), T, kernels, out);
    mlpResidual(work, l, out, h, T, kernels, xs[w]!);
  });
  hs.length = 0;
  progress(s);
}

/** The routed experts, then the shared expert (every token) if the block has one. */
function expertsOf(s: SequentialState, l: number): readonly DenseMlp[] {
  return expertMlps(s.layers[l]!.mlp as MoeMlp);
}

/** Block `l`'s routing of each window's MLP inputs, as `mlpForward` computes it. */
function routesOf(s: SequentialState, l: number, hns: readonly Float32Array[]) {
  const { config, kernels } = s;
  const mlp = s.layers[l]!.mlp as MoeMlp;
  const E = mlp.experts.length;
  return hns.map((hn) => {
    const T = hn.length / config.dim;
    const logits = new Float32Array(T * E);
    kernels.matmul(hn, T, mlp.router, logits);
    return routeTokens(logits, T, E, config.moe!, l);
  });
}

/** The rows `rows` of `x` (`[·][dim]`) as a new array. */
function gatherRows(x: Float32Array, rows: readonly number[], dim: number): Float32Array {
  const out = new Float32Array(rows.length * dim);
  rows.forEach((t, i) => out.set(x.subarray(t * dim, (t + 1) * dim), i * dim));
  return out;
}

/**
 * Accumulates every expert's gate/up inputs over its routed tokens, and the router's input over
 * every token (the fallback, and the shared expert's), on the MoE block's MLP inputs `hns`: the
 * rows `mlpForward` hands each expert, gathered from the routing alone (no expert runs).
 */
function moeGateUpInputs(
  s: SequentialState,
  l: number,
  hns: readonly Float32Array[],
  E: number,
  routes: readonly Routing[],
): { all: Accumulator; gu: Accumulator[] } {
  const { dim, moe } = s.config;
  const routed = (s.layers[l]!.mlp as MoeMlp).experts.length;
  const all = newAccumulator(dim);
  const gu = Array.from({ length: E }, () => newAccumulator(dim));
  hns.forEach((hn, w) => {
    const T = hn.length / dim;
    accumulate(all, hn, T, s.kernels);
    for (let e = 0; e < E; e++) {
      if (e >= routed) {
        accumulate(gu[e]!, hn, T, s.kernels); // the shared expert: every token
        continue;
      }
      const { rows } = expertTokens(routes[w]!, T, moe!.topK, e);
      if (rows.length > 0) accumulate(gu[e]!, gatherRows(hn, rows, dim), rows.length, s.kernels);
    }
  });
  return { all, gu };
}

/**
 * Quantizes every expert's down, one expert at a time, so one Gram matrix is held at once (1.6 GB
 * for Mixtral's 14,336-wide down, against 13 GB for all eight): its inputs are the hidden
 * activations of the tokens routed to it, or of every token of the block for an expert that got
 * none (`routed[e] === 0`) and for the shared expert. The routing is the block's (the router and
 * its inputs do not change in this stage). An expert's gate and up run once on the rows of all
 * windows together (a streamed expert is read once, not once per window; a window's only row
 * runs alone, see `expertRowPieces`), and the Gram takes each window's rows in window order, as a
 * pass per window would.
 */
function moeDownStage(
  s: SequentialState,
  l: number,
  hns: readonly Float32Array[],
  routed: readonly number[],
  routes: readonly Routing[],
): void {
  const { config, kernels } = s;
  const { dim } = config;
  const moe = config.moe!;
  const E = (s.layers[l]!.mlp as MoeMlp).experts.length;
  for (let e = 0; e < routed.length; e++) {
    const expert = expertsOf(s, l)[e]!;
    const hidden = expert.down.cols;
    const acc = newAccumulator(hidden);
    // Each window's rows for this expert, then all of them in window order.
    const perWindow = hns.map((hn, w) => {
      const T = hn.length / dim;
      const every = routed[e] === 0 || e >= E;
      return every ? null : expertTokens(routes[w]!, T, moe.topK, e).rows;
    });
    const counts = hns.map((hn, w) => perWindow[w]?.length ?? hn.length / dim);
    // Windows in groups of bounded rows (inputs, the two hidden products and the captured down
    // inputs of every row are held at once); each group multiplies the expert once.
    const maxRows = Math.max(
      2,
      Math.min(
        s.options.maxMergedRows ?? Infinity,
        Math.floor(DOWN_STAGE_BYTES / (4 * (dim + 3 * hidden))),
      ),
    );
    for (const group of windowGroups(counts, maxRows)) {
      const parts = group.map((w) => {
        const rows = perWindow[w];
        return rows ? gatherRows(hns[w]!, rows, dim) : hns[w]!;
      });
      const { data: x, starts: segments, total } = concatWindows(parts, dim);
      parts.length = 0;
      const g = new Float32Array(total * hidden);
      const all = Array.from({ length: total }, (_, i) => i);
      for (const piece of expertRowPieces(all, segments)) {
        const xp = piece.length === total ? x : gatherRows(x, piece, dim);
        const capture: LinearObserver = (kind, u) => {
          if (kind !== "down") return false;
          piece.forEach((i, j) => g.set(u.subarray(j * hidden, (j + 1) * hidden), i * hidden));
          return true;
        };
        const none = new Float32Array(0);
        denseMlp(expert, xp, piece.length, kernels, none, capture, undefined, true, config);
      }
      group.forEach((w, i) => {
        const n = counts[w]!, a = segments[i]! * hidden;
        accumulate(acc, g.subarray(a, a + n * hidden), n, kernels);
      });
    }
    complete(acc);
    quantizeOne(s, l, "down", acc, e, { tokens: routed[e]!, fallback: routed[e] === 0 });
    noteMaterialized(acc.gram.byteLength);
  }
  progress(s);
}

/** The MoE half of block `l` given the attention outputs (see the module documentation). */
function moeStages(s: SequentialState, l: number, atts: Float32Array[]): void {
  const { kernels, work, xs } = s;
  const { dim } = s.config;
  const E = expertsOf(s, l).length;
  const hs = xs.map((x, w) => attnResidual(work, l, atts[w]!, x, x.length / dim, kernels));
  atts.length = 0;
  const hns = hs.map((h) => mlpInput(work, l, h, h.length / dim, kernels));
  // Stage: every expert's gate and up, on its routed tokens.
  // The routing is computed once: the router and its inputs do not change in this block's stages.
  const routes = routesOf(s, l, hns);
  const { all, gu } = moeGateUpInputs(s, l, hns, E, routes);
  progress(s);
  const routed = gu.map((a) => a.tokens);
  for (let e = 0; e < E; e++) {
    const fallback = routed[e] === 0;
    for (const kind of ["gate", "up"] as const) {
      quantizeOne(s, l, kind, fallback ? all : gu[e]!, e, { tokens: routed[e]!, fallback });
    }
  }
  // Stage: every expert's down, on the hidden activations of its routed tokens.
  moeDownStage(s, l, hns, routed, routes);
  // The quantized block's outputs feed the next block: the MLP on all windows' rows at once, in
  // groups (each expert read once a group; the same numbers as per window).
  windowsMlp(work, l, hs, hns, xs, kernels, {
    ...(s.options.maxMergedRows !== undefined ? { maxRows: s.options.maxMergedRows } : {}),
  });
  progress(s);
}

/**
 * Quantizes every linear of a dense Llama model block by block on calibration windows (see the
 * module documentation). Throws `UnsupportedConfigError` for MoE models and an error naming the
 * linear when its calibration inputs hold NaN or ±Infinity.
 *
 * @param model The full-precision model (not modified).
 * @param calib The calibration windows.
 * @param quantizeLinear The method's per-linear quantizer.
 * @param options Staging, kernels and progress.
 */
export function quantizeSequential(
  model: { readonly config: LlamaConfig; readonly weights: LlamaWeights },
  calib: CalibrationSet,
  quantizeLinear: LinearQuantizer,
  options: SequentialOptions,
): SequentialResult {
  const { config } = model;
  const trueSequential = options.trueSequential !== false;
  const stages = trueSequential ? TRUE_SEQUENTIAL_STAGES : ONE_STAGE;
  const layers = [...model.weights.layers];
  const work = { config, weights: { ...model.weights, layers } };
  const s: SequentialState = {
    config,
    kernels: options.kernels,
    quantizeLinear,
    options,
    layers,
    work,
    packed: new Map<string, PackedWeight>(),
    diagnostics: [],
    sequences: calib.windows.length,
    xs: calib.windows.map((w) => embedTokens(work, w)),
    total: model.weights.layers.reduce(
      (n, layer) => n + (layer.mlp.kind === "moe" ? 5 : stages.length + 1),
      0,
    ),
    passes: 0,
  };
  for (let l = 0; l < config.nLayers; l++) {
    const isMoe = layers[l]!.mlp.kind === "moe";
    if (!trueSequential && !isMoe) {
      oneStageBlock(s, l);
      continue;
    }
    // True-sequential. Each stage recomputes only what the previous stage's quantization changed:
    // the attention output (q, k, v quantized) once, the post-attention residual (o quantized)
    // once, the MLP hidden activation (gate, up quantized) once, and the block output at the end.
    // The block's pieces are runners/forward.ts's own stages, so every architecture feature
    // (biases, norms of every kind, sandwich norms) is computed as in the forward pass.
    const atts = attentionStages(s, l);
    if (isMoe) moeStages(s, l, atts);
    else denseMlpStages(s, l, atts);
  }
  return { weights: work.weights, packed: s.packed, diagnostics: s.diagnostics };
}
