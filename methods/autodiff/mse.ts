/**
 * Mean squared error and its gradient.
 *
 * @module
 */

import type { Vec } from "./types.ts";

/**
 * `scale · Σ (pred − target)²` (float64 sum); when `grad` is given, writes
 * `∂/∂pred = 2 · scale · (pred − target)` into it. With `scale = 1/n` this is the mean.
 */
export function squaredError(pred: Vec, target: Vec, scale: number, grad?: Vec): number {
  if (pred.length !== target.length) {
    throw new RangeError(`squaredError: ${pred.length} predictions, ${target.length} targets`);
  }
  let s = 0;
  for (let i = 0; i < pred.length; i++) {
    const d = pred[i]! - target[i]!;
    s += d * d;
    if (grad) grad[i] = 2 * scale * d;
  }
  return s * scale;
}
