/**
 * Block-wise reconstruction with gradients: the OmniQuant-style driver every optimization-class
 * method shares (OpenGVLab/OmniQuant `quantize/omniquant.py`, the block loop AffineQuant builds on;
 * FlexRound's `REM_fast.py` is the same loop).
 *
 * Calibration windows are embedded once and two streams of hidden states are kept: `fp` (the
 * outputs of the full-precision blocks) and `quant` (the outputs of the already quantized
 * blocks). For each decoder block `l`:
 * 1. **Target**: the full-precision block on the `fp` stream (`runners/forward.ts` `layerForward`).
 * 2. **Learn**: the method's {@linkcode BlockLearner} exposes trainable tensors and the block's
 *    weights as functions of them (e.g. fake-quantized linears). Loss = mean squared error between
 *    the target and the learner's block applied to the `quant` stream, over `epochs` passes of
 *    the windows in a seeded random order, mini-batches of `batchSize` windows (gradients
 *    averaged over the batch), Adam with cosine decay to 0 over all steps
 *    (`methods/autodiff/block.ts`, `methods/autodiff/adam.ts`). The loss before training and the mean loss of
 *    every epoch are recorded.
 * 3. **NaN/Inf guard**: a non-finite loss or gradient stops the block at once; the learner is
 *    reset to its initial state (for FlexRound: round-to-nearest) and the block is reported as
 *    diverged, with the step. A learner that throws {@linkcode BlockDivergedError} (AffineQuant's
 *    singular affine matrix) is handled the same way, with its message.
 * 4. **Fold**: the learner's final quantized linears (dequantized float32 and packed codes)
 *    replace the block's weights; the `quant` stream goes through the folded block (its loss
 *    against the target is the block's final loss), the `fp` stream becomes the targets.
 *
 * Options beyond FlexRound's: a constant learning rate (`schedule`; OmniQuant-family methods have
 * no scheduler), per-tensor rate multipliers from the learner (parameter groups), RMSNorm weight
 * gradients for learners that fold scales into the norms (`normGrads`, `foldNorms`), and an
 * activation quantizer (`activations`) applied in training, in the initial and final losses and in
 * the quantized stream of weight-activation cells.
 *
 * The loss before training and the folded pass run the inference forward (`layerForward`);
 * training runs the differentiable block, whose forward equals it (tested to 1e-5). Every linear
 * also gets the sequential pipeline's diagnostic, measured on the inputs the folded linear sees in
 * that last pass: `‖(W − Ŵ)X‖² / ‖WX‖²`.
 *
 * Mean squared error here is the mean over all elements; the official FlexRound `lp_loss` sums
 * over the sequence axis and averages the rest, a constant multiple that Adam is invariant to
 * (up to its ε).
 *
 * Memory: three copies of the hidden states of all windows (fp inputs, quant inputs, targets)
 * plus one window's activations. Dense blocks only.
 *
 * @module
 */

import { SeededRng } from "../../core/rng.ts";
import type { ActivationQuantization } from "../../core/act_quantizer.ts";
import { UnsupportedConfigError } from "../../core/errors.ts";
import type { PackedWeight } from "../../core/quantizer.ts";
import { checkTrainableActQuant } from "../autodiff/act_quant.ts";
import { Adam } from "../autodiff/adam.ts";
import {
  blockForwardBackward,
  type BlockWeights,
  type LinearGrads,
  zeroLinearGrads,
} from "../autodiff/block.ts";
import { LinearScratch, releaseMatrix } from "../autodiff/linear.ts";
import { squaredError } from "../autodiff/mse.ts";
import type { Vec } from "../autodiff/types.ts";
import type { Kernels } from "../../kernels/types.ts";
import {
  createKvCache,
  embedTokens,
  layerForward,
  type LinearObserver,
} from "../../runners/forward.ts";
import {
  type DenseMlp,
  type ForwardModel,
  LINEAR_KINDS,
  type LinearKind,
  type LlamaConfig,
  type LlamaLayer,
  type LlamaWeights,
  type Matrix,
} from "../../models/types.ts";
import type { LinearDiagnostic } from "./sequential.ts";
import { unsupportedFeatures } from "../../models/arch.ts";
import { BLOCK_FEATURES } from "../autodiff/block.ts";
import type { CalibrationSet } from "./set.ts";

/** A quantized linear as the learner folds it. */
export interface FoldedLinear {
  readonly matrix: Matrix;
  readonly packed?: PackedWeight;
}

/**
 * Thrown by a learner when its parameters have become unusable (e.g. a singular affine matrix):
 * the driver treats it like a non-finite loss (stop, fall back, report the message per block).
 */
export class BlockDivergedError extends Error {
  /** Creates the error with the reason recorded in the block's report. */
  constructor(message: string) {
    super(message);
    this.name = "BlockDivergedError";
  }
}

/** What a method learns for one block. */
export interface BlockLearner {
  /** Trainable tensors (updated in place by the optimizer). */
  readonly params: readonly Vec[];
  /** Multiplier of the learning rate per entry of `params` (parameter groups; default 1). */
  readonly lrScale?: readonly number[];
  /** Whether `backward` needs the gradients of the two RMSNorm weights. */
  readonly normGrads?: boolean;
  /**
   * The block's weights for the current parameter values; `epoch` (0-based) lets a learner
   * follow a schedule (AffineQuant's gradual mask). May throw {@linkcode BlockDivergedError}.
   */
  weights(epoch?: number): BlockWeights;
  /**
   * Adds `∂L/∂params` (same order as `params`) given `∂L/∂W` of the seven linears (and, when
   * `normGrads`, of the norm weights).
   */
  backward(
    dW: LinearGrads,
    grads: readonly Vec[],
    dNorms?: { readonly attn: Float64Array; readonly mlp: Float64Array },
  ): void;
  /** The quantized linears for the current parameter values. */
  fold(): Record<LinearKind, FoldedLinear>;
  /** The RMSNorm weights that go with the folded linears (absent: unchanged). */
  foldNorms?(): { readonly attnNorm: Float32Array; readonly mlpNorm: Float32Array };
  /** Back to the initial parameter values (the NaN/Inf guard's fallback). */
  reset(): void;
}

/** Builds the learner of block `l` from its full-precision weights. */
export type LearnerFactory = (layer: LlamaLayer, l: number, kernels: Kernels) => BlockLearner;

/** Options of {@linkcode reconstructBlocks}. */
export interface ReconstructionOptions {
  readonly kernels: Kernels;
  /** Passes over the calibration windows per block (a positive integer). */
  readonly epochs: number;
  /** Windows per optimizer step (a positive integer). */
  readonly batchSize: number;
  /** Peak learning rate of Adam (> 0). */
  readonly lr: number;
  /** Seed of the window order. */
  readonly seed: number;
  /** Progress in blocks. */
  readonly onProgress?: (done: number, total: number) => void;
  /** Test hook: the loss of this optimizer step (0-based) of this block becomes NaN. */
  readonly injectNaN?: { readonly block: number; readonly step: number };
  /** Learning-rate schedule: `cosine` to 0 over all steps (default) or `constant`. */
  readonly schedule?: "cosine" | "constant";
  /**
   * Activation quantizer of weight-activation cells: applied in training, in the initial and
   * final losses and in the quantized stream (per-token dynamic only).
   */
  readonly activations?: ActivationQuantization;
}

/** What happened to one block. */
export interface BlockReport {
  readonly layer: number;
  /** Loss of the initial parameters over all windows, before any step. */
  readonly initialLoss: number;
  /** Mean loss of the steps of each epoch (fewer entries when the guard stopped the block). */
  readonly epochLosses: readonly number[];
  /** Loss of the folded (exactly quantized) block over all windows. */
  readonly finalLoss: number;
  readonly steps: number;
  /** Why the NaN/Inf guard stopped the block (it then fell back to its initial state). */
  readonly diverged?: string;
  /** Wall-clock seconds spent on the block. */
  readonly seconds: number;
}

/** The outcome of {@linkcode reconstructBlocks}. */
export interface ReconstructionResult {
  readonly weights: LlamaWeights;
  readonly packed: Map<string, PackedWeight>;
  readonly blocks: readonly BlockReport[];
  readonly diagnostics: LinearDiagnostic[];
}

/** Checks the numeric options; throws a `RangeError` naming the first bad one. */
export function validateReconstructionOptions(o: ReconstructionOptions): void {
  if (!Number.isInteger(o.epochs) || o.epochs < 1) {
    throw new RangeError(`Reconstruction epochs must be a positive integer, got ${o.epochs}`);
  }
  if (!Number.isInteger(o.batchSize) || o.batchSize < 1) {
    throw new RangeError(`Reconstruction batchSize must be a positive integer, got ${o.batchSize}`);
  }
  if (!(o.lr > 0) || !Number.isFinite(o.lr)) {
    throw new RangeError(`Reconstruction learning rate lr must be positive, got ${o.lr}`);
  }
}

function linearOf(layer: LlamaLayer, kind: LinearKind): Matrix {
  if (kind === "q" || kind === "k" || kind === "v" || kind === "o") return layer[kind];
  const m = (layer.mlp as DenseMlp)[kind];
  if (!m) throw new UnsupportedConfigError(`Block reconstruction needs a ${kind} projection`);
  return m;
}

/** The seven linears and two norms of a dense layer. */
export function denseBlockWeights(layer: LlamaLayer): BlockWeights {
  if (layer.mlp.kind !== "dense") {
    throw new UnsupportedConfigError("Block reconstruction of MoE blocks is not implemented yet");
  }
  if (
    layer.qBias || layer.kBias || layer.vBias || layer.qNorm || layer.kNorm || layer.oBias ||
    layer.attnNormBias || layer.mlpNormBias || layer.postAttnNorm || layer.postMlpNorm ||
    !layer.mlp.gate
  ) {
    throw new UnsupportedConfigError(
      "Block reconstruction of blocks with biases, q/k norms, LayerNorms, sandwich norms or an " +
        "ungated MLP is not implemented yet",
    );
  }
  const { attnNorm, mlpNorm, q, k, v, o } = layer;
  return {
    attnNorm,
    mlpNorm,
    q,
    k,
    v,
    o,
    gate: layer.mlp.gate,
    up: layer.mlp.up,
    down: layer.mlp.down,
  };
}

/** `layers` with block `l`'s linears and norms replaced by `w`, as a model's weights. */
function withBlock(
  layers: readonly LlamaLayer[],
  l: number,
  w: BlockWeights,
): LlamaWeights & { layers: LlamaLayer[] } {
  const out = [...layers];
  const { attnNorm, mlpNorm, q, k, v, o, gate, up, down } = w;
  out[l] = { attnNorm, mlpNorm, q, k, v, o, mlp: { kind: "dense", gate, up, down } };
  return { embed: EMPTY, norm: new Float32Array(0), lmHead: EMPTY, layers: out };
}

const EMPTY: Matrix = { rows: 0, cols: 0, data: new Float32Array(0) };

function allFinite(arrays: readonly Vec[]): boolean {
  for (const a of arrays) {
    for (let i = 0; i < a.length; i++) if (!Number.isFinite(a[i]!)) return false;
  }
  return true;
}

/**
 * Throws for what block reconstruction does not support: bad numeric options, an untrainable
 * activation quantizer, MoE blocks, architecture features of no differentiable block, online
 * rotations.
 */
function checkReconstructable(model: ForwardModel, options: ReconstructionOptions): void {
  validateReconstructionOptions(options);
  const aq = options.activations;
  if (aq) checkTrainableActQuant(aq);
  const why = reconstructionUnsupported(model);
  if (why) throw new UnsupportedConfigError(why);
}

/**
 * Why the differentiable decoder block cannot reconstruct `model`'s blocks (MoE blocks, the
 * architecture features it lacks, online rotations), or undefined.
 */
export function reconstructionUnsupported(model: ForwardModel): string | undefined {
  if (model.config.moe || model.weights.layers.some((l) => l.mlp.kind !== "dense")) {
    return "Block reconstruction of MoE blocks (per-expert inputs) is not implemented yet";
  }
  const missing = unsupportedFeatures(
    "the differentiable decoder block (block reconstruction)",
    model.config,
    BLOCK_FEATURES,
  );
  if (missing) return missing;
  if (model.weights.online) {
    return "the differentiable decoder block does not implement online rotations (QuaRot)";
  }
  return undefined;
}

/** The state the steps of {@linkcode reconstructBlocks} share. */
interface ReconstructionState {
  readonly config: LlamaConfig;
  readonly kernels: Kernels;
  readonly options: ReconstructionOptions;
  readonly aq: ActivationQuantization | undefined;
  /** The full-precision model. */
  readonly fpModel: ForwardModel;
  /** The blocks as quantized so far. */
  readonly layers: LlamaLayer[];
  readonly packed: Map<string, PackedWeight>;
  readonly diagnostics: LinearDiagnostic[];
  readonly blocks: BlockReport[];
  /** Calibration windows, optimizer steps per epoch and in all. */
  readonly N: number;
  readonly stepsPerEpoch: number;
  readonly totalSteps: number;
  readonly scratch: LinearScratch;
  /** Hidden states at the current block's input: full-precision and quantized streams. */
  fp: Float32Array[];
  quant: Float32Array[];
}

/** Step 1, the targets: the full-precision block `l` on the full-precision stream. */
function blockTargets(s: ReconstructionState, l: number): Float32Array[] {
  const { config, kernels } = s;
  return s.fp.map((x) => {
    const y = x.slice();
    const T = x.length / config.dim;
    layerForward(s.fpModel, l, y, T, createKvCache(config, T), kernels);
    return y;
  });
}

/** Runs the `quant` stream through block `l` of `weights` (the inference forward pass). */
function runQuant(
  s: ReconstructionState,
  l: number,
  weights: LlamaWeights,
  each: (out: Float32Array, n: number) => void,
  observe?: LinearObserver,
): void {
  const { config, aq } = s;
  const m = { config, weights: aq ? { ...weights, activations: aq } : weights };
  s.quant.forEach((x, n) => {
    const y = x.slice();
    const T = x.length / config.dim;
    layerForward(m, l, y, T, createKvCache(config, T), s.kernels, observe);
    each(y, n);
  });
}

/** Window `n`'s share of the block loss: its mean squared error against the target, over `N`. */
function windowLoss(
  s: ReconstructionState,
  targets: readonly Float32Array[],
  out: Float32Array,
  n: number,
): number {
  return squaredError(out, targets[n]!, 1 / out.length) / s.N;
}

/** The training state of one block. */
interface Training {
  readonly lrn: BlockLearner;
  readonly targets: readonly Float32Array[];
  readonly grads: Float64Array[];
  readonly opt: Adam;
  readonly dNorms: { readonly attn: Float64Array; readonly mlp: Float64Array } | undefined;
  readonly epochLosses: number[];
  /** Why the NaN/Inf guard stopped the block. */
  diverged: string | undefined;
  /** Optimizer steps taken. */
  step: number;
}

/** Step 2, learn: Adam over `epochs` passes of the windows in a seeded random order. */
function trainBlock(
  s: ReconstructionState,
  l: number,
  lrn: BlockLearner,
  targets: readonly Float32Array[],
): Training {
  const { options } = s;
  const grads = lrn.params.map((p) => new Float64Array(p.length));
  const opt = new Adam(lrn.params, {
    lr: options.lr,
    steps: s.totalSteps,
    ...(options.schedule ? { schedule: options.schedule } : {}),
    ...(lrn.lrScale ? { lrScale: lrn.lrScale } : {}),
  });
  const dNorms = lrn.normGrads
    ? { attn: new Float64Array(s.config.dim), mlp: new Float64Array(s.config.dim) }
    : undefined;
  const rng = new SeededRng(options.seed * 7919 + l);
  const t: Training = {
    lrn,
    targets,
    grads,
    opt,
    dNorms,
    epochLosses: [],
    diverged: undefined,
    step: 0,
  };
  for (let e = 0; e < options.epochs; e++) {
    const order = rng.permutation(s.N);
    const epochSum = trainEpoch(s, l, t, e, order);
    if (epochSum === undefined) break;
    t.epochLosses.push(epochSum / s.stepsPerEpoch);
  }
  return t;
}

/** One epoch in mini-batches of `order`; the sum of its step losses, undefined if it diverged. */
function trainEpoch(
  s: ReconstructionState,
  l: number,
  t: Training,
  e: number,
  order: readonly number[],
): number | undefined {
  const { batchSize } = s.options;
  let epochSum = 0;
  for (let b = 0; b < s.stepsPerEpoch; b++) {
    const batch = order.slice(b * batchSize, (b + 1) * batchSize);
    const loss = trainStep(s, l, t, e, batch);
    if (loss === undefined) return undefined;
    epochSum += loss;
  }
  return epochSum;
}

/** The NaN/Inf guard: records why, resets the learner to its initial state. */
function diverge(t: Training, reason: string): undefined {
  t.diverged = reason;
  t.lrn.reset();
  return undefined;
}

/** One optimizer step on `batch`; its loss, or undefined when the guard stopped the block. */
function trainStep(
  s: ReconstructionState,
  l: number,
  t: Training,
  e: number,
  batch: readonly number[],
): number | undefined {
  const { lrn, grads, dNorms } = t;
  let w: BlockWeights;
  try {
    w = lrn.weights(e);
  } catch (err) {
    if (!(err instanceof BlockDivergedError)) throw err;
    return diverge(t, `${err.message} at step ${t.step} (epoch ${e})`);
  }
  const dW = zeroLinearGrads(w);
  dNorms?.attn.fill(0);
  dNorms?.mlp.fill(0);
  let loss = batchLossAndGrads(s, w, batch, t.targets, dW, dNorms);
  if (s.options.injectNaN?.block === l && s.options.injectNaN.step === t.step) loss = NaN;
  for (const g of grads) g.fill(0);
  lrn.backward(dW, grads, dNorms);
  if (!Number.isFinite(loss) || !allFinite(grads)) {
    return diverge(
      t,
      `non-finite ${Number.isFinite(loss) ? "gradient" : `loss (${loss})`} at ` +
        `step ${t.step} (epoch ${e})`,
    );
  }
  t.opt.update(grads);
  t.step++;
  return loss;
}

/** The loss of `batch` through the differentiable block `w`, adding `∂L/∂W` into `dW`. */
function batchLossAndGrads(
  s: ReconstructionState,
  w: BlockWeights,
  batch: readonly number[],
  targets: readonly Float32Array[],
  dW: LinearGrads,
  dNorms: Training["dNorms"],
): number {
  const { config, aq } = s;
  const { dim } = config;
  let loss = 0;
  for (const n of batch) {
    const x = s.quant[n]!;
    const T = x.length / dim;
    const lossScale = 1 / (T * dim * batch.length);
    loss += blockForwardBackward(
      w,
      config,
      { x, target: targets[n]!, T, lossScale },
      s.kernels,
      dW,
      s.scratch,
      { ...(aq ? { aq } : {}), ...(dNorms ? { dNorms } : {}) },
    );
  }
  return loss;
}

/** Steps 3.–4., fold: block `l`'s linears (and norms) become the learner's quantized ones. */
function foldBlock(
  s: ReconstructionState,
  l: number,
  lrn: BlockLearner,
): { folded: Record<LinearKind, FoldedLinear>; original: LlamaLayer } {
  const folded = lrn.fold();
  const original = s.layers[l]!;
  const mlp = original.mlp as DenseMlp;
  s.layers[l] = {
    ...original,
    ...(lrn.foldNorms ? lrn.foldNorms() : {}),
    q: folded.q.matrix,
    k: folded.k.matrix,
    v: folded.v.matrix,
    o: folded.o.matrix,
    mlp: { ...mlp, gate: folded.gate.matrix, up: folded.up.matrix, down: folded.down.matrix },
  };
  return { folded, original };
}

/** Per-linear `‖ΔW X‖²` and `‖W X‖²` of a block, summed over the windows. */
interface ErrorSums {
  readonly num: Map<LinearKind, number>;
  readonly den: Map<LinearKind, number>;
}

/** An observer adding the inputs each folded linear sees to `sums`, for `‖ΔW X‖² / ‖W X‖²`. */
function errorObserver(
  original: LlamaLayer,
  deltas: ReadonlyMap<LinearKind, Matrix>,
  { num, den }: ErrorSums,
  kernels: Kernels,
): LinearObserver {
  return (kind, input, T) => {
    if (kind === "router") return; // dense blocks only (MoE is refused above)
    const w0 = linearOf(original, kind);
    const y = new Float32Array(T * w0.rows);
    kernels.matmul(input, T, deltas.get(kind)!, y);
    num.set(kind, num.get(kind)! + squaredError(y, new Float32Array(y.length), 1));
    kernels.matmul(input, T, w0, y);
    den.set(kind, den.get(kind)! + squaredError(y, new Float32Array(y.length), 1));
  };
}

/**
 * Runs the `quant` stream through the folded block `l` (measuring every linear's error sums), makes
 * its outputs the next `quant` stream and `targets` the next `fp` stream; returns the final loss.
 */
function foldedPass(
  s: ReconstructionState,
  l: number,
  original: LlamaLayer,
  folded: Record<LinearKind, FoldedLinear>,
  targets: Float32Array[],
): { finalLoss: number } & ErrorSums {
  const { kernels } = s;
  const num = new Map<LinearKind, number>(), den = new Map<LinearKind, number>();
  const deltas = new Map<LinearKind, Matrix>();
  for (const kind of LINEAR_KINDS) {
    const w0 = linearOf(original, kind);
    const d = new Float32Array(w0.data.length);
    for (let i = 0; i < d.length; i++) d[i] = w0.data[i]! - folded[kind].matrix.data[i]!;
    deltas.set(kind, { rows: w0.rows, cols: w0.cols, data: d });
    num.set(kind, 0);
    den.set(kind, 0);
  }
  const observe = errorObserver(original, deltas, { num, den }, kernels);
  let finalLoss = 0;
  const next: Float32Array[] = [];
  runQuant(s, l, { ...s.fpModel.weights, layers: s.layers }, (out, n) => {
    finalLoss += windowLoss(s, targets, out, n);
    next.push(out);
  }, observe);
  s.quant = next;
  for (const kind of LINEAR_KINDS) releaseMatrix(kernels, deltas.get(kind)!);
  s.fp = targets;
  return { finalLoss, num, den };
}

/** Records block `l`'s packed linears and their diagnostics (`stats` on `q`). */
function recordLinears(
  s: ReconstructionState,
  l: number,
  folded: Record<LinearKind, FoldedLinear>,
  { num, den }: ErrorSums,
  stats: Readonly<Record<string, number>>,
): void {
  for (const kind of LINEAR_KINDS) {
    const name = `layers.${l}.${kind}`;
    const f = folded[kind];
    if (f.packed) s.packed.set(name, f.packed);
    const d = den.get(kind)!;
    s.diagnostics.push({
      name,
      layer: l,
      kind,
      relError: d > 0 ? num.get(kind)! / d : 0,
      ...(kind === "q" ? { stats } : {}),
    });
  }
}

/** Reconstructs block `l` (steps 1–4 of the module documentation) and records its report. */
function reconstructBlock(s: ReconstructionState, l: number, learner: LearnerFactory): void {
  const started = performance.now();
  const targets = blockTargets(s, l);
  const lrn = learner(s.layers[l]!, l, s.kernels);
  let initialLoss = 0;
  runQuant(
    s,
    l,
    withBlock(s.layers, l, lrn.weights(0)),
    (out, n) => initialLoss += windowLoss(s, targets, out, n),
  );
  const { epochLosses, diverged, step } = trainBlock(s, l, lrn, targets);
  const { folded, original } = foldBlock(s, l, lrn);
  const { finalLoss, num, den } = foldedPass(s, l, original, folded, targets);
  recordLinears(s, l, folded, { num, den }, {
    reconLossInitial: initialLoss,
    reconLossFinal: finalLoss,
    steps: step,
    diverged: diverged ? 1 : 0,
  });
  s.blocks.push({
    layer: l,
    initialLoss,
    epochLosses,
    finalLoss,
    steps: step,
    ...(diverged ? { diverged } : {}),
    seconds: (performance.now() - started) / 1000,
  });
}

/**
 * Quantizes every block of a dense Llama model by block reconstruction (see the module
 * documentation). Throws `UnsupportedConfigError` for MoE models and a `RangeError` naming the
 * option for non-positive `epochs`, `batchSize` or `lr`.
 *
 * @param model The full-precision model (not modified).
 * @param calib The calibration windows.
 * @param learner Builds each block's learner.
 * @param options Training schedule, kernels, progress and the NaN test hook.
 */
export function reconstructBlocks(
  model: { readonly config: LlamaConfig; readonly weights: LlamaWeights },
  calib: CalibrationSet,
  learner: LearnerFactory,
  options: ReconstructionOptions,
): ReconstructionResult {
  checkReconstructable(model, options);
  const { config } = model;
  const fpModel = { config, weights: model.weights };
  const layers = [...model.weights.layers];
  const fp: Float32Array[] = calib.windows.map((w) => embedTokens(fpModel, w));
  const N = fp.length;
  const stepsPerEpoch = Math.ceil(N / options.batchSize);
  const s: ReconstructionState = {
    config,
    kernels: options.kernels,
    options,
    aq: options.activations,
    fpModel,
    layers,
    packed: new Map<string, PackedWeight>(),
    diagnostics: [],
    blocks: [],
    N,
    stepsPerEpoch,
    totalSteps: options.epochs * stepsPerEpoch,
    scratch: new LinearScratch(),
    fp,
    quant: fp.map((x) => x.slice()),
  };
  for (let l = 0; l < config.nLayers; l++) {
    reconstructBlock(s, l, learner);
    options.onProgress?.(l + 1, config.nLayers);
  }
  return {
    weights: { ...model.weights, layers },
    packed: s.packed,
    blocks: s.blocks,
    diagnostics: s.diagnostics,
  };
}
