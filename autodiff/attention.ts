/**
 * Causal grouped-query attention, forward and backward, for one window of `T` positions starting
 * at 0 (what block reconstruction needs: no cache).
 *
 * Forward (as `attentionRef`, float64 scores and sums):
 * `out[t][h] = Σ_{s≤t} p_ts · v[s][h/g]`, `p_ts = softmax_s(q[t][h] · k[s][h/g] / √headDim)`,
 * with `g = nHeads / nKvHeads`. Only the row maximum and the softmax denominator of every
 * `(t, h)` are kept; the backward pass recomputes the probabilities from them (as FlashAttention
 * does), so memory stays `O(T · nHeads)` instead of `O(T² · nHeads)`.
 *
 * Backward, with `dp_ts = dout[t][h] · v_s` and `D_t = dout[t][h] · out[t][h] = Σ_s p_ts dp_ts`:
 * `ds_ts = p_ts (dp_ts − D_t)`, `dq_t += ds_ts k_s / √d`, `dk_s += ds_ts q_t / √d`,
 * `dv_s += p_ts dout_t`. Keys and values shared by a group of query heads sum their gradients.
 *
 * @module
 */

import type { HeadShape, Vec } from "./types.ts";

/** Softmax statistics of a forward pass, `[T][nHeads]` each. */
export interface AttentionStats {
  readonly max: Float64Array;
  readonly sum: Float64Array;
}

/**
 * Writes the attention output into `out` (`[T][nHeads·headDim]`) for queries `q`
 * (`[T][nHeads·headDim]`) and keys/values `k`, `v` (`[T][nKvHeads·headDim]`); returns the softmax
 * statistics for {@linkcode attentionBackward}.
 */
export function attentionForward(
  q: Vec,
  k: Vec,
  v: Vec,
  T: number,
  shape: HeadShape,
  out: Vec,
): AttentionStats {
  const { headDim, nHeads, nKvHeads } = shape;
  if (nHeads % nKvHeads !== 0) {
    throw new RangeError(`attention: ${nHeads} heads do not share ${nKvHeads} KV heads evenly`);
  }
  const qDim = nHeads * headDim;
  const kvDim = nKvHeads * headDim;
  const group = nHeads / nKvHeads;
  const scale = 1 / Math.sqrt(headDim);
  const max = new Float64Array(T * nHeads);
  const sum = new Float64Array(T * nHeads);
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
      max[t * nHeads + h] = m;
      sum[t * nHeads + h] = z;
    }
  }
  return { max, sum };
}

/** Inputs and gradient buffers of {@linkcode attentionBackward}. */
export interface AttentionGrads {
  /** `∂L/∂q`, `[T][nHeads·headDim]`, accumulated into. */
  readonly dq: Vec;
  /** `∂L/∂k`, `[T][nKvHeads·headDim]`, accumulated into. */
  readonly dk: Vec;
  /** `∂L/∂v`, `[T][nKvHeads·headDim]`, accumulated into. */
  readonly dv: Vec;
}

/**
 * Adds the gradients of `q`, `k`, `v` to `grads` given `dout = ∂L/∂out`, the forward inputs, its
 * output `out` and its statistics.
 */
export function attentionBackward(
  q: Vec,
  k: Vec,
  v: Vec,
  out: Vec,
  stats: AttentionStats,
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
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < nHeads; h++) {
      const qo = t * qDim + h * headDim;
      const ko = Math.floor(h / group) * headDim;
      const m = stats.max[t * nHeads + h]!;
      const z = stats.sum[t * nHeads + h]!;
      let D = 0;
      for (let i = 0; i < headDim; i++) D += dout[qo + i]! * out[qo + i]!;
      dqAcc.fill(0);
      for (let s = 0, kr = ko; s <= t; s++, kr += kvDim) {
        let dot = 0;
        let dp = 0;
        for (let i = 0; i < headDim; i++) {
          dot += q[qo + i]! * k[kr + i]!;
          dp += dout[qo + i]! * v[kr + i]!;
        }
        const p = Math.exp(dot * scale - m) / z;
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
