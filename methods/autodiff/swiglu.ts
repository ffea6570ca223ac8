/**
 * SwiGLU, forward and backward: `a = silu(g) · u` with `silu(g) = g · σ(g)`;
 * `∂a/∂g = u · σ(g) (1 + g (1 − σ(g)))`, `∂a/∂u = silu(g)`.
 *
 * @module
 */

import type { Vec } from "./types.ts";

/** `a[i] = silu(g[i]) · u[i]`, computed as `runners/forward.ts` does (`g / (1 + e^−g) · u`). */
export function swigluForward(g: Vec, u: Vec, a: Vec): void {
  for (let i = 0; i < g.length; i++) {
    const x = g[i]!;
    a[i] = (x / (1 + Math.exp(-x))) * u[i]!;
  }
}

/** Adds `∂L/∂g` and `∂L/∂u` to `dg`, `du` given `da = ∂L/∂a`. */
export function swigluBackward(g: Vec, u: Vec, da: Vec, dg: Vec, du: Vec): void {
  for (let i = 0; i < g.length; i++) {
    const x = g[i]!;
    const sig = 1 / (1 + Math.exp(-x));
    const d = da[i]!;
    du[i] = du[i]! + d * x * sig;
    dg[i] = dg[i]! + d * u[i]! * sig * (1 + x * (1 - sig));
  }
}
