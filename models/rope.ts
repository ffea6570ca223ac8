/**
 * Rotary position embeddings (RoPE), shared by the forward pass and the differentiable block:
 * the cos/sin table (float32 frequencies and angles) and the rotation of every head, in both
 * pairings — `interleaved` (llama2.c: pairs `(2i, 2i+1)`) and `half` (Hugging Face `rotate_half`:
 * pairs `(i, i + headDim/2)`). A rotation is orthogonal, so its backward pass is the rotation by
 * the opposite angle (`inverse`).
 *
 * @module
 */

import type { RopeStyle } from "./types.ts";

/** cos/sin of `pos · θ^(−2i/headDim)`, `[positions][headDim/2]`. */
export interface RopeTable {
  readonly positions: number;
  readonly cos: Float32Array;
  readonly sin: Float32Array;
}

/** The RoPE table for positions `0 … positions − 1`. */
export function ropeTable(headDim: number, theta: number, positions: number): RopeTable {
  const half = headDim / 2;
  const cos = new Float32Array(positions * half);
  const sin = new Float32Array(positions * half);
  for (let i = 0; i < half; i++) {
    const freq = Math.fround(1 / Math.pow(theta, (2 * i) / headDim));
    for (let p = 0; p < positions; p++) {
      const angle = Math.fround(p * freq);
      cos[p * half + i] = Math.cos(angle);
      sin[p * half + i] = Math.sin(angle);
    }
  }
  return { positions, cos, sin };
}

const cache = new Map<string, RopeTable>();

/**
 * A shared table for `headDim` and `theta` covering at least `positions`; grown (never shrunk)
 * when a longer one is asked for. Entries depend only on the position, so every caller sees the
 * same values.
 */
export function cachedRopeTable(headDim: number, theta: number, positions: number): RopeTable {
  const key = `${headDim}:${theta}`;
  const t = cache.get(key);
  if (t && t.positions >= positions) return t;
  const table = ropeTable(headDim, theta, Math.max(positions, t?.positions ?? 0));
  cache.set(key, table);
  return table;
}

/**
 * Rotates every head of `v` (`[T][heads·headDim]`, positions `start … start+T−1`) in place: by
 * `+angle`, or by `−angle` with `inverse`.
 */
export function applyRope(
  v: Float32Array | Float64Array,
  T: number,
  heads: number,
  headDim: number,
  start: number,
  table: RopeTable,
  style: RopeStyle,
  inverse = false,
): void {
  if (table.positions < start + T) {
    throw new RangeError(`RoPE table holds ${table.positions} positions, ${start + T} needed`);
  }
  const half = headDim / 2;
  const stride = heads * headDim;
  const sign = inverse ? -1 : 1;
  for (let t = 0; t < T; t++) {
    const row = (start + t) * half;
    for (let h = 0; h < heads; h++) {
      const base = t * stride + h * headDim;
      for (let i = 0; i < half; i++) {
        const cs = table.cos[row + i]!;
        const sn = sign * table.sin[row + i]!;
        const a = style === "interleaved" ? base + 2 * i : base + i;
        const b = style === "interleaved" ? a + 1 : a + half;
        const x0 = v[a]!;
        const x1 = v[b]!;
        v[a] = x0 * cs - x1 * sn;
        v[b] = x0 * sn + x1 * cs;
      }
    }
  }
}
