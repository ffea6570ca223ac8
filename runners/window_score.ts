/**
 * Scoring one perplexity window: negative log-likelihood of each next token and, against a
 * reference distribution, KL divergence and top-1 agreement. Shared by the in-thread path and the
 * worker pool so both give identical numbers.
 *
 * @module
 */

import { finalLogits, forwardHidden, type ForwardModel } from "./forward.ts";
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
 * backend has a whole-window path for the model, else op by op. Holds `T × vocab` floats: the
 * perplexity task scores in chunks of rows instead ({@linkcode scoreWindowChunked}).
 */
export function windowLogProbs(
  model: ForwardModel,
  window: readonly number[],
  kernels: Kernels,
): Float32Array {
  return headLogProbs(model, windowHidden(model, window, kernels), window.length, kernels);
}

/**
 * Final hidden states `[window.length][dim]` of a model over a window (before the final norm):
 * in one call when the backend has a whole-window path for the model, else op by op.
 */
export function windowHidden(
  model: ForwardModel,
  window: readonly number[],
  kernels: Kernels,
): Float32Array {
  return kernels.windowHidden?.(model, window) ?? forwardHidden(model, window, { kernels });
}

/** Log-probabilities `[rows][vocab]` of `rows` final hidden states `x`. */
export function headLogProbs(
  model: ForwardModel,
  x: Float32Array,
  rows: number,
  kernels: Kernels,
): Float32Array {
  return kernels.headLogProbs?.(model, x, rows) ??
    logSoftmaxRows(finalLogits(model, x, rows, kernels), model.config.vocabSize);
}

/**
 * Bytes of one chunk's log-probabilities (of the model, and as many of the reference's): rows
 * are scored `max(12, CHUNK_BYTES / (4 · vocab))` at a time, a multiple of 12 (whole GEMM row
 * tiles of every build), so a window's peak memory does not grow with `T × vocab`.
 */
export const CHUNK_BYTES = 2 ** 24;

/** Rows per chunk for a vocabulary of `vocab` (see {@linkcode CHUNK_BYTES}). */
export function chunkRows(vocab: number): number {
  return Math.max(12, Math.floor(CHUNK_BYTES / (4 * vocab) / 12) * 12);
}

/**
 * Scores a window from final hidden states (the model's, and optionally the reference's), a
 * chunk of rows at a time: the classifier and log-softmax of {@linkcode headLogProbs} per chunk,
 * never `T × vocab` floats at once. Equals {@linkcode scoreWindow} over whole-window
 * log-probabilities: every row is computed as in one call (no chunk of a single row, which a
 * backend may send down a matrix-vector kernel), and the sums run in the same order.
 */
export function scoreWindowChunked(
  model: ForwardModel,
  hidden: Float32Array,
  window: readonly number[],
  kernels: Kernels,
  reference?: { readonly model: ForwardModel; readonly hidden: Float32Array },
  rowsPerChunk = chunkRows(model.config.vocabSize),
): WindowScore {
  const { dim, vocabSize: vocab } = model.config;
  const T = window.length;
  const sums = { sumNll: 0, sumSqNll: 0, sumKl: 0, agree: 0 };
  for (let t0 = 0; t0 < T;) {
    let rows = Math.min(rowsPerChunk, T - t0);
    if (T - t0 - rows === 1) rows++;
    const part = (x: Float32Array) => x.subarray(t0 * dim, (t0 + rows) * dim);
    const lp = headLogProbs(model, part(hidden), rows, kernels);
    const refLp = reference &&
      headLogProbs(reference.model, part(reference.hidden), rows, kernels);
    addScores(sums, lp, refLp, window, vocab, t0, Math.min(rows, T - 1 - t0));
    t0 += rows;
  }
  const scored = T - 1;
  return { scored, ...sums, agree: reference ? sums.agree : scored };
}

/** Scores a window from its log-probabilities and, optionally, the reference's. */
export function scoreWindow(
  lp: Float32Array,
  refLp: Float32Array | undefined,
  window: readonly number[],
  vocab: number,
): WindowScore {
  const sums = { sumNll: 0, sumSqNll: 0, sumKl: 0, agree: 0 };
  const scored = window.length - 1;
  addScores(sums, lp, refLp, window, vocab, 0, scored);
  return { scored, ...sums, agree: refLp ? sums.agree : scored };
}

type Sums = { sumNll: number; sumSqNll: number; sumKl: number; agree: number };

/**
 * Adds positions `t0 … t0 + n − 1` of a window to `sums`; `lp` (and `refLp`) hold their rows
 * from `t0` on.
 */
function addScores(
  sums: Sums,
  lp: Float32Array,
  refLp: Float32Array | undefined,
  window: readonly number[],
  vocab: number,
  t0: number,
  n: number,
): void {
  for (let r = 0; r < n; r++) {
    const o = r * vocab;
    const x = -lp[o + window[t0 + r + 1]!]!;
    sums.sumNll += x;
    sums.sumSqNll += x * x;
    if (!refLp) continue;
    let k = 0, amQ = 0, amP = 0;
    for (let i = 0; i < vocab; i++) {
      const lpP = refLp[o + i]!;
      k += Math.exp(lpP) * (lpP - lp[o + i]!);
      if (lp[o + i]! > lp[o + amQ]!) amQ = i;
      if (lpP > refLp[o + amP]!) amP = i;
    }
    sums.sumKl += k;
    if (amQ === amP) sums.agree++;
  }
}
