/**
 * AffineQuant's learnable transforms and clipping for one block (official `bytedance/AffineQuant`
 * `quantize/affinequant.py`, `models/transformation.py`, `models/int_llama_layer.py`
 * `smooth_and_quant_temporary`), as a {@linkcode BlockLearner} for the reconstruction driver.
 *
 * Trainable tensors (`let` group, rate `letLr`; `lwc` group, rate `lwcLr`):
 * - `qkv`, `fc1`: the transforms of the inputs of q/k/v and of gate/up. With `lnMatrix`
 *   (`--use_ln_matrix`) full `dim × dim` matrices `A`, initialised to `diag(s)`; otherwise
 *   vectors `s` (OmniQuant's diagonal, folded into the RMSNorm weights).
 * - `out`: the v → o transform, always matrices: one `headDim × headDim` block per key/value
 *   head, initialised to `diag(s)`.
 * - `qk`: the q·kᵀ transform: with `qkMatrix` (`--use_matrix`) one `headDim × headDim` block per
 *   key/value head initialised to the identity, otherwise a vector of ones (one per key channel).
 * - LWC `γ`, `β` of the seven linears (`methods/autodiff/lwc.ts`, initialised to 4).
 *
 * Each step, as the official code: every transform entry with `|a| < 1e-2` is set to
 * `sign(a) · 1e-2` in place (`truncate_number`; exact zeros stay 0), the matrices are masked,
 * `Â = A ⊙ M_e`, with the gradual mask of epoch `e` ({@linkcode gradualMask}), and
 * - q/k/v, gate/up: `W₁ = W Âᵀ` (matrix) or `W diag(s)` (vector, norm weight ÷ s);
 * - v → o: `W_v₂ = Â_h⁻ᵀ W_v₁` per head's rows, `W_o₂ = W_o Â_hᵀ` per head's columns;
 * - q·k: `W_q₂ = Â_h⁻ᵀ W_q₁`, `W_k₂ = Â_h W_k₁` per head (matrix), or `W_q₁ / s`, `W_k₁ · s` by
 *   rows (vector);
 * - every linear fake-quantized with LWC: `Q = LWC(W₂)`;
 * - with `lnMatrix`, the runtime input transform `x Â⁻¹` of q/k/v and gate/up is merged into the
 *   evaluated weight: `x Â⁻¹ Qᵀ = x (Q Â⁻ᵀ)ᵀ`, so the block the driver runs carries
 *   `Q Â⁻ᵀ` (exact for float activations; see the method's notes for activation quantization).
 *
 * Grouped-query attention (the official code handles multi-head attention only): the v → o and
 * q·k transforms have one block per key/value head, shared by the query heads of its group (the
 * columns of o and the rows of q of every query head use its key/value head's block).
 *
 * Gradients: by hand through each step (`d(A⁻¹) = −A⁻¹ dA A⁻¹` in `methods/autodiff/inverse.ts`), the
 * truncation passing the gradient unchanged (the official projection happens outside autograd),
 * the mask multiplying it. Matrices, inverses and transformed weights are float64; the block
 * runs in float32. A singular masked matrix stops the block with {@linkcode BlockDivergedError}
 * (the driver falls back to the initial transforms and records it).
 *
 * @module
 */

import { inverseBackward, invertMatrix, SingularMatrixError } from "./autodiff/inverse.ts";
import { initLwc, lwcBackward, lwcForward, lwcGroup, type LwcParams } from "./autodiff/lwc.ts";
import type { BlockConfig, BlockWeights, LinearGrads } from "./autodiff/block.ts";
import { releaseMatrix } from "./autodiff/linear.ts";
import type { Vec } from "./autodiff/types.ts";
import {
  BlockDivergedError,
  type BlockLearner,
  denseBlockWeights,
  type FoldedLinear,
} from "./calibration/reconstruct.ts";
import { packCodes, roundHalfEven } from "../core/quantizer.ts";
import type { Kernels } from "../kernels/types.ts";
import { LINEAR_KINDS, type LinearKind, type LlamaLayer, type Matrix } from "../models/types.ts";

/** Entries of a transform with `|a|` below this are pushed to `± TRUNCATE` (official 1e-2). */
export const TRUNCATE = 1e-2;

/** Settings of an AffineQuant learner. */
export interface AffineQuantSpec {
  /** Weight bits (16 or more: weights not quantized, for tests). */
  readonly bits: number;
  /** Input columns per group; absent for per-channel. */
  readonly groupSize?: number;
  readonly symmetric: boolean;
  /** Full matrices for the q/k/v and gate/up inputs (`--use_ln_matrix`). */
  readonly lnMatrix: boolean;
  /** Per-head matrices between q and k (`--use_matrix`). */
  readonly qkMatrix: boolean;
  /** Stability factor: weight of the unmasked off-diagonals, in (0, 1]. */
  readonly sf: number;
  /** Epochs of the schedule the gradual mask spans. */
  readonly epochs: number;
  /** `let_lr / lwc_lr`: the transforms' learning rate relative to the driver's (LWC's). */
  readonly letLrScale: number;
}

/** SmoothQuant-style initial scales of one block (lengths `dim`, `dim`, `nKvHeads·headDim`). */
export interface AffineInit {
  readonly qkv: Float32Array;
  readonly fc1: Float32Array;
  readonly out: Float32Array;
}

/**
 * Unmasked diagonals at 0-based `epoch` of `epochs` for size `d`:
 * `⌊(d − 1)/(epochs − 1) · epoch⌋ + 1` (official; 1 — the diagonal only — when `epochs` is 1,
 * where the official formula divides by zero).
 */
export function unmaskedBands(d: number, epoch: number, epochs: number): number {
  if (epochs <= 1) return 1;
  return Math.min(d, Math.floor(((d - 1) / (epochs - 1)) * epoch) + 1);
}

/**
 * The gradual mask (`d × d`, row-major) with `k` unmasked diagonals: 1 on the diagonal, `sf` where
 * `0 < |i − j| < k`, 0 elsewhere.
 */
export function gradualMask(d: number, k: number, sf: number): Float64Array {
  const m = new Float64Array(d * d);
  for (let i = 0; i < d; i++) {
    for (let j = 0; j < d; j++) {
      const o = Math.abs(i - j);
      m[i * d + j] = o === 0 ? 1 : o < k ? sf : 0;
    }
  }
  return m;
}

/** In place: entries with `|a| < TRUNCATE` become `sign(a) · TRUNCATE` (zeros stay). */
export function truncateSmall(a: Vec): void {
  for (let i = 0; i < a.length; i++) {
    const v = a[i]!;
    if (Math.abs(v) < TRUNCATE) a[i] = Math.sign(v) * TRUNCATE;
  }
}

// --- small dense products (row-major, float64) ----------------------------------------------

/** `A Bᵀ`: `A` `[m][k]`, `B` `[n][k]` → `[m][n]`. */
function mulABt(a: Vec, b: Vec, m: number, k: number, n: number): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j < n; j++) {
      let s = 0;
      for (let t = 0; t < k; t++) s += a[i * k + t]! * b[j * k + t]!;
      c[i * n + j] = s;
    }
  }
  return c;
}

/** `A B`: `A` `[m][k]`, `B` `[k][n]` → `[m][n]`. */
function mulAB(a: Vec, b: Vec, m: number, k: number, n: number): Float64Array {
  const c = new Float64Array(m * n);
  for (let i = 0; i < m; i++) {
    for (let t = 0; t < k; t++) {
      const x = a[i * k + t]!;
      if (x === 0) continue;
      for (let j = 0; j < n; j++) c[i * n + j] = c[i * n + j]! + x * b[t * n + j]!;
    }
  }
  return c;
}

/** Adds `Aᵀ B` (`A` `[k][m]`, `B` `[k][n]`) to `c` (`[m][n]`). */
function addAtB(a: Vec, b: Vec, k: number, m: number, n: number, c: Float64Array): void {
  for (let t = 0; t < k; t++) {
    for (let i = 0; i < m; i++) {
      const x = a[t * m + i]!;
      if (x === 0) continue;
      for (let j = 0; j < n; j++) c[i * n + j] = c[i * n + j]! + x * b[t * n + j]!;
    }
  }
}

function diagOf(s: ArrayLike<number>): Float64Array {
  const d = s.length;
  const m = new Float64Array(d * d);
  for (let i = 0; i < d; i++) m[i * d + i] = s[i]!;
  return m;
}

/** Per-head blocks `[heads][hd][hd]` of `diag(s)`. */
function headDiag(s: ArrayLike<number>, heads: number, hd: number): Float64Array {
  const m = new Float64Array(heads * hd * hd);
  for (let h = 0; h < heads; h++) {
    for (let i = 0; i < hd; i++) m[h * hd * hd + i * hd + i] = s[h * hd + i]!;
  }
  return m;
}

function invertOrDiverge(m: Float64Array, d: number, what: string): Float64Array {
  try {
    return invertMatrix(m, d);
  } catch (e) {
    if (e instanceof SingularMatrixError) {
      throw new BlockDivergedError(`singular affine matrix ${what}: ${e.message}`);
    }
    throw e;
  }
}

/** Everything a forward pass computes that the backward pass needs. */
interface Tape {
  readonly maskD: Float64Array;
  readonly maskH: Float64Array;
  /** Masked matrices and inverses (`qkv`, `fc1` when `lnMatrix`; per head `out`, `qk`). */
  readonly mQkv?: Float64Array;
  readonly nQkv?: Float64Array;
  readonly mFc1?: Float64Array;
  readonly nFc1?: Float64Array;
  readonly mOut: Float64Array[];
  readonly nOut: Float64Array[];
  readonly mQk?: Float64Array[];
  readonly nQk?: Float64Array[];
  /** Weights after the input transforms (`W₁`) and after all transforms (`W₂`). */
  readonly w1: Record<LinearKind, Float64Array>;
  readonly w2: Record<LinearKind, Float64Array>;
  /** LWC outputs `Q`. */
  readonly q: Record<LinearKind, Float64Array>;
}

/** The learner's fixed inputs and trainable tensors, shared by its forward and backward passes. */
interface AffineState {
  readonly spec: AffineQuantSpec;
  readonly dim: number;
  readonly nKvHeads: number;
  /** Head dimension. */
  readonly hd: number;
  /** Query heads per key/value head. */
  readonly group: number;
  /** The block's full-precision weights (norms and linears). */
  readonly base: BlockWeights;
  /** The seven full-precision linears. */
  readonly orig: Record<LinearKind, Matrix>;
  /** `orig` in float64. */
  readonly W: Record<LinearKind, Float64Array>;
  readonly lwc: Record<LinearKind, LwcParams>;
  /** The transforms (`let` group), updated in place by the optimizer. */
  readonly qkv: Float64Array;
  readonly fc1: Float64Array;
  readonly out: Float64Array;
  readonly qk: Float64Array;
  /** `[qkv, fc1, out, qk]`. */
  readonly letParams: Float64Array[];
}

/** The `dNorms` argument of {@linkcode BlockLearner.backward}. */
type NormGrads = Parameters<BlockLearner["backward"]>[2];

/** Throws a `RangeError` naming `sf` outside (0, 1] or a non-positive `epochs` or `letLrScale`. */
function checkSpec(spec: AffineQuantSpec): void {
  if (!(spec.sf > 0 && spec.sf <= 1)) {
    throw new RangeError(`AffineQuant stability factor sf must be in (0, 1], got ${spec.sf}`);
  }
  if (!Number.isInteger(spec.epochs) || spec.epochs < 1) {
    throw new RangeError(`AffineQuant epochs must be a positive integer, got ${spec.epochs}`);
  }
  if (!(spec.letLrScale > 0) || !Number.isFinite(spec.letLrScale)) {
    throw new RangeError(`AffineQuant letLrScale must be positive, got ${spec.letLrScale}`);
  }
}

/**
 * The initial state: LWC at its initial value and the transforms at `diag(s)` (matrices) or `s`
 * (vectors) of the initial scales, `qk` at the identity or ones. Throws a `RangeError` on initial
 * scales of the wrong length.
 */
function initAffineState(
  layer: LlamaLayer,
  config: BlockConfig,
  spec: AffineQuantSpec,
  init: AffineInit,
): AffineState {
  const base = denseBlockWeights(layer);
  const { dim, nHeads, nKvHeads, headDim: hd } = config;
  const group = nHeads / nKvHeads;
  const kvDim = nKvHeads * hd;
  const orig = Object.fromEntries(LINEAR_KINDS.map((k) => [k, base[k]])) as Record<
    LinearKind,
    Matrix
  >;
  for (
    const [name, v, n] of [["qkv", init.qkv, dim], ["fc1", init.fc1, dim], [
      "out",
      init.out,
      kvDim,
    ]] as const
  ) {
    if (v.length !== n) {
      throw new RangeError(
        `AffineQuant initial scales ${name}: expected ${n} values, got ${v.length}`,
      );
    }
  }
  const lwcSpec = {
    bits: spec.bits,
    symmetric: spec.symmetric,
    ...(spec.groupSize !== undefined ? { groupSize: spec.groupSize } : {}),
  };
  const lwc = Object.fromEntries(
    LINEAR_KINDS.map((k) => [k, initLwc(orig[k].rows, orig[k].cols, lwcSpec)]),
  ) as Record<LinearKind, LwcParams>;

  const qkv = spec.lnMatrix ? diagOf(init.qkv) : Float64Array.from(init.qkv);
  const fc1 = spec.lnMatrix ? diagOf(init.fc1) : Float64Array.from(init.fc1);
  const out = headDiag(init.out, nKvHeads, hd);
  const qk = spec.qkMatrix
    ? headDiag(new Float64Array(kvDim).fill(1), nKvHeads, hd)
    : new Float64Array(kvDim).fill(1);
  const f64 = (m: Matrix) => Float64Array.from(m.data);
  const W = Object.fromEntries(LINEAR_KINDS.map((k) => [k, f64(orig[k])])) as Record<
    LinearKind,
    Float64Array
  >;
  const letParams: Float64Array[] = [qkv, fc1, out, qk];
  return { spec, dim, nKvHeads, hd, group, base, orig, W, lwc, qkv, fc1, out, qk, letParams };
}

/**
 * The input transforms of q/k/v and gate/up: `W₁ = W Âᵀ` with the masked matrices and their
 * inverses (`lnMatrix`), or `W diag(s)`; `W₁` of o and down is `W`.
 */
function inputTransforms(
  st: AffineState,
  maskD: Float64Array,
): Pick<Tape, "w1" | "mQkv" | "nQkv" | "mFc1" | "nFc1"> {
  const { spec, dim, orig, W, qkv, fc1 } = st;
  const w1 = {} as Record<LinearKind, Float64Array>;
  if (spec.lnMatrix) {
    const mQkv = qkv.map((a, i) => a * maskD[i]!);
    const mFc1 = fc1.map((a, i) => a * maskD[i]!);
    const nQkv = invertOrDiverge(mQkv, dim, "qkv");
    const nFc1 = invertOrDiverge(mFc1, dim, "fc1");
    for (const k of ["q", "k", "v"] as const) w1[k] = mulABt(W[k], mQkv, orig[k].rows, dim, dim);
    for (const k of ["gate", "up"] as const) w1[k] = mulABt(W[k], mFc1, orig[k].rows, dim, dim);
    w1.o = W.o;
    w1.down = W.down;
    return { w1, mQkv, nQkv, mFc1, nFc1 };
  }
  const scaleCols = (w: Float64Array, s: Float64Array) => w.map((v, i) => v * s[i % dim]!);
  for (const k of ["q", "k", "v"] as const) w1[k] = scaleCols(W[k], qkv);
  for (const k of ["gate", "up"] as const) w1[k] = scaleCols(W[k], fc1);
  w1.o = W.o;
  w1.down = W.down;
  return { w1 };
}

/**
 * The v → o transform per key/value head: `W_v₂ = Â_h⁻ᵀ W_v₁` by rows, `W_o₂ = W_o Â_hᵀ` by the
 * columns of every query head of the group, with the masked matrices and inverses.
 */
function outTransform(
  st: AffineState,
  w1: Record<LinearKind, Float64Array>,
  maskH: Float64Array,
): { mOut: Float64Array[]; nOut: Float64Array[]; v2: Float64Array; o2: Float64Array } {
  const { dim, nKvHeads, hd, group, orig, W, out } = st;
  const mOut: Float64Array[] = [], nOut: Float64Array[] = [];
  const v2 = new Float64Array(w1.v.length);
  const o2 = new Float64Array(W.o.length);
  const oRows = orig.o.rows, oCols = orig.o.cols;
  for (let h = 0; h < nKvHeads; h++) {
    const m = out.subarray(h * hd * hd, (h + 1) * hd * hd).map((a, i) => a * maskH[i]!);
    const n = invertOrDiverge(m, hd, `out (head ${h})`);
    mOut.push(m);
    nOut.push(n);
    // rows of v: Nᵀ v₁[h]
    const vb = w1.v.subarray(h * hd * dim, (h + 1) * hd * dim);
    const r = new Float64Array(hd * dim);
    addAtB(n, vb, hd, hd, dim, r);
    v2.set(r, h * hd * dim);
    for (let j = h * group; j < (h + 1) * group; j++) {
      for (let row = 0; row < oRows; row++) {
        const base = row * oCols + j * hd;
        for (let a = 0; a < hd; a++) {
          let s = 0;
          for (let b = 0; b < hd; b++) s += W.o[base + b]! * m[a * hd + b]!;
          o2[base + a] = s;
        }
      }
    }
  }
  return { mOut, nOut, v2, o2 };
}

/**
 * The q · k transform: per key/value head `W_q₂ = Â_h⁻ᵀ W_q₁` (rows of every query head of the
 * group), `W_k₂ = Â_h W_k₁` with the masked matrices and inverses (`qkMatrix`), or `W_q₁ / s`,
 * `W_k₁ · s` by rows.
 */
function qkTransform(
  st: AffineState,
  w1: Record<LinearKind, Float64Array>,
  maskH: Float64Array,
): { mQk?: Float64Array[]; nQk?: Float64Array[]; q2: Float64Array; k2: Float64Array } {
  const { spec, dim, nKvHeads, hd, group, orig, qk } = st;
  const q2 = new Float64Array(w1.q.length), k2 = new Float64Array(w1.k.length);
  if (!spec.qkMatrix) {
    for (let r = 0; r < orig.q.rows; r++) {
      const s = qk[Math.floor(r / (group * hd)) * hd + (r % hd)]!;
      for (let c = 0; c < dim; c++) q2[r * dim + c] = w1.q[r * dim + c]! / s;
    }
    for (let r = 0; r < orig.k.rows; r++) {
      for (let c = 0; c < dim; c++) k2[r * dim + c] = w1.k[r * dim + c]! * qk[r]!;
    }
    return { q2, k2 };
  }
  const mQk: Float64Array[] = [], nQk: Float64Array[] = [];
  for (let h = 0; h < nKvHeads; h++) {
    const m = qk.subarray(h * hd * hd, (h + 1) * hd * hd).map((a, i) => a * maskH[i]!);
    const n = invertOrDiverge(m, hd, `qk (head ${h})`);
    mQk.push(m);
    nQk.push(n);
    for (let j = h * group; j < (h + 1) * group; j++) {
      const r = new Float64Array(hd * dim);
      addAtB(n, w1.q.subarray(j * hd * dim, (j + 1) * hd * dim), hd, hd, dim, r);
      q2.set(r, j * hd * dim);
    }
    k2.set(
      mulAB(m, w1.k.subarray(h * hd * dim, (h + 1) * hd * dim), hd, hd, dim),
      h * hd * dim,
    );
  }
  return { mQk, nQk, q2, k2 };
}

/** The transformed weights for the current parameters and epoch's mask. */
function runForward(st: AffineState, epoch: number): Tape {
  const { spec, dim, hd, lwc } = st;
  for (const p of st.letParams) truncateSmall(p);
  const maskD = gradualMask(dim, unmaskedBands(dim, epoch, spec.epochs), spec.sf);
  const maskH = gradualMask(hd, unmaskedBands(hd, epoch, spec.epochs), spec.sf);
  const { w1, mQkv, nQkv, mFc1, nFc1 } = inputTransforms(st, maskD);
  const w2 = { ...w1 } as Record<LinearKind, Float64Array>;
  // v → o per key/value head.
  const { mOut, nOut, v2, o2 } = outTransform(st, w1, maskH);
  w2.v = v2;
  w2.o = o2;
  // q · k.
  const { mQk, nQk, q2, k2 } = qkTransform(st, w1, maskH);
  w2.q = q2;
  w2.k = k2;
  const q = {} as Record<LinearKind, Float64Array>;
  for (const k of LINEAR_KINDS) {
    q[k] = new Float64Array(w2[k].length);
    lwcForward(w2[k], lwc[k], q[k]);
  }
  return {
    maskD,
    maskH,
    ...(mQkv ? { mQkv, nQkv: nQkv!, mFc1: mFc1!, nFc1: nFc1! } : {}),
    mOut,
    nOut,
    ...(mQk ? { mQk, nQk: nQk! } : {}),
    w1,
    w2,
    q,
  };
}

/** The weights the block runs with: `Q`, or `Q Â⁻ᵀ` for inputs with a runtime matrix. */
function evaluated(st: AffineState, t: Tape, k: LinearKind): Float64Array {
  if (!t.nQkv || k === "o" || k === "down") return t.q[k];
  const n = k === "gate" || k === "up" ? t.nFc1! : t.nQkv;
  return mulABt(t.q[k], n, st.orig[k].rows, st.dim, st.dim);
}

/** The RMSNorm weights: unchanged with `lnMatrix`, else divided by the vector transforms. */
function norms(st: AffineState): { attnNorm: Float32Array; mlpNorm: Float32Array } {
  const { spec, base, qkv, fc1 } = st;
  if (spec.lnMatrix) return { attnNorm: base.attnNorm, mlpNorm: base.mlpNorm };
  return {
    attnNorm: base.attnNorm.map((g, j) => g / qkv[j]!),
    mlpNorm: base.mlpNorm.map((g, j) => g / fc1[j]!),
  };
}

/**
 * Backward through the merged runtime inverse and LWC: `dW₂` per linear (LWC gradients added to
 * `grads`), and `dN` of the runtime inverses (`lnMatrix`).
 */
function backwardLwc(
  st: AffineState,
  t: Tape,
  dW: LinearGrads,
  grads: readonly Vec[],
): { d2: Record<LinearKind, Float64Array>; dN: { qkv: Float64Array; fc1: Float64Array } } {
  const { dim, orig, lwc } = st;
  const dN = { qkv: new Float64Array(dim * dim), fc1: new Float64Array(dim * dim) };
  const d2 = {} as Record<LinearKind, Float64Array>;
  LINEAR_KINDS.forEach((k, i) => {
    const rows = orig[k].rows, cols = orig[k].cols;
    let dQ: Float64Array;
    if (t.nQkv && k !== "o" && k !== "down") {
      const isFc = k === "gate" || k === "up";
      const n = isFc ? t.nFc1! : t.nQkv;
      dQ = mulAB(dW[k], n, rows, dim, dim);
      addAtB(dW[k], t.q[k], rows, dim, dim, isFc ? dN.fc1 : dN.qkv);
    } else {
      dQ = Float64Array.from(dW[k]);
    }
    const dw = new Float64Array(rows * cols);
    lwcBackward(t.w2[k], lwc[k], dQ, { up: grads[4 + 2 * i]!, low: grads[5 + 2 * i]! }, dw);
    d2[k] = dw;
  });
  return { d2, dN };
}

/** Backward through the per-head q · k matrices: fills `d1q`, `d1k` and adds to `gQk`. */
function backwardQkMatrix(
  st: AffineState,
  t: Tape,
  d2: Record<LinearKind, Float64Array>,
  d1q: Float64Array,
  d1k: Float64Array,
  gQk: Vec,
): void {
  const { dim, nKvHeads, hd, group } = st;
  for (let h = 0; h < nKvHeads; h++) {
    const m = t.mQk![h]!, n = t.nQk![h]!;
    const dn = new Float64Array(hd * hd), dm = new Float64Array(hd * hd);
    for (let j = h * group; j < (h + 1) * group; j++) {
      const q1 = t.w1.q.subarray(j * hd * dim, (j + 1) * hd * dim);
      const dq2 = d2.q.subarray(j * hd * dim, (j + 1) * hd * dim);
      // q₂ = Nᵀ q₁: dN += q₁ dq₂ᵀ, dq₁ = N dq₂.
      const a = mulABt(q1, dq2, hd, dim, hd);
      for (let i = 0; i < a.length; i++) dn[i] = dn[i]! + a[i]!;
      d1q.set(mulAB(n, dq2, hd, hd, dim), j * hd * dim);
    }
    const k1 = t.w1.k.subarray(h * hd * dim, (h + 1) * hd * dim);
    const dk2 = d2.k.subarray(h * hd * dim, (h + 1) * hd * dim);
    // k₂ = M k₁: dM += dk₂ k₁ᵀ, dk₁ = Mᵀ dk₂.
    const a = mulABt(dk2, k1, hd, dim, hd);
    for (let i = 0; i < a.length; i++) dm[i] = dm[i]! + a[i]!;
    const dk1 = new Float64Array(hd * dim);
    addAtB(m, dk2, hd, hd, dim, dk1);
    d1k.set(dk1, h * hd * dim);
    inverseBackward(n, dn, hd, dm);
    for (let i = 0; i < hd * hd; i++) {
      gQk[h * hd * hd + i] = gQk[h * hd * hd + i]! + dm[i]! * t.maskH[i]!;
    }
  }
}

/** Backward through the q · k vector (`W_q₁ / s`, `W_k₁ · s`): fills `d1q`, `d1k`, adds to `gQk`. */
function backwardQkVector(
  st: AffineState,
  t: Tape,
  d2: Record<LinearKind, Float64Array>,
  d1q: Float64Array,
  d1k: Float64Array,
  gQk: Vec,
): void {
  const { dim, hd, group, orig, qk } = st;
  for (let r = 0; r < orig.q.rows; r++) {
    const si = Math.floor(r / (group * hd)) * hd + (r % hd);
    const s = qk[si]!;
    let g = 0;
    for (let c = 0; c < dim; c++) {
      const i = r * dim + c;
      d1q[i] = d2.q[i]! / s;
      g -= (d2.q[i]! * t.w1.q[i]!) / (s * s);
    }
    gQk[si] = gQk[si]! + g;
  }
  for (let r = 0; r < orig.k.rows; r++) {
    let g = 0;
    for (let c = 0; c < dim; c++) {
      const i = r * dim + c;
      d1k[i] = d2.k[i]! * qk[r]!;
      g += d2.k[i]! * t.w1.k[i]!;
    }
    gQk[r] = gQk[r]! + g;
  }
}

/** Backward through the v → o matrices: returns `dW_v₁` and adds to `gOut`. */
function backwardOut(
  st: AffineState,
  t: Tape,
  d2: Record<LinearKind, Float64Array>,
  gOut: Vec,
): Float64Array {
  const { dim, nKvHeads, hd, group, orig, W } = st;
  const d1v = new Float64Array(t.w1.v.length);
  const oRows = orig.o.rows, oCols = orig.o.cols;
  for (let h = 0; h < nKvHeads; h++) {
    const n = t.nOut[h]!;
    const v1 = t.w1.v.subarray(h * hd * dim, (h + 1) * hd * dim);
    const dv2 = d2.v.subarray(h * hd * dim, (h + 1) * hd * dim);
    const dn = mulABt(v1, dv2, hd, dim, hd);
    d1v.set(mulAB(n, dv2, hd, hd, dim), h * hd * dim);
    const dm = new Float64Array(hd * hd);
    for (let j = h * group; j < (h + 1) * group; j++) {
      // o₂[:, j] = W_o[:, j] Mᵀ: dM_ab += Σ_r do₂[r, a] W_o[r, b].
      for (let row = 0; row < oRows; row++) {
        const b0 = row * oCols + j * hd;
        for (let a = 0; a < hd; a++) {
          const g = d2.o[b0 + a]!;
          if (g === 0) continue;
          for (let b = 0; b < hd; b++) dm[a * hd + b] = dm[a * hd + b]! + g * W.o[b0 + b]!;
        }
      }
    }
    inverseBackward(n, dn, hd, dm);
    for (let i = 0; i < hd * hd; i++) {
      gOut[h * hd * hd + i] = gOut[h * hd * hd + i]! + dm[i]! * t.maskH[i]!;
    }
  }
  return d1v;
}

/** Backward through the input matrices of q/k/v and gate/up (`lnMatrix`): adds to `gQkv`, `gFc1`. */
function backwardInputMatrices(
  st: AffineState,
  t: Tape,
  d1: Partial<Record<LinearKind, Float64Array>>,
  dN: { qkv: Float64Array; fc1: Float64Array },
  gQkv: Vec,
  gFc1: Vec,
): void {
  const { dim, orig, W } = st;
  for (
    const [g, kinds, n, dn] of [
      [gQkv, ["q", "k", "v"], t.nQkv!, dN.qkv],
      [gFc1, ["gate", "up"], t.nFc1!, dN.fc1],
    ] as const
  ) {
    // W₁ = W Mᵀ: dM += dW₁ᵀ W.
    const dm = new Float64Array(dim * dim);
    for (const k of kinds) addAtB(d1[k]!, W[k], orig[k].rows, dim, dim, dm);
    inverseBackward(n, dn, dim, dm);
    for (let i = 0; i < dim * dim; i++) g[i] = g[i]! + dm[i]! * t.maskD[i]!;
  }
}

/**
 * Backward through the input scale vectors of q/k/v and gate/up (folded into the norm weights):
 * adds to `gQkv`, `gFc1`; the norm gradients are required.
 */
function backwardInputScales(
  st: AffineState,
  d1: Partial<Record<LinearKind, Float64Array>>,
  gQkv: Vec,
  gFc1: Vec,
  dNorms: NormGrads,
): void {
  const { dim, W, qkv, fc1, base } = st;
  for (
    const [g, kinds, s, norm, dg] of [
      [gQkv, ["q", "k", "v"], qkv, base.attnNorm, dNorms?.attn],
      [gFc1, ["gate", "up"], fc1, base.mlpNorm, dNorms?.mlp],
    ] as const
  ) {
    for (const k of kinds) {
      const w = W[k], d = d1[k]!;
      for (let i = 0; i < w.length; i++) g[i % dim] = g[i % dim]! + d[i]! * w[i]!;
    }
    if (!dg) throw new Error("AffineQuant learner: norm gradients are required");
    for (let j = 0; j < dim; j++) {
      g[j] = g[j]! - (dg[j]! * norm[j]!) / (s[j]! * s[j]!);
    }
  }
}

/** Adds `∂L/∂params` (the learner's `params` order) given `∂L/∂W` (and the norm gradients). */
function runBackward(
  st: AffineState,
  t: Tape,
  dW: LinearGrads,
  grads: readonly Vec[],
  dNorms: NormGrads,
): void {
  const gQkv = grads[0]!, gFc1 = grads[1]!, gOut = grads[2]!, gQk = grads[3]!;
  // Through the merged runtime inverse and LWC: dW₂ per linear.
  const { d2, dN } = backwardLwc(st, t, dW, grads);
  // q · k.
  const d1q = new Float64Array(t.w1.q.length), d1k = new Float64Array(t.w1.k.length);
  if (t.mQk) backwardQkMatrix(st, t, d2, d1q, d1k, gQk);
  else backwardQkVector(st, t, d2, d1q, d1k, gQk);
  // v → o.
  const d1v = backwardOut(st, t, d2, gOut);
  // Input transforms of q/k/v and gate/up.
  const d1: Partial<Record<LinearKind, Float64Array>> = {
    q: d1q,
    k: d1k,
    v: d1v,
    gate: d2.gate,
    up: d2.up,
  };
  if (st.spec.lnMatrix) backwardInputMatrices(st, t, d1, dN, gQkv, gFc1);
  else backwardInputScales(st, d1, gQkv, gFc1, dNorms);
}

/** The quantized linears (LWC folded to the float32 grid, packed when possible) of the tape `t`. */
function foldLinears(
  st: AffineState,
  t: Tape,
  current: Record<LinearKind, Matrix>,
  kernels: Kernels,
): Record<LinearKind, FoldedLinear> {
  const res = {} as Record<LinearKind, FoldedLinear>;
  for (const k of LINEAR_KINDS) {
    releaseMatrix(kernels, current[k]);
    const f = foldLwc(t.w2[k], st.lwc[k]);
    const q = Float64Array.from(f.data);
    t.q[k] = q;
    const data = Float32Array.from(evaluated(st, t, k));
    res[k] = {
      matrix: { rows: st.orig[k].rows, cols: st.orig[k].cols, data },
      ...(f.packed ? { packed: f.packed } : {}),
    };
  }
  return res;
}

/** Back to the initial transforms and LWC's initial value 4. */
function resetParams(st: AffineState, initial: readonly Float64Array[]): void {
  st.letParams.forEach((p, i) => p.set(initial[i]!));
  for (const k of LINEAR_KINDS) {
    st.lwc[k].up.fill(4);
    st.lwc[k].low.fill(4);
  }
}

/**
 * The AffineQuant {@linkcode BlockLearner} of one dense block. Throws a `RangeError` naming
 * `sf` outside (0, 1] or a non-positive `epochs` or `letLrScale`.
 */
export function affineQuantLearner(
  layer: LlamaLayer,
  config: BlockConfig,
  spec: AffineQuantSpec,
  init: AffineInit,
  kernels: Kernels,
): BlockLearner {
  checkSpec(spec);
  const st = initAffineState(layer, config, spec, init);
  const { orig, lwc, letParams } = st;
  const initial = letParams.map((p) => Float64Array.from(p));
  const params: Vec[] = [...letParams];
  for (const k of LINEAR_KINDS) params.push(lwc[k].up, lwc[k].low);
  const lrScale = params.map((_, i) => (i < letParams.length ? spec.letLrScale : 1));

  const current = Object.fromEntries(
    LINEAR_KINDS.map((k) => [
      k,
      { rows: orig[k].rows, cols: orig[k].cols, data: new Float32Array(orig[k].data.length) },
    ]),
  ) as Record<LinearKind, Matrix>;
  let epochNow = 0;
  let tape: Tape | undefined;

  return {
    params,
    lrScale,
    normGrads: !spec.lnMatrix,
    weights(epoch = epochNow): BlockWeights {
      epochNow = epoch;
      tape = runForward(st, epoch);
      for (const k of LINEAR_KINDS) {
        releaseMatrix(kernels, current[k]);
        current[k].data.set(evaluated(st, tape, k));
      }
      return { ...norms(st), ...current };
    },
    backward(dW: LinearGrads, grads: readonly Vec[], dNorms): void {
      const t = tape;
      if (!t) throw new Error("AffineQuant learner: backward() before weights()");
      runBackward(st, t, dW, grads, dNorms);
    },
    fold(): Record<LinearKind, FoldedLinear> {
      return foldLinears(st, runForward(st, epochNow), current, kernels);
    },
    foldNorms: () => norms(st),
    reset(): void {
      resetParams(st, initial);
    },
  };
}

/**
 * Quantized values (float32 grid) and packed codes of `w` under LWC; codes are not packed when a
 * zero point falls outside `[0, 2^b − 1]` (a group of one sign).
 */
export function foldLwc(
  w: Float64Array,
  p: LwcParams,
): { data: Float32Array; packed?: ReturnType<typeof packCodes> } {
  const { rows, cols, groupSize, bits } = p;
  if (bits >= 16) return { data: Float32Array.from(w) };
  const gpr = Math.ceil(cols / groupSize);
  const scales = new Float32Array(rows * gpr);
  const zeros = new Uint8Array(rows * gpr);
  const codes = new Uint8Array(rows * cols);
  const data = new Float32Array(rows * cols);
  const maxq = 2 ** bits - 1;
  let packable = true;
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < gpr; g++) {
      const from = r * cols + g * groupSize, to = r * cols + Math.min(cols, (g + 1) * groupSize);
      const G = lwcGroup(w, p, r * gpr + g, from, to, true);
      // Stored zero point: the asymmetric one, or 2^(b−1) for the symmetric grid.
      const z = p.symmetric ? 2 ** (bits - 1) : G.zero;
      if (z < 0 || z > maxq) packable = false;
      scales[r * gpr + g] = G.scale;
      zeros[r * gpr + g] = Math.min(maxq, Math.max(0, z));
      for (let i = from; i < to; i++) {
        const c = Math.min(G.qmax, Math.max(G.qmin, roundHalfEven(w[i]! / G.scale) + G.zero));
        data[i] = (c - G.zero) * G.scale;
        codes[i] = Math.min(maxq, Math.max(0, c - G.zero + z));
      }
    }
  }
  if (!packable) return { data };
  return { data, packed: packCodes(codes, rows, cols, bits, { groupSize, scales, zeros }) };
}
