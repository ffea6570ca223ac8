/**
 * Rotary position embeddings for the differentiable block: the forward pass's own table and
 * rotation (`models/rope.ts`), so the block matches `layerForward` exactly. A rotation is
 * orthogonal, so the backward pass is the rotation by the opposite angle (`inverse`).
 *
 * @module
 */

import { applyRope as rotate, type RopeTable, ropeTable } from "../../models/rope.ts";
import type { RopeStyle } from "../../models/types.ts";
import type { Vec } from "./types.ts";

export { type RopeTable, ropeTable };

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
  rotate(v, T, heads, headDim, 0, table, style, inverse);
}
