/**
 * Causal grouped-query attention, forward and backward, for one window of `T` positions starting
 * at 0 (what block reconstruction needs: no cache).
 *
 * Forward (as `attentionRef`, float64 scores and sums):
 * `out[t][h] = Σ_{s≤t} p_ts · v[s][h/g]`, `p_ts = softmax_s(q[t][h] · k[s][h/g] / √headDim)`,
 * with `g = nHeads / nKvHeads`. The block's forward pass uses the backend's attention kernel
 * (as `layerForward` does); {@linkcode attentionForward} is the plain-loop version that also takes
 * float64 (the oracle of the gradient checks). Nothing but the output is kept: the backward pass
 * recomputes the probabilities (as FlashAttention does), so memory stays `O(T · nHeads · headDim)`.
 *
 * Backward, with `dp_ts = dout[t][h] · v_s` and `D_t = dout[t][h] · out[t][h] = Σ_s p_ts dp_ts`:
 * `ds_ts = p_ts (dp_ts − D_t)`, `dq_t += ds_ts k_s / √d`, `dk_s += ds_ts q_t / √d`,
 * `dv_s += p_ts dout_t`. Keys and values shared by a group of query heads sum their gradients.
 * {@linkcode attentionBackward} does this per head with five `[T]×[T]×[headDim]` products through
 * the {@linkcode Kernels} interface (`S = Q Kᵀ`, `dP = dO Vᵀ`, `dQ = dS K`, `dK = dSᵀ Q`,
 * `dV = Pᵀ dO`) and only the `O(T²)` softmax algebra in plain loops;
 * {@linkcode attentionBackwardLoop} is the same in plain loops (float64-capable).
 *
 * @module
 */

import type { Kernels } from "../../kernels/types.ts";
import type { Matrix } from "../../models/types.ts";
import { releaseMatrix } from "./linear.ts";
import type { HeadShape, Vec } from "./types.ts";

/**
 * Writes the attention output into `out` (`[T][nHeads·headDim]`) for queries `q`
 * (`[T][nHeads·headDim]`) and keys/values `k`, `v` (`[T][nKvHeads·headDim]`).
 */
export function attentionForward(
  q: Vec,
  k: Vec,
  v: Vec,
  T: number,
  shape: HeadShape,
  out: Vec,
): void {
  const { headDim, nHeads, nKvHeads } = shape;
  if (nHeads % nKvHeads !== 0) {
    throw new RangeError(`attention: ${nHeads} heads do not share ${nKvHeads} KV heads evenly`);
  }
  const qDim = nHeads * headDim;
  const kvDim = nKvHeads * headDim;
  const group = nHeads / nKvHeads;
  const scale = 1 / Math.sqrt(headDim);
  const scores = new Float64Array(T);
  const acc = new Float64Array(headDim);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < nHeads; h++) {
      const qo = t * qDim + h * headDim;
      const ko = Math.floor(h / group) * headDim;
      let m = -Infinity;
      for (let s = 0, kr = ko; s <= t; s++, kr += kvDim) {
        let dot = 0;
        for (let i = 0; i < headDim; i++) dot += q[qo + i]! * k[kr + i]!;
        dot *= scale;
        scores[s] = dot;
        if (dot > m) m = dot;
      }
      acc.fill(0);
      let z = 0;
      for (let s = 0, vr = ko; s <= t; s++, vr += kvDim) {
        const e = Math.exp(scores[s]! - m);
        z += e;
        for (let i = 0; i < headDim; i++) acc[i] = acc[i]! + e * v[vr + i]!;
      }
      for (let i = 0; i < headDim; i++) out[qo + i] = acc[i]! / z;
    }
  }
}

/** Gradient buffers of the attention inputs (accumulated into). */
export interface AttentionGrads<V extends Vec = Vec> {
  /** `∂L/∂q`, `[T][nHeads·headDim]`. */
  readonly dq: V;
  /** `∂L/∂k`, `[T][nKvHeads·headDim]`. */
  readonly dk: V;
  /** `∂L/∂v`, `[T][nKvHeads·headDim]`. */
  readonly dv: V;
}

/**
 * Adds the gradients of `q`, `k`, `v` to `grads` given `dout = ∂L/∂out` and the forward inputs
 * and output, in plain loops (float32 or float64).
 */
export function attentionBackwardLoop(
  q: Vec,
  k: Vec,
  v: Vec,
  out: Vec,
  dout: Vec,
  T: number,
  shape: HeadShape,
  grads: AttentionGrads,
): void {
  const { headDim, nHeads, nKvHeads } = shape;
  const qDim = nHeads * headDim;
  const kvDim = nKvHeads * headDim;
  const group = nHeads / nKvHeads;
  const scale = 1 / Math.sqrt(headDim);
  const { dq, dk, dv } = grads;
  const dqAcc = new Float64Array(headDim);
  const scores = new Float64Array(T);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < nHeads; h++) {
      const qo = t * qDim + h * headDim;
      const ko = Math.floor(h / group) * headDim;
      let m = -Infinity;
      for (let s = 0, kr = ko; s <= t; s++, kr += kvDim) {
        let dot = 0;
        for (let i = 0; i < headDim; i++) dot += q[qo + i]! * k[kr + i]!;
        scores[s] = dot * scale;
        if (scores[s]! > m) m = scores[s]!;
      }
      let z = 0;
      for (let s = 0; s <= t; s++) z += Math.exp(scores[s]! - m);
      let D = 0;
      for (let i = 0; i < headDim; i++) D += dout[qo + i]! * out[qo + i]!;
      dqAcc.fill(0);
      for (let s = 0, kr = ko; s <= t; s++, kr += kvDim) {
        let dp = 0;
        for (let i = 0; i < headDim; i++) dp += dout[qo + i]! * v[kr + i]!;
        const p = Math.exp(scores[s]! - m) / z;
        const ds = p * (dp - D) * scale;
        for (let i = 0; i < headDim; i++) {
          dqAcc[i] = dqAcc[i]! + ds * k[kr + i]!;
          dk[kr + i] = dk[kr + i]! + ds * q[qo + i]!;
          dv[kr + i] = dv[kr + i]! + p * dout[qo + i]!;
        }
      }
      for (let i = 0; i < headDim; i++) dq[qo + i] = dq[qo + i]! + dqAcc[i]!;
    }
  }
}

/** Columns `[off, off+n)` of every row of `src` (`[T][stride]`) into `dst` (`[T][n]`). */
function gather(
  src: Float32Array,
  T: number,
  stride: number,
  off: number,
  n: number,
  dst: Float32Array,
) {
  for (let t = 0; t < T; t++) {
    const o = t * stride + off;
    for (let i = 0; i < n; i++) dst[t * n + i] = src[o + i]!;
  }
}

/** Adds `src` (`[T][n]`) into columns `[off, off+n)` of `dst` (`[T][stride]`). */
function scatterAdd(
  src: Float32Array,
  T: number,
  stride: number,
  off: number,
  n: number,
  dst: Float32Array,
) {
  for (let t = 0; t < T; t++) {
    const o = t * stride + off;
    for (let i = 0; i < n; i++) dst[o + i] = dst[o + i]! + src[t * n + i]!;
  }
}

/**
 * {@linkcode attentionBackwardLoop} with the `O(T² · headDim)` products through `kernels`
 * (float32). Same inputs and result.
 */
export function attentionBackward(
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  out: Float32Array,
  dout: Float32Array,
  T: number,
  shape: HeadShape,
  grads: AttentionGrads<Float32Array>,
  kernels: Kernels,
): void {
  const { headDim: d, nHeads, nKvHeads } = shape;
  const qDim = nHeads * d;
  const kvDim = nKvHeads * d;
  const group = nHeads / nKvHeads;
  const scale = 1 / Math.sqrt(d);
  const qh = new Float32Array(T * d), kh = new Float32Array(T * d), vh = new Float32Array(T * d);
  const oh = new Float32Array(T * d), doh = new Float32Array(T * d);
  const qT = new Float32Array(d * T), kT = new Float32Array(d * T), doT = new Float32Array(d * T);
  const S = new Float32Array(T * T), dP = new Float32Array(T * T);
  const dS = new Float32Array(T * T), dST = new Float32Array(T * T), PT = new Float32Array(T * T);
  const res = new Float32Array(T * d);
  const mat = (rows: number, cols: number, data: Float32Array): Matrix => ({ rows, cols, data });
  const kM = mat(T, d, kh), vM = mat(T, d, vh), kTM = mat(d, T, kT);
  const qTM = mat(d, T, qT), doTM = mat(d, T, doT);
  for (let h = 0; h < nHeads; h++) {
    const kvOff = Math.floor(h / group) * d;
    gather(q, T, qDim, h * d, d, qh);
    gather(out, T, qDim, h * d, d, oh);
    gather(dout, T, qDim, h * d, d, doh);
    gather(k, T, kvDim, kvOff, d, kh);
    gather(v, T, kvDim, kvOff, d, vh);
    for (let t = 0; t < T; t++) {
      for (let i = 0; i < d; i++) {
        qT[i * T + t] = qh[t * d + i]!;
        kT[i * T + t] = kh[t * d + i]!;
        doT[i * T + t] = doh[t * d + i]!;
      }
    }
    kernels.matmul(qh, T, kM, S); // S[t][s] = q_t · k_s
    kernels.matmul(doh, T, vM, dP); // dP[t][s] = dout_t · v_s
    releaseMatrix(kernels, kM);
    releaseMatrix(kernels, vM);
    // Only the causal (s ≤ t) entries are written: the rest of dS, dSᵀ and Pᵀ stays 0.
    for (let t = 0; t < T; t++) {
      const r = t * T;
      let m = -Infinity;
      for (let s = 0; s <= t; s++) {
        const x = S[r + s]! * scale;
        S[r + s] = x;
        if (x > m) m = x;
      }
      let z = 0;
      for (let s = 0; s <= t; s++) {
        const e = Math.exp(S[r + s]! - m);
        S[r + s] = e;
        z += e;
      }
      let D = 0;
      for (let i = 0; i < d; i++) D += doh[t * d + i]! * oh[t * d + i]!;
      const invZ = 1 / z;
      for (let s = 0; s <= t; s++) {
        const p = S[r + s]! * invZ;
        const ds = p * (dP[r + s]! - D) * scale;
        dS[r + s] = ds;
        dST[s * T + t] = ds;
        PT[s * T + t] = p;
      }
    }
    kernels.matmul(dS, T, kTM, res); // dQ = dS K
    scatterAdd(res, T, qDim, h * d, d, grads.dq);
    kernels.matmul(dST, T, qTM, res); // dK = dSᵀ Q
    scatterAdd(res, T, kvDim, kvOff, d, grads.dk);
    kernels.matmul(PT, T, doTM, res); // dV = Pᵀ dO
    scatterAdd(res, T, kvDim, kvOff, d, grads.dv);
    releaseMatrix(kernels, kTM);
    releaseMatrix(kernels, qTM);
    releaseMatrix(kernels, doTM);
  }
}
