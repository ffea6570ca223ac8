/**
 * Reference causal grouped-query attention (the computation of `runners/forward.ts`), in plain
 * TypeScript with float64 scores and sums: the oracle for faster backends.
 *
 * @module
 */

/** Head layout of an attention op (a `LlamaConfig` has these fields). */
export interface AttentionShape {
  readonly nHeads: number;
  readonly nKvHeads: number;
  readonly headDim: number;
  /** Score multiplier (default `1/√headDim`). */
  readonly scale?: number;
  /** Scores become `softcap · tanh(score / softcap)` before the softmax (Gemma 2). */
  readonly softcap?: number;
  /** Sliding window: query `i` sees keys `j` with `i − window < j ≤ i` (0 or absent: all). */
  readonly window?: number;
}

/** The arguments of an attention call: queries, keys, values, query count, first position, shape, output. */
export type AttentionArgs = [
  q: Float32Array,
  k: Float32Array,
  v: Float32Array,
  T: number,
  start: number,
  shape: AttentionShape,
  out: Float32Array,
];

/** True when `shape` asks for more than plain scaled causal attention. */
export function attentionExtras(shape: AttentionShape): boolean {
  return (shape.scale !== undefined && shape.scale !== 1 / Math.sqrt(shape.headDim)) ||
    shape.softcap !== undefined || (shape.window ?? 0) > 0;
}

/**
 * Checks the buffers of an attention call; throws a `RangeError` naming `op` and the shapes.
 */
export function validateAttention(op: string, ...args: AttentionArgs): void {
  const [q, k, v, T, start, shape, out] = args;
  const { nHeads, nKvHeads, headDim } = shape;
  const qDim = nHeads * headDim, kvDim = nKvHeads * headDim;
  const fail = (why: string) => {
    throw new RangeError(
      `${op}: ${why} (q ${T}×${nHeads}×${headDim}, k/v ${start + T}×${nKvHeads}×${headDim})`,
    );
  };
  for (const [name, n] of [["nHeads", nHeads], ["nKvHeads", nKvHeads], ["headDim", headDim]]) {
    if (!Number.isInteger(n) || (n as number) < 1) fail(`${name} ${n} is not a positive integer`);
  }
  if (nHeads % nKvHeads !== 0) fail(`${nHeads} heads do not share ${nKvHeads} KV heads evenly`);
  if (!Number.isInteger(T) || T < 0 || !Number.isInteger(start) || start < 0) {
    fail(`bad token range ${start}…${start + T}`);
  }
  if (q.length < T * qDim) fail(`q holds ${q.length} values`);
  if (out.length < T * qDim) fail(`out holds ${out.length} values`);
  if (k.length < (start + T) * kvDim) fail(`k holds ${k.length} values`);
  if (v.length < (start + T) * kvDim) fail(`v holds ${v.length} values`);
}

/**
 * `out[t][h] = Σ_{s ≤ start+t} softmax_s(q[t][h] · k[s][h/g] / √headDim) · v[s][h/g]` with
 * `g = nHeads / nKvHeads`; `q`, `out` are `[T][nHeads·headDim]`, `k`, `v` are
 * `[≥ start+T][nKvHeads·headDim]`. The shape's `scale`, `softcap` and `window` change the score
 * multiplier, cap the scores (`cap · tanh(s / cap)`, as Gemma 2 before its mask) and restrict
 * each query to the last `window` keys.
 */
export function attentionRef(...args: AttentionArgs): void {
  validateAttention("attention", ...args);
  const [q, k, v, T, start, shape, out] = args;
  const { headDim, nHeads, nKvHeads } = shape;
  const qDim = nHeads * headDim;
  const kvDim = nKvHeads * headDim;
  const group = nHeads / nKvHeads;
  const scale = shape.scale ?? 1 / Math.sqrt(headDim);
  const cap = shape.softcap;
  const window = shape.window ?? 0;
  const scores = new Float64Array(start + T);
  const acc = new Float64Array(headDim);
  for (let t = 0; t < T; t++) {
    const n = start + t + 1;
    const first = window > 0 ? Math.max(0, n - window) : 0;
    for (let h = 0; h < nHeads; h++) {
      const qo = t * qDim + h * headDim;
      const ko = Math.floor(h / group) * headDim;
      let max = -Infinity;
      for (let s = first, kr = ko + first * kvDim; s < n; s++, kr += kvDim) {
        let dot = 0;
        for (let i = 0; i < headDim; i++) dot += q[qo + i]! * k[kr + i]!;
        dot *= scale;
        if (cap !== undefined) dot = cap * Math.tanh(dot / cap);
        scores[s] = dot;
        if (dot > max) max = dot;
      }
      acc.fill(0);
      let sum = 0;
      for (let s = first, vr = ko + first * kvDim; s < n; s++, vr += kvDim) {
        const e = Math.exp(scores[s]! - max);
        sum += e;
        for (let i = 0; i < headDim; i++) acc[i] = acc[i]! + e * v[vr + i]!;
      }
      for (let i = 0; i < headDim; i++) out[qo + i] = acc[i]! / sum;
    }
  }
}
