/**
 * Scoring one perplexity window: negative log-likelihood of each next token and, against a
 * reference distribution, KL divergence and top-1 agreement. Shared by the in-thread path and the
 * worker pool so both give identical numbers.
 *
 * @module
 */

import { forward, type ForwardModel } from "../models/forward.ts";
import type { Kernels } from "../kernels/types.ts";

/** Sums over the scored positions of one window. */
export interface WindowScore {
  /** Positions scored (`window.length − 1`). */
  readonly scored: number;
  /** Σ −log p(next token). */
  readonly sumNll: number;
  /** Σ (−log p(next token))², for token-level standard errors. */
  readonly sumSqNll: number;
  /** Σ KL(p_ref ‖ p) in nats (0 without a reference). */
  readonly sumKl: number;
  /** Positions where the argmax of p equals that of p_ref (all of them without a reference). */
  readonly agree: number;
}

/** Log-softmax of each `vocab`-sized row, in place, computed in float64. */
export function logSoftmaxRows(logits: Float32Array, vocab: number): Float32Array {
  for (let r = 0; r < logits.length / vocab; r++) {
    const o = r * vocab;
    let max = -Infinity;
    for (let i = 0; i < vocab; i++) max = Math.max(max, logits[o + i]!);
    let sum = 0;
    for (let i = 0; i < vocab; i++) sum += Math.exp(logits[o + i]! - max);
    const lse = max + Math.log(sum);
    for (let i = 0; i < vocab; i++) logits[o + i] = logits[o + i]! - lse;
  }
  return logits;
}

/**
 * Log-probabilities `[window.length][vocab]` of a model over a window: in one call when the
 * backend has a whole-window path for the model, else op by op.
 */
export function windowLogProbs(
  model: ForwardModel,
  window: readonly number[],
  kernels: Kernels,
): Float32Array {
  return kernels.windowLogProbs?.(model, window) ??
    logSoftmaxRows(forward(model, window, { kernels }), model.config.vocabSize);
}

/** Scores a window from its log-probabilities and, optionally, the reference's. */
export function scoreWindow(
  lp: Float32Array,
  refLp: Float32Array | undefined,
  window: readonly number[],
  vocab: number,
): WindowScore {
  let sumNll = 0, sumSqNll = 0, sumKl = 0, agree = 0;
  const scored = window.length - 1;
  for (let t = 0; t < scored; t++) {
    const o = t * vocab;
    const x = -lp[o + window[t + 1]!]!;
    sumNll += x;
    sumSqNll += x * x;
    if (!refLp) continue;
    let k = 0, amQ = 0, amP = 0;
    for (let i = 0; i < vocab; i++) {
      const lpP = refLp[o + i]!;
      k += Math.exp(lpP) * (lpP - lp[o + i]!);
      if (lp[o + i]! > lp[o + amQ]!) amQ = i;
      if (lpP > refLp[o + amP]!) amP = i;
    }
    sumKl += k;
    if (amQ === amP) agree++;
  }
  return { scored, sumNll, sumSqNll, sumKl, agree: refLp ? agree : scored };
}
