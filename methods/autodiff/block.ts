/**
 * One Llama decoder block, differentiable: the forward pass of `runners/forward.ts`'s
 * `layerForward` (same formulas, same RoPE table, float64 attention sums) keeping the activations
 * the backward pass needs, and a hand-written backward pass that returns the gradient of a loss
 * with respect to the block's seven linear weights (and, optionally, its input).
 *
 * Why hand-written composition rather than a generic tape: the block is one fixed graph of eight
 * op types, so a tape would add bookkeeping (nodes, closures, per-op buffers) without adding
 * generality that reconstruction needs. Written out, the backward pass reads top to bottom
 * against the forward (`out = h + down(silu(gate hn)·up hn)`, `h = x + o(attn(rope q, rope k,
 * v))`), computes only what the weight gradients need (no gradient of the norm weights, the input
 * only on request), and sends every large product through the {@linkcode Kernels} interface, so
 * the WASM backend accelerates training. Each op is its own file with its own backward and its
 * own finite-difference check.
 *
 * Per window of `T` positions starting at 0 (no KV cache):
 * ```
 * xn = rmsnorm(x) · attnNorm;  q = rope(xn Wqᵀ);  k = rope(xn Wkᵀ);  v = xn Wvᵀ
 * att = causalGqa(q, k, v);    h = x + att Woᵀ
 * hn = rmsnorm(h) · mlpNorm;   a = silu(hn Wgateᵀ) ⊙ (hn Wupᵀ);  out = h + a Wdownᵀ
 * ```
 *
 * @module
 */

import type { ActivationQuantization } from "../../core/act_quantizer.ts";
import type { Kernels } from "../../kernels/types.ts";
import type { LinearKind, LlamaConfig, Matrix } from "../../models/types.ts";
import { attentionRef } from "../../kernels/ref/attention.ts";
import { actQuantBackward, actQuantForward } from "./act_quant.ts";
import { attentionBackward } from "./attention.ts";
import { linearInputGrad, LinearScratch, linearWeightGrad } from "./linear.ts";
import { rmsnormBackward, rmsnormForward } from "./rmsnorm.ts";
import { squaredError } from "./mse.ts";
import { applyRope, type RopeTable } from "./rope.ts";
import { configRopeTable } from "../../models/rope.ts";
import type { ArchFeature } from "../../models/arch.ts";
import { swigluBackward, swigluForward } from "./swiglu.ts";

/** The weights of one dense block, as used by the forward pass (e.g. fake-quantized linears). */
export interface BlockWeights {
  readonly attnNorm: Float32Array;
  readonly mlpNorm: Float32Array;
  readonly q: Matrix;
  readonly k: Matrix;
  readonly v: Matrix;
  readonly o: Matrix;
  readonly gate: Matrix;
  readonly up: Matrix;
  readonly down: Matrix;
}

/** The architecture fields a block needs. */
export type BlockConfig =
  & Pick<
    LlamaConfig,
    "dim" | "nHeads" | "nKvHeads" | "headDim" | "normEps" | "ropeTheta" | "ropeStyle"
  >
  & Partial<Pick<LlamaConfig, "ropeScaling" | "maxSeqLen" | "rotaryDim">>;

/**
 * The architecture features (`models/arch.ts`) the differentiable block implements: the plain
 * Llama block with either RoPE pairing and scaled RoPE frequencies.
 */
export const BLOCK_FEATURES: readonly ArchFeature[] = ["interleavedRope", "ropeScaling"];

/** Gradients of the seven linear weights, `[out][in]` each (accumulated into). */
export type LinearGrads = Record<LinearKind, Float32Array>;

/** Zeroed gradient buffers shaped like the block's linears. */
export function zeroLinearGrads(w: BlockWeights): LinearGrads {
  return {
    q: new Float32Array(w.q.data.length),
    k: new Float32Array(w.k.data.length),
    v: new Float32Array(w.v.data.length),
    o: new Float32Array(w.o.data.length),
    gate: new Float32Array(w.gate.data.length),
    up: new Float32Array(w.up.data.length),
    down: new Float32Array(w.down.data.length),
  };
}

/** What the forward pass keeps for the backward pass. */
export interface BlockActivations {
  readonly T: number;
  readonly x: Float32Array;
  readonly xn: Float32Array;
  readonly inv1: Float32Array;
  /** Queries and keys after RoPE. */
  readonly q: Float32Array;
  readonly k: Float32Array;
  readonly v: Float32Array;
  readonly att: Float32Array;
  readonly h: Float32Array;
  readonly hn: Float32Array;
  readonly inv2: Float32Array;
  readonly g: Float32Array;
  readonly u: Float32Array;
  readonly a: Float32Array;
  /** The block's output `[T][dim]`. */
  readonly out: Float32Array;
  /**
   * With activation quantization: the quantizer and the fake-quantized inputs of the four sites
   * (q/k/v, o, gate/up, down) that the linears saw; absent for float activations.
   */
  readonly quant?: {
    readonly aq: ActivationQuantization;
    readonly xn: Float32Array;
    readonly att: Float32Array;
    readonly hn: Float32Array;
    readonly a: Float32Array;
  };
}

function ropeFor(c: BlockConfig, T: number): RopeTable {
  return configRopeTable({ maxSeqLen: T, ...c }, T);
}

/**
 * Runs the block on `x` (`[T][dim]`, not modified) and keeps the activations. With `aq`, the
 * inputs of the four linear sites are fake-quantized as the inference forward pass does
 * (`runners/forward.ts`; per-token dynamic quantizers only, see `act_quant.ts`).
 */
export function blockForward(
  w: BlockWeights,
  c: BlockConfig,
  x: Float32Array,
  T: number,
  kernels: Kernels,
  aq?: ActivationQuantization,
): BlockActivations {
  const { dim, nHeads, nKvHeads, headDim } = c;
  if (x.length < T * dim) throw new RangeError(`blockForward: x holds ${x.length} values`);
  const qDim = nHeads * headDim;
  const kvDim = nKvHeads * headDim;
  const hidden = w.gate.rows;
  const xn = new Float32Array(T * dim);
  const inv1 = new Float32Array(T);
  rmsnormForward(x, T, w.attnNorm, c.normEps, xn, inv1);
  const q = new Float32Array(T * qDim);
  const k = new Float32Array(T * kvDim);
  const v = new Float32Array(T * kvDim);
  const xnIn = aq ? actQuantForward(aq, xn, T, dim) : xn;
  kernels.matmul(xnIn, T, w.q, q);
  kernels.matmul(xnIn, T, w.k, k);
  kernels.matmul(xnIn, T, w.v, v);
  const rope = ropeFor(c, T);
  applyRope(q, T, nHeads, headDim, rope, c.ropeStyle);
  applyRope(k, T, nKvHeads, headDim, rope, c.ropeStyle);
  const att = new Float32Array(T * qDim);
  (kernels.attention ?? attentionRef)(q, k, v, T, 0, c, att);
  const h = new Float32Array(T * dim);
  const attIn = aq ? actQuantForward(aq, att, T, qDim) : att;
  kernels.matmul(attIn, T, w.o, h);
  for (let i = 0; i < h.length; i++) h[i] = x[i]! + h[i]!;
  const hn = new Float32Array(T * dim);
  const inv2 = new Float32Array(T);
  rmsnormForward(h, T, w.mlpNorm, c.normEps, hn, inv2);
  const g = new Float32Array(T * hidden);
  const u = new Float32Array(T * hidden);
  const hnIn = aq ? actQuantForward(aq, hn, T, dim) : hn;
  kernels.matmul(hnIn, T, w.gate, g);
  kernels.matmul(hnIn, T, w.up, u);
  const a = new Float32Array(T * hidden);
  swigluForward(g, u, a);
  const out = new Float32Array(T * dim);
  const aIn = aq ? actQuantForward(aq, a, T, hidden) : a;
  kernels.matmul(aIn, T, w.down, out);
  for (let i = 0; i < out.length; i++) out[i] = h[i]! + out[i]!;
  const quant = aq ? { aq, xn: xnIn, att: attIn, hn: hnIn, a: aIn } : undefined;
  return { T, x, xn, inv1, q, k, v, att, h, hn, inv2, g, u, a, out, ...(quant ? { quant } : {}) };
}

/** Options of {@linkcode blockBackward}. */
export interface BlockBackwardOptions {
  /** Also compute `∂L/∂x` into this buffer (`[T][dim]`, overwritten). */
  readonly dx?: Float32Array;
  /** Reused scratch (one per training loop saves allocations). */
  readonly scratch?: LinearScratch;
  /** Also add `∂L/∂attnNorm` and `∂L/∂mlpNorm` (`[dim]` each) to these buffers. */
  readonly dNorms?: { readonly attn: Float64Array; readonly mlp: Float64Array };
}

/** Adds `∂L/∂g_j = Σ_t dxn_tj · x_tj · inv_t` (RMSNorm weight gradient) to `dg`. */
function normWeightGrad(
  x: Float32Array,
  inv: Float32Array,
  dxn: Float32Array,
  T: number,
  dim: number,
  dg: Float64Array,
): void {
  for (let t = 0; t < T; t++) {
    const r = inv[t]!;
    for (let j = 0; j < dim; j++) dg[j] = dg[j]! + dxn[t * dim + j]! * x[t * dim + j]! * r;
  }
}

/**
 * Adds `∂L/∂W` of every linear to `grads` given `dOut = ∂L/∂out` (`[T][dim]`) and the forward
 * activations `act` of the same weights `w`.
 */
export function blockBackward(
  w: BlockWeights,
  c: BlockConfig,
  act: BlockActivations,
  dOut: Float32Array,
  kernels: Kernels,
  grads: LinearGrads,
  options: BlockBackwardOptions = {},
): void {
  const { T } = act;
  const { dim, nHeads, nKvHeads, headDim } = c;
  const qDim = nHeads * headDim;
  const kvDim = nKvHeads * headDim;
  const hidden = w.gate.rows;
  const s = options.scratch ?? new LinearScratch();
  const aq = act.quant;
  const inputs = aq ?? act;

  // out = h + a Wdownᵀ
  linearWeightGrad(kernels, inputs.a, dOut, T, w.down, grads.down, s);
  const da = new Float32Array(T * hidden);
  linearInputGrad(kernels, dOut, T, w.down, da, s);
  if (aq) actQuantBackward(aq.aq, act.a, T, hidden, da, da);
  const dg = new Float32Array(T * hidden);
  const du = new Float32Array(T * hidden);
  swigluBackward(act.g, act.u, da, dg, du);
  linearWeightGrad(kernels, inputs.hn, dg, T, w.gate, grads.gate, s);
  linearWeightGrad(kernels, inputs.hn, du, T, w.up, grads.up, s);
  const dhn = new Float32Array(T * dim);
  linearInputGrad(kernels, dg, T, w.gate, dhn, s);
  linearInputGrad(kernels, du, T, w.up, dhn, s, true);
  if (aq) actQuantBackward(aq.aq, act.hn, T, dim, dhn, dhn);
  if (options.dNorms) normWeightGrad(act.h, act.inv2, dhn, T, dim, options.dNorms.mlp);
  const dh = Float32Array.from(dOut.subarray(0, T * dim));
  rmsnormBackward(act.h, T, w.mlpNorm, act.inv2, dhn, dh);

  // h = x + att Woᵀ
  linearWeightGrad(kernels, inputs.att, dh, T, w.o, grads.o, s);
  const datt = new Float32Array(T * qDim);
  linearInputGrad(kernels, dh, T, w.o, datt, s);
  if (aq) actQuantBackward(aq.aq, act.att, T, qDim, datt, datt);
  const dq = new Float32Array(T * qDim);
  const dk = new Float32Array(T * kvDim);
  const dv = new Float32Array(T * kvDim);
  attentionBackward(act.q, act.k, act.v, act.att, datt, T, c, { dq, dk, dv }, kernels);
  const rope = ropeFor(c, T);
  applyRope(dq, T, nHeads, headDim, rope, c.ropeStyle, true);
  applyRope(dk, T, nKvHeads, headDim, rope, c.ropeStyle, true);
  linearWeightGrad(kernels, inputs.xn, dq, T, w.q, grads.q, s);
  linearWeightGrad(kernels, inputs.xn, dk, T, w.k, grads.k, s);
  linearWeightGrad(kernels, inputs.xn, dv, T, w.v, grads.v, s);

  if (options.dx || options.dNorms) {
    const dxn = new Float32Array(T * dim);
    linearInputGrad(kernels, dq, T, w.q, dxn, s);
    linearInputGrad(kernels, dk, T, w.k, dxn, s, true);
    linearInputGrad(kernels, dv, T, w.v, dxn, s, true);
    if (aq) actQuantBackward(aq.aq, act.xn, T, dim, dxn, dxn);
    if (options.dNorms) normWeightGrad(act.x, act.inv1, dxn, T, dim, options.dNorms.attn);
    const dx = options.dx;
    if (!dx) return;
    dx.set(dh);
    rmsnormBackward(act.x, T, w.attnNorm, act.inv1, dxn, dx);
  }
}

/**
 * Forward, squared-error loss `lossScale · Σ (out − target)²` against `target` (`[T][dim]`), and
 * backward: adds the weight gradients of that loss to `grads` and returns the loss. `extra.aq`
 * quantizes the linears' inputs (see {@linkcode blockForward}); `extra.dNorms` also receives the
 * RMSNorm weight gradients.
 *
 * @example Gradient of one window's mean squared error
 * ```ts ignore
 * const grads = zeroLinearGrads(weights);
 * const loss = blockForwardBackward(weights, config, { x, target, T }, kernels, grads);
 * ```
 */
export function blockForwardBackward(
  w: BlockWeights,
  c: BlockConfig,
  data: { x: Float32Array; target: Float32Array; T: number; lossScale?: number },
  kernels: Kernels,
  grads: LinearGrads,
  scratch?: LinearScratch,
  extra: Pick<BlockBackwardOptions, "dNorms"> & { readonly aq?: ActivationQuantization } = {},
): number {
  const act = blockForward(w, c, data.x, data.T, kernels, extra.aq);
  const n = data.T * c.dim;
  const scale = data.lossScale ?? 1 / n;
  const dOut = new Float32Array(n);
  const loss = squaredError(act.out, data.target.subarray(0, n), scale, dOut);
  blockBackward(w, c, act, dOut, kernels, grads, {
    ...(scratch ? { scratch } : {}),
    ...(extra.dNorms ? { dNorms: extra.dNorms } : {}),
  });
  return loss;
}
