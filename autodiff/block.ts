/**
 * One Llama decoder block, differentiable: the forward pass of `models/forward.ts`'s
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

import type { Kernels } from "../kernels/types.ts";
import type { LinearKind, LlamaConfig, Matrix } from "../models/types.ts";
import { attentionRef } from "../kernels/ref/attention.ts";
import { attentionBackward } from "./attention.ts";
import { linearInputGrad, LinearScratch, linearWeightGrad } from "./linear.ts";
import { rmsnormBackward, rmsnormForward } from "./rmsnorm.ts";
import { squaredError } from "./mse.ts";
import { applyRope, type RopeTable } from "./rope.ts";
import { cachedRopeTable } from "../models/rope.ts";
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
export type BlockConfig = Pick<
  LlamaConfig,
  "dim" | "nHeads" | "nKvHeads" | "headDim" | "normEps" | "ropeTheta" | "ropeStyle"
>;

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
}

function ropeFor(c: BlockConfig, T: number): RopeTable {
  return cachedRopeTable(c.headDim, c.ropeTheta, T);
}

/** Runs the block on `x` (`[T][dim]`, not modified) and keeps the activations. */
export function blockForward(
  w: BlockWeights,
  c: BlockConfig,
  x: Float32Array,
  T: number,
  kernels: Kernels,
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
  kernels.matmul(xn, T, w.q, q);
  kernels.matmul(xn, T, w.k, k);
  kernels.matmul(xn, T, w.v, v);
  const rope = ropeFor(c, T);
  applyRope(q, T, nHeads, headDim, rope, c.ropeStyle);
  applyRope(k, T, nKvHeads, headDim, rope, c.ropeStyle);
  const att = new Float32Array(T * qDim);
  (kernels.attention ?? attentionRef)(q, k, v, T, 0, c, att);
  const h = new Float32Array(T * dim);
  kernels.matmul(att, T, w.o, h);
  for (let i = 0; i < h.length; i++) h[i] = x[i]! + h[i]!;
  const hn = new Float32Array(T * dim);
  const inv2 = new Float32Array(T);
  rmsnormForward(h, T, w.mlpNorm, c.normEps, hn, inv2);
  const g = new Float32Array(T * hidden);
  const u = new Float32Array(T * hidden);
  kernels.matmul(hn, T, w.gate, g);
  kernels.matmul(hn, T, w.up, u);
  const a = new Float32Array(T * hidden);
  swigluForward(g, u, a);
  const out = new Float32Array(T * dim);
  kernels.matmul(a, T, w.down, out);
  for (let i = 0; i < out.length; i++) out[i] = h[i]! + out[i]!;
  return { T, x, xn, inv1, q, k, v, att, h, hn, inv2, g, u, a, out };
}

/** Options of {@linkcode blockBackward}. */
export interface BlockBackwardOptions {
  /** Also compute `∂L/∂x` into this buffer (`[T][dim]`, overwritten). */
  readonly dx?: Float32Array;
  /** Reused scratch (one per training loop saves allocations). */
  readonly scratch?: LinearScratch;
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

  // out = h + a Wdownᵀ
  linearWeightGrad(kernels, act.a, dOut, T, w.down, grads.down, s);
  const da = new Float32Array(T * hidden);
  linearInputGrad(kernels, dOut, T, w.down, da, s);
  const dg = new Float32Array(T * hidden);
  const du = new Float32Array(T * hidden);
  swigluBackward(act.g, act.u, da, dg, du);
  linearWeightGrad(kernels, act.hn, dg, T, w.gate, grads.gate, s);
  linearWeightGrad(kernels, act.hn, du, T, w.up, grads.up, s);
  const dhn = new Float32Array(T * dim);
  linearInputGrad(kernels, dg, T, w.gate, dhn, s);
  linearInputGrad(kernels, du, T, w.up, dhn, s, true);
  const dh = Float32Array.from(dOut.subarray(0, T * dim));
  rmsnormBackward(act.h, T, w.mlpNorm, act.inv2, dhn, dh);

  // h = x + att Woᵀ
  linearWeightGrad(kernels, act.att, dh, T, w.o, grads.o, s);
  const datt = new Float32Array(T * qDim);
  linearInputGrad(kernels, dh, T, w.o, datt, s);
  const dq = new Float32Array(T * qDim);
  const dk = new Float32Array(T * kvDim);
  const dv = new Float32Array(T * kvDim);
  attentionBackward(act.q, act.k, act.v, act.att, datt, T, c, { dq, dk, dv }, kernels);
  const rope = ropeFor(c, T);
  applyRope(dq, T, nHeads, headDim, rope, c.ropeStyle, true);
  applyRope(dk, T, nKvHeads, headDim, rope, c.ropeStyle, true);
  linearWeightGrad(kernels, act.xn, dq, T, w.q, grads.q, s);
  linearWeightGrad(kernels, act.xn, dk, T, w.k, grads.k, s);
  linearWeightGrad(kernels, act.xn, dv, T, w.v, grads.v, s);

  if (options.dx) {
    const dxn = new Float32Array(T * dim);
    linearInputGrad(kernels, dq, T, w.q, dxn, s);
    linearInputGrad(kernels, dk, T, w.k, dxn, s, true);
    linearInputGrad(kernels, dv, T, w.v, dxn, s, true);
    const dx = options.dx;
    dx.set(dh);
    rmsnormBackward(act.x, T, w.attnNorm, act.inv1, dxn, dx);
  }
}

/**
 * Forward, squared-error loss `lossScale · Σ (out − target)²` against `target` (`[T][dim]`), and
 * backward: adds the weight gradients of that loss to `grads` and returns the loss.
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
): number {
  const act = blockForward(w, c, data.x, data.T, kernels);
  const n = data.T * c.dim;
  const scale = data.lossScale ?? 1 / n;
  const dOut = new Float32Array(n);
  const loss = squaredError(act.out, data.target.subarray(0, n), scale, dOut);
  blockBackward(w, c, act, dOut, kernels, grads, scratch ? { scratch } : {});
  return loss;
}
