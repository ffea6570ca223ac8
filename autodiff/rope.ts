/**
 * Rotary position embeddings, forward and backward, in both pairings of `models/forward.ts`:
 * `interleaved` (llama2.c: pairs `(2i, 2i+1)`) and `half` (Hugging Face `rotate_half`: pairs
 * `(i, i + headDim/2)`). The table is computed exactly as the forward pass computes its own
 * (float32 frequencies and angles), so the differentiable block matches `layerForward`.
 *
 * A rotation is orthogonal, so the backward pass is the rotation by the opposite angle.
 *
 * @module
 */

import type { RopeStyle } from "../models/types.ts";
import type { Vec } from "./types.ts";

/** cos/sin of `pos · θ^(−2i/headDim)`, `[positions][headDim/2]`. */
export interface RopeTable {
  readonly positions: number;
  readonly cos: Float32Array;
  readonly sin: Float32Array;
}

/** The RoPE table for `positions` positions (the forward pass's formula). */
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

/**
 * Rotates every head of `v` (`[T][heads·headDim]`, positions `0…T−1`) in place: by `+angle`
 * (forward) or, with `inverse`, by `−angle` (the backward pass of the forward rotation).
 */
export function applyRope(
  v: Vec,
  T: number,
  heads: number,
  headDim: number,
  table: RopeTable,
  style: RopeStyle,
  inverse = false,
): void {
  if (table.positions < T) {
    throw new RangeError(`RoPE table holds ${table.positions} positions, ${T} needed`);
  }
  const half = headDim / 2;
  const stride = heads * headDim;
  const sign = inverse ? -1 : 1;
  for (let t = 0; t < T; t++) {
    const row = t * half;
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
