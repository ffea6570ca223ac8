/**
 * AWQ's block-by-block pipeline (llm-awq `pre_quant.py` `run_awq`, AutoAWQ
 * `AwqQuantizer.quantize`).
 *
 * The calibration sequences are embedded once; then, per decoder block `l`:
 * 1. **Capture.** The full-precision block runs on its inputs; every linear's input is kept
 *    (q/k/v share one, gate/up share one), with the outputs the losses compare against: the
 *    attention output `o(att) + b_o` and the MLP output (before Gemma 2's sandwich norms, which
 *    sit outside the references' `self_attn` and `mlp` modules). With `propagate: "fp"` (the
 *    references) this block's full-precision output is the next block's input.
 * 2. **Scale search** for each group ({@linkcode awqGroups}), every one on the original weights
 *    and the captured inputs, independently (`awq_search.ts`).
 * 3. **Fold** all scales into the weights (`smoothing.ts` `foldSmoothing`: norm weights and
 *    biases, or the rows and bias of v / up), and divide each scaled linear's captured input by
 *    its scales, so the clip search sees what the scaled weights receive.
 * 4. **Clip search** and clamp for every linear but q and k (`awq_clip.ts`).
 * 5. **Quantize** (when asked) every linear of the block by round-to-nearest with AWQ's
 *    quantizer. With `propagate: "quantized"`, the quantized block's output is the next input.
 *
 * Groups (`module2inspect` is what the loss is measured on):
 *
 * | group    | folded into                 | scaled       | loss on                                  |
 * | -------- | --------------------------- | ------------ | ---------------------------------------- |
 * | `qkv`    | attention norm (and bias)   | q, k, v      | `o(attention(...)) + b_o`, the whole `self_attn` |
 * | `o`      | v's rows and bias           | o            | o's own output (with bias)               |
 * | `gateup` | MLP norm (and bias)         | gate, up     | the whole MLP; OPT: fc1 (= up) alone     |
 * | `down`   | up's rows and bias          | down         | down's own output (with bias)            |
 *
 * `o` runs only when v's weight has o's shape (llm-awq PR #67: not with grouped-query attention,
 * nor where n_heads · head_dim ≠ hidden). Down through an ungated MLP is valid for ReLU only
 * (OPT's fc1 → fc2); an ungated GELU MLP would need AWQ's `ScaledActivation` and is refused.
 *
 * @module
 */

import { UnsupportedConfigError } from "../core/errors.ts";
import type { PackedWeight, QuantizerSpec } from "../core/quantizer.ts";
import type { Kernels } from "../kernels/types.ts";
import {
  attnInput,
  attnResidual,
  createKvCache,
  embedTokens,
  type ForwardModel,
  type KvCache,
  layerForward,
  mlpForward,
  mlpInput,
  mlpResidual,
  selfAttention,
} from "../runners/forward.ts";
import { linearSite } from "../models/linears.ts";
import type {
  DenseMlp,
  LinearKind,
  LlamaConfig,
  LlamaLayer,
  LlamaWeights,
  Matrix,
} from "../models/types.ts";
import type { LinearDiagnostic } from "./calibration/sequential.ts";
import { applyClip, type ClipOptions, searchClip, subsampleTokens } from "./awq_clip.ts";
import { awqQuantizeMatrix, groupColumns } from "./awq_quantizer.ts";
import { meanAbs, type ScaleRule, searchScales, trialWeight } from "./awq_search.ts";
import { foldSmoothing, type LayerSmoothing } from "./smoothing.ts";

/** The four scaling groups of a block. */
export type AwqGroupId = "qkv" | "o" | "gateup" | "down";

/** Where a group's loss is measured. */
export type InspectModule = "attention" | "mlp" | "linear";

/** One scaling group of a block. */
export interface AwqGroup {
  readonly id: AwqGroupId;
  readonly linears: readonly LinearKind[];
  readonly inspect: InspectModule;
}

/** Options of {@linkcode runAwq} and {@linkcode awqBlock}. */
export interface AwqOptions {
  /** AWQ's quantizer for the searches and the final rounding. */
  readonly spec: QuantizerSpec;
  /** Candidate scales (llm-awq or AutoAWQ's duo scaling) and the grid. */
  readonly rule: ScaleRule;
  /** Search and fold the scales (llm-awq `auto_scale`, default on). */
  readonly scale: boolean;
  /** Clip search settings, or undefined for no clipping (`mse_range` / `apply_clip` off). */
  readonly clip?: ClipOptions;
  /** The next block's input: the full-precision block's output (the references) or the quantized one's. */
  readonly propagate: "fp" | "quantized";
  /** Round every linear with AWQ's quantizer (false: return the scaled and clipped weights). */
  readonly quantize: boolean;
  readonly kernels: Kernels;
  /** Progress in block stages. */
  readonly onProgress?: (done: number, total: number) => void;
}

/** What the search decided for one group. */
export interface AwqGroupRecord {
  readonly layer: number;
  readonly group: AwqGroupId;
  /** The chosen ratio `r`. */
  readonly ratio: number;
  readonly scales: Float32Array;
  /** Loss of every grid point. */
  readonly losses: readonly number[];
  /** The chosen loss. */
  readonly loss: number;
  /** Loss of round-to-nearest with AWQ's quantizer (s ≡ 1; `losses[0]` in llm-awq mode). */
  readonly rtnLoss: number;
}

/** What {@linkcode runAwq} returns. */
export interface AwqResult {
  /** Quantized (dequantized float32) weights, or the scaled and clipped full-precision ones. */
  readonly weights: LlamaWeights;
  /** Packed weights by linear name, when quantized. */
  readonly packed: Map<string, PackedWeight>;
  /** Every quantized linear's relative output error on the clip search's tokens. */
  readonly diagnostics: LinearDiagnostic[];
  /** Every group's search, in processing order. */
  readonly groups: AwqGroupRecord[];
  /** Shape facts worth recording (skipped groups, short last groups). */
  readonly notes: string[];
}

/**
 * Why AWQ cannot run a model, or undefined when it can: Mixture-of-Experts blocks, online
 * rotations, activation quantizers carried by the weights, ungated non-ReLU MLPs.
 */
export function awqUnsupported(model: ForwardModel): string | undefined {
  const c = model.config;
  const w = model.weights;
  if (c.moe || w.layers.some((l) => l.mlp.kind === "moe")) {
    return "awq does not support Mixture-of-Experts blocks (AutoAWQ scales each expert apart " +
      "behind a ScaledMixtralSparseMoeBlock; not ported)";
  }
  if (w.online) {
    return "awq does not support online rotations of linear inputs (QuaRot): v→o and up→down " +
      "scales do not commute with them";
  }
  if (w.activations) return "awq is weight-only: the weights carry an activation quantizer";
  const ungated = w.layers.some((l) => (l.mlp as DenseMlp).gate === undefined);
  if (ungated && (c.mlpAct ?? "silu") !== "relu") {
    return `awq does not support an ungated ${c.mlpAct ?? "silu"} MLP: the up→down scale ` +
      `commutes only with ReLU (AWQ's ScaledActivation for GELU is not ported)`;
  }
  return undefined;
}

/** Whether the v→o group runs in block `l`: v's weight has o's shape (the references' test). */
export function voApplies(layer: LlamaLayer): boolean {
  return layer.v.rows === layer.o.rows && layer.v.cols === layer.o.cols;
}

/** The scaling groups of block `l` in the references' order (see the module documentation). */
export function awqGroups(config: LlamaConfig, layer: LlamaLayer): AwqGroup[] {
  const mlp = layer.mlp as DenseMlp;
  const groups: AwqGroup[] = [{ id: "qkv", linears: ["q", "k", "v"], inspect: "attention" }];
  if (voApplies(layer)) {
    if (config.clipQkv !== undefined) {
      throw new UnsupportedConfigError(
        "awq cannot scale v→o with clip_qkv: the clamp of v's output does not commute with it",
      );
    }
    groups.push({ id: "o", linears: ["o"], inspect: "linear" });
  }
  groups.push(
    mlp.gate
      ? { id: "gateup", linears: ["gate", "up"], inspect: "mlp" }
      : { id: "gateup", linears: ["up"], inspect: "linear" },
  );
  groups.push({ id: "down", linears: ["down"], inspect: "linear" });
  return groups;
}

/** The linears AWQ clips: all but q and k ("due to qk bmm"). */
const CLIPPED: readonly LinearKind[] = ["v", "o", "gate", "up", "down"];

/** Which captured input each linear reads. */
function siteOf(kind: LinearKind): AwqGroupId {
  if (kind === "q" || kind === "k" || kind === "v") return "qkv";
  if (kind === "gate" || kind === "up") return "gateup";
  return kind;
}

function linearOf(layer: LlamaLayer, kind: LinearKind): Matrix | undefined {
  if (kind === "q" || kind === "k" || kind === "v" || kind === "o") return layer[kind];
  return (layer.mlp as DenseMlp)[kind];
}

function biasOf(layer: LlamaLayer, kind: LinearKind): Float32Array | undefined {
  const mlp = layer.mlp as DenseMlp;
  switch (kind) {
    case "q":
      return layer.qBias;
    case "k":
      return layer.kBias;
    case "v":
      return layer.vBias;
    case "o":
      return layer.oBias;
    case "gate":
      return mlp.gateBias;
    case "up":
      return mlp.upBias;
    case "down":
      return mlp.downBias;
  }
}

function withLinear(layer: LlamaLayer, kind: LinearKind, m: Matrix): LlamaLayer {
  if (kind === "q" || kind === "k" || kind === "v" || kind === "o") return { ...layer, [kind]: m };
  return { ...layer, mlp: { ...(layer.mlp as DenseMlp), [kind]: m } };
}

function withLayer(model: ForwardModel, l: number, layer: LlamaLayer): ForwardModel {
  const layers = [...model.weights.layers];
  layers[l] = layer;
  return { config: model.config, weights: { ...model.weights, layers } };
}

/** `x · Wᵀ + b` for `T` rows (a new array). */
function linearOut(
  x: Float32Array,
  T: number,
  w: Matrix,
  bias: Float32Array | undefined,
  kernels: Kernels,
): Float32Array {
  const out = new Float32Array(T * w.rows);
  kernels.matmul(x, T, w, out);
  if (bias) { for (let i = 0; i < out.length; i++) out[i] = out[i]! + bias[i % w.rows]!; }
  return out;
}

/** `Σ (a − b)²` in float64. */
function sumSquaredDiff(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i]! - b[i]!;
    s += d * d;
  }
  return s;
}

/** The inputs and outputs of one block captured on the full-precision weights. */
interface Captures {
  /** Per window, each linear site's input `[T][in]`. */
  readonly inputs: Record<AwqGroupId, Float32Array[]>;
  /** Per window, `o(att) + b_o`. */
  readonly attnOut: Float32Array[];
  /** Per window, the MLP output. */
  readonly mlpOut: Float32Array[];
  /** Per window, the block's output. */
  readonly next: Float32Array[];
}

function capture(
  model: ForwardModel,
  l: number,
  xs: readonly Float32Array[],
  cacheFor: (T: number) => KvCache,
  kernels: Kernels,
): Captures {
  const c = model.config;
  const layer = model.weights.layers[l]!;
  const qDim = c.nHeads * c.headDim;
  const inputs: Record<AwqGroupId, Float32Array[]> = { qkv: [], o: [], gateup: [], down: [] };
  const attnOut: Float32Array[] = [];
  const mlpOut: Float32Array[] = [];
  const next: Float32Array[] = [];
  for (const x of xs) {
    const T = x.length / c.dim;
    const xn = attnInput(model, l, x, T, kernels);
    const att = new Float32Array(T * qDim);
    selfAttention(model, l, xn, T, cacheFor(T), kernels, att);
    const h = attnResidual(model, l, att, x, T, kernels);
    const hn = mlpInput(model, l, h, T, kernels);
    const y = new Float32Array(T * c.dim);
    let u: Float32Array | undefined;
    mlpForward(model, l, hn, T, kernels, y, (kind, v) => {
      if (kind === "down") u = v.slice();
    });
    const out = new Float32Array(T * c.dim);
    mlpOut.push(y.slice());
    mlpResidual(model, l, y, h, T, kernels, out);
    inputs.qkv.push(xn);
    inputs.o.push(att);
    inputs.gateup.push(hn);
    inputs.down.push(u!);
    attnOut.push(linearOut(att, T, layer.o, layer.oBias, kernels));
    next.push(out);
  }
  return { inputs, attnOut, mlpOut, next };
}

/**
 * Runs AWQ on block `l` of `work` (whose `weights.layers` array is replaced in place at `l`) for
 * the block inputs `xs` (`[T][dim]` each, replaced by the next block's inputs). Returns the
 * groups' records, the block's packed weights and diagnostics.
 */
export function awqBlock(
  work: { config: LlamaConfig; weights: LlamaWeights & { layers: LlamaLayer[] } },
  l: number,
  xs: Float32Array[],
  opts: AwqOptions,
  progress: () => void = () => {},
): {
  groups: AwqGroupRecord[];
  packed: Map<string, PackedWeight>;
  diagnostics: LinearDiagnostic[];
} {
  const { config } = work;
  const { kernels } = opts;
  const dim = config.dim;
  const maxT = Math.max(...xs.map((x) => x.length / dim));
  const cache = createKvCache(config, maxT);
  const cacheFor = () => cache; // every call starts at position 0 and overwrites
  const layer0 = work.weights.layers[l]!;
  const cap = capture(work, l, xs, cacheFor, kernels);
  progress();

  // 2. Scale search: every group on the original weights and captured inputs.
  const { groups, smoothing, firstOf } = searchGroups(work, l, cap, cacheFor, opts, progress);

  // 3. Fold the scales; the captured inputs become what the scaled weights receive.
  const scaled = opts.scale ? foldScales(work, l, smoothing, cap) : layer0;

  // 4. Clip search on the scaled weights and inputs (q and k never).
  const keptInputs = keptInputsOf(cap, opts.clip?.tokens ?? 512);
  const { layer, clipped } = clipBlock(scaled, keptInputs, opts);
  progress();

  // 5. Round to nearest with AWQ's quantizer.
  const { quantized, packed, diagnostics } = quantizeBlock(
    { l, layer, scaled, keptInputs, firstOf, clipped },
    opts,
  );
  progress();

  // The next block's inputs.
  if (opts.propagate === "fp") {
    cap.next.forEach((n, w) => xs[w] = n);
  } else {
    const qmodel = withLayer(work, l, quantized);
    for (const x of xs) layerForward(qmodel, l, x, x.length / dim, cache, kernels);
  }
  work.weights.layers[l] = opts.quantize ? quantized : layer;
  return { groups, packed, diagnostics };
}

/** A site's captured inputs subsampled to the clip search's tokens (`[tokens][in]`). */
type KeptInputs = (site: AwqGroupId, cols: number) => { x: Float32Array; tokens: number };

/** Step 2: every group's scale search on the original weights and the captured inputs. */
function searchGroups(
  work: ForwardModel,
  l: number,
  cap: Captures,
  cacheFor: (T: number) => KvCache,
  opts: AwqOptions,
  progress: () => void,
): {
  groups: AwqGroupRecord[];
  smoothing: LayerSmoothing;
  firstOf: Map<LinearKind, AwqGroupRecord>;
} {
  const { kernels, spec } = opts;
  const layer0 = work.weights.layers[l]!;
  const groups: AwqGroupRecord[] = [];
  const smoothing: { -readonly [K in keyof LayerSmoothing]: LayerSmoothing[K] } = {};
  const defs = opts.scale ? awqGroups(work.config, layer0) : [];
  /** Each group's record under its first linear, where its losses are reported. */
  const firstOf = new Map<LinearKind, AwqGroupRecord>();
  for (const group of defs) {
    const xin = cap.inputs[group.id];
    const linears = group.linears.map((k) => linearOf(layer0, k)!);
    const loss = groupLoss(work, l, layer0, group, xin, cap, cacheFor, kernels);
    const xbar = meanAbs(xin, linears[0]!.cols);
    const r = searchScales(linears, xbar, spec, opts.rule, loss);
    const rtnLoss = opts.rule.duoScaling
      ? loss(linears.map((m) => trialWeight(m, new Float32Array(m.cols).fill(1), spec)))
      : r.losses[0]!;
    const record = {
      layer: l,
      group: group.id,
      ratio: r.ratio,
      scales: r.scales,
      losses: r.losses,
      loss: r.loss,
      rtnLoss,
    };
    groups.push(record);
    firstOf.set(group.linears[0]!, record);
    smoothing[group.id] = r.scales;
    progress();
  }
  return { groups, smoothing, firstOf };
}

/** Step 3: block `l` with the scales folded in; each scaled site's captured inputs divided. */
function foldScales(
  work: { config: LlamaConfig; weights: LlamaWeights & { layers: LlamaLayer[] } },
  l: number,
  smoothing: LayerSmoothing,
  cap: Captures,
): LlamaLayer {
  const sm: (LayerSmoothing | undefined)[] = [];
  sm[l] = smoothing;
  const layer = foldSmoothing(
    { ...work.weights, layers: [...work.weights.layers] },
    sm,
    work.config,
  )
    .layers[l]!;
  for (const [site, s] of Object.entries(smoothing) as [AwqGroupId, Float32Array][]) {
    const n = s.length;
    for (const x of cap.inputs[site]) {
      for (let i = 0; i < x.length; i++) x[i] = x[i]! / s[i % n]!;
    }
  }
  return layer;
}

/** Each site's captured inputs subsampled to `maxTokens` on first use, then kept. */
function keptInputsOf(cap: Captures, maxTokens: number): KeptInputs {
  const kept = new Map<AwqGroupId, { x: Float32Array; tokens: number }>();
  return (site, cols) => {
    let k = kept.get(site);
    if (!k) {
      k = subsampleTokens(cap.inputs[site], cols, maxTokens);
      kept.set(site, k);
    }
    return k;
  };
}

/** Step 4: the clip search and clamp of every clipped linear, with its count of clipped groups. */
function clipBlock(
  scaled: LlamaLayer,
  keptInputs: KeptInputs,
  opts: AwqOptions,
): { layer: LlamaLayer; clipped: Map<LinearKind, number> } {
  let layer = scaled;
  const clipped = new Map<LinearKind, number>();
  if (opts.clip) {
    for (const kind of CLIPPED) {
      const w = linearOf(layer, kind);
      if (!w) continue;
      const { x, tokens } = keptInputs(siteOf(kind), w.cols);
      const r = searchClip(w, x, tokens, opts.spec, opts.kernels, opts.clip);
      layer = withLinear(layer, kind, applyClip(w, r));
      clipped.set(kind, r.shrink.reduce((n, i) => n + (i > 0 ? 1 : 0), 0));
    }
  }
  return { layer, clipped };
}

/** What step 5 of block `l` starts from: the clipped and scaled layers and the searches. */
interface QuantizeInputs {
  readonly l: number;
  /** The scaled and clipped layer, to quantize. */
  readonly layer: LlamaLayer;
  /** The scaled layer before clipping, the diagnostics' reference. */
  readonly scaled: LlamaLayer;
  readonly keptInputs: KeptInputs;
  readonly firstOf: ReadonlyMap<LinearKind, AwqGroupRecord>;
  readonly clipped: ReadonlyMap<LinearKind, number>;
}

/** Step 5: every linear rounded to nearest with AWQ's quantizer, packed, with diagnostics. */
function quantizeBlock(
  { l, layer, scaled, keptInputs, firstOf, clipped }: QuantizeInputs,
  opts: AwqOptions,
): {
  quantized: LlamaLayer;
  packed: Map<string, PackedWeight>;
  diagnostics: LinearDiagnostic[];
} {
  const packed = new Map<string, PackedWeight>();
  const diagnostics: LinearDiagnostic[] = [];
  let quantized = layer;
  if (opts.quantize || opts.propagate === "quantized") {
    for (const kind of ["q", "k", "v", "o", "gate", "up", "down"] as const) {
      const w = linearOf(layer, kind);
      if (!w) continue;
      const r = awqQuantizeMatrix(w.data, w.rows, w.cols, opts.spec);
      const wq = { rows: w.rows, cols: w.cols, data: r.dequantized };
      quantized = withLinear(quantized, kind, wq);
      if (!opts.quantize) continue;
      const name = linearSite(l, kind).name;
      packed.set(name, r.packed);
      const { x, tokens } = keptInputs(siteOf(kind), w.cols);
      const g = firstOf.get(kind);
      const stats: Record<string, number> = {
        ...(g ? { scaleLoss: g.loss, scaleLossRtn: g.rtnLoss } : {}),
        ...(clipped.has(kind) ? { clippedGroups: clipped.get(kind)! } : {}),
      };
      diagnostics.push({
        name,
        layer: l,
        kind,
        relError: relativeOutputError(linearOf(scaled, kind)!, wq, x, tokens, opts.kernels),
        ...(Object.keys(stats).length ? { stats } : {}),
      });
    }
  }
  return { quantized, packed, diagnostics };
}

/** `‖(W − Ŵ) X‖² / ‖W X‖²` on the rows `x` (`[tokens][in]`). */
function relativeOutputError(
  w: Matrix,
  wq: Matrix,
  x: Float32Array,
  tokens: number,
  kernels: Kernels,
): number {
  const a = new Float32Array(tokens * w.rows);
  const b = new Float32Array(tokens * w.rows);
  kernels.matmul(x, tokens, w, a);
  kernels.matmul(x, tokens, wq, b);
  let num = 0, den = 0;
  for (let i = 0; i < a.length; i++) {
    num += (a[i]! - b[i]!) ** 2;
    den += a[i]! ** 2;
  }
  return den > 0 ? num / den : num === 0 ? 0 : Infinity;
}

/** The loss of a group's trial weights: mean squared error of the inspected module's output. */
function groupLoss(
  work: ForwardModel,
  l: number,
  layer: LlamaLayer,
  group: AwqGroup,
  xin: readonly Float32Array[],
  cap: Captures,
  cacheFor: (T: number) => KvCache,
  kernels: Kernels,
): (trials: readonly Matrix[]) => number {
  const c = work.config;
  const trialLayer = (trials: readonly Matrix[]) =>
    group.linears.reduce((acc, kind, i) => withLinear(acc, kind, trials[i]!), layer);
  if (group.inspect === "attention") {
    const qDim = c.nHeads * c.headDim;
    return (trials) => {
      const m = withLayer(work, l, trialLayer(trials));
      let s = 0, n = 0;
      xin.forEach((x, w) => {
        const T = x.length / c.dim;
        const att = new Float32Array(T * qDim);
        selfAttention(m, l, x, T, cacheFor(T), kernels, att);
        const y = linearOut(att, T, layer.o, layer.oBias, kernels);
        s += sumSquaredDiff(cap.attnOut[w]!, y);
        n += y.length;
      });
      return s / n;
    };
  }
  if (group.inspect === "mlp") {
    return (trials) => {
      const m = withLayer(work, l, trialLayer(trials));
      let s = 0, n = 0;
      xin.forEach((x, w) => {
        const T = x.length / c.dim;
        const y = new Float32Array(T * c.dim);
        mlpForward(m, l, x, T, kernels, y);
        s += sumSquaredDiff(cap.mlpOut[w]!, y);
        n += y.length;
      });
      return s / n;
    };
  }
  const kind = group.linears[0]!;
  const w0 = linearOf(layer, kind)!;
  const bias = biasOf(layer, kind);
  const targets = xin.map((x) => linearOut(x, x.length / w0.cols, w0, bias, kernels));
  return (trials) => {
    let s = 0, n = 0;
    xin.forEach((x, w) => {
      const y = linearOut(x, x.length / w0.cols, trials[0]!, bias, kernels);
      s += sumSquaredDiff(targets[w]!, y);
      n += y.length;
    });
    return s / n;
  };
}

/**
 * AWQ over every block of a dense model on calibration sequences (see the module
 * documentation). Throws `UnsupportedConfigError` naming what the model uses that AWQ cannot
 * handle.
 */
export function runAwq(
  model: ForwardModel,
  windows: readonly Int32Array[],
  opts: AwqOptions,
): AwqResult {
  const why = awqUnsupported(model);
  if (why) throw new UnsupportedConfigError(why);
  const { config } = model;
  const layers = [...model.weights.layers];
  const work = { config, weights: { ...model.weights, layers } };
  const xs = windows.map((w) => embedTokens(work, w));
  const notes: string[] = [];
  const groups: AwqGroupRecord[] = [];
  const packed = new Map<string, PackedWeight>();
  const diagnostics: LinearDiagnostic[] = [];
  const perBlock = (opts.scale ? 4 : 0) + 3;
  const total = config.nLayers * perBlock;
  let done = 0;
  const skippedVo = layers.map((layer, l) => voApplies(layer) ? -1 : l).filter((l) => l >= 0);
  if (opts.scale && skippedVo.length > 0) {
    const v = layers[skippedVo[0]!]!.v, o = layers[skippedVo[0]!]!.o;
    notes.push(
      `v→o scaling skipped in ${
        skippedVo.length === layers.length ? "every block" : `blocks ${skippedVo.join(", ")}`
      }: ` +
        `v is ${v.rows}×${v.cols}, o ${o.rows}×${o.cols} (the references' v.shape == o.shape test)`,
    );
  }
  const ragged = new Set<string>();
  for (const layer of layers) {
    for (const kind of ["q", "k", "v", "o", "gate", "up", "down"] as const) {
      const w = linearOf(layer, kind);
      if (w && w.cols % groupColumns(opts.spec, w.cols) !== 0) ragged.add(`${kind} (${w.cols})`);
    }
  }
  if (ragged.size > 0) {
    notes.push(
      `group size ${opts.spec.groupSize} does not divide the inputs of ${
        [...ragged].join(", ")
      }: ` +
        `their last group per row is shorter (the references assert in % g == 0)`,
    );
  }
  for (let l = 0; l < config.nLayers; l++) {
    const r = awqBlock(work, l, xs, opts, () => opts.onProgress?.(++done, total));
    groups.push(...r.groups);
    for (const [k, v] of r.packed) packed.set(k, v);
    diagnostics.push(...r.diagnostics);
  }
  return { weights: work.weights, packed, diagnostics, groups, notes };
}
