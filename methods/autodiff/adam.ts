/**
 * Adam (Kingma & Ba; `torch.optim.Adam` without weight decay) with cosine learning-rate decay to
 * zero (`torch.optim.lr_scheduler.CosineAnnealingLR(T_max = steps, eta_min = 0)`, stepped once per
 * optimizer step, as FlexRound's official `REM_fast.py` does), or a constant rate (OmniQuant and
 * AffineQuant use no scheduler). Parameter groups with their own rates (AffineQuant's `let_lr`
 * and `lwc_lr`) are expressed as per-tensor multipliers of the rate.
 *
 * Moments are float64; parameters are updated in place.
 *
 * @module
 */

import type { Vec } from "./types.ts";

/** Options of {@linkcode Adam}. */
export interface AdamOptions {
  /** Peak learning rate (> 0). */
  readonly lr: number;
  /** Optimizer steps of the schedule (> 0): the rate reaches 0 after this many. */
  readonly steps: number;
  /** `cosine` (default) or `constant`. */
  readonly schedule?: "cosine" | "constant";
  /** Multiplier of the rate per parameter tensor (same order as the parameters; default 1). */
  readonly lrScale?: readonly number[];
  readonly beta1?: number;
  readonly beta2?: number;
  readonly eps?: number;
}

/** `lr · (1 + cos(π · step / steps)) / 2`: the rate used at 0-based `step`. */
export function cosineLr(lr: number, step: number, steps: number): number {
  return (lr * (1 + Math.cos((Math.PI * Math.min(step, steps)) / steps))) / 2;
}

/** Adam over a fixed list of parameter tensors. */
export class Adam {
  readonly #params: readonly Vec[];
  readonly #m: Float64Array[];
  readonly #v: Float64Array[];
  readonly #lr: number;
  readonly #steps: number;
  readonly #b1: number;
  readonly #b2: number;
  readonly #eps: number;
  readonly #constant: boolean;
  readonly #scale: readonly number[] | undefined;
  #t = 0;

  /** Throws a `RangeError` naming `lr` or `steps` when not positive. */
  constructor(params: readonly Vec[], options: AdamOptions) {
    if (!(options.lr > 0) || !Number.isFinite(options.lr)) {
      throw new RangeError(`Adam: learning rate lr must be positive, got ${options.lr}`);
    }
    if (!(options.steps >= 1) || !Number.isInteger(options.steps)) {
      throw new RangeError(`Adam: steps must be a positive integer, got ${options.steps}`);
    }
    this.#params = params;
    this.#m = params.map((p) => new Float64Array(p.length));
    this.#v = params.map((p) => new Float64Array(p.length));
    this.#lr = options.lr;
    this.#steps = options.steps;
    this.#b1 = options.beta1 ?? 0.9;
    this.#b2 = options.beta2 ?? 0.999;
    this.#eps = options.eps ?? 1e-8;
    this.#constant = options.schedule === "constant";
    if (options.lrScale && options.lrScale.length !== params.length) {
      throw new RangeError(
        `Adam: lrScale has ${options.lrScale.length} entries for ${params.length} parameters`,
      );
    }
    this.#scale = options.lrScale;
  }

  /** Steps taken so far. */
  get step(): number {
    return this.#t;
  }

  /** The learning rate of the next step. */
  get lr(): number {
    return this.#constant ? this.#lr : cosineLr(this.#lr, this.#t, this.#steps);
  }

  /** One update with `grads` (same shapes as the parameters, in the same order). */
  update(grads: readonly Vec[]): void {
    const lr0 = this.lr;
    this.#t++;
    const b1 = this.#b1, b2 = this.#b2;
    const c1 = 1 - b1 ** this.#t;
    const c2 = 1 - b2 ** this.#t;
    for (let k = 0; k < this.#params.length; k++) {
      const p = this.#params[k]!, g = grads[k]!, m = this.#m[k]!, v = this.#v[k]!;
      const lr = lr0 * (this.#scale?.[k] ?? 1);
      for (let i = 0; i < p.length; i++) {
        const gi = g[i]!;
        m[i] = b1 * m[i]! + (1 - b1) * gi;
        v[i] = b2 * v[i]! + (1 - b2) * gi * gi;
        p[i] = p[i]! - (lr * (m[i]! / c1)) / (Math.sqrt(v[i]! / c2) + this.#eps);
      }
    }
  }
}
