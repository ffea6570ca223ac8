/**
 * MoE routing: from router logits to the chosen experts and their weights, as transformers'
 * Mixtral / Qwen-MoE / OLMoE blocks route. Shared by every execution path.
 *
 * @module
 */

import type { MoeConfig } from "./types.ts";

/** The routing of `T` tokens: router probabilities, chosen experts and their weights. */
export interface Routing {
  /** `[T][E]` softmax of the router logits, in float64. */
  readonly probs: Float64Array;
  /** `[T][K]` the chosen experts, most probable first. */
  readonly chosen: Int32Array;
  /** `[T][K]` their weights (renormalised to sum to 1 when `normTopK`). */
  readonly gate: Float64Array;
}

/**
 * Routes `T` tokens from their router logits (`[T][E]`): softmax in float64, the `topK` most
 * probable experts (ties to the lower index, as `torch.topk` on CPU), their probabilities as
 * weights, renormalised when `normTopK`. Throws a `RangeError` naming block `l` and the token
 * when a token's logits have no finite maximum.
 */
export function routeTokens(
  logits: Float32Array,
  T: number,
  E: number,
  moe: Pick<MoeConfig, "topK" | "normTopK">,
  l: number,
): Routing {
  const K = moe.topK;
  const probs = new Float64Array(T * E);
  const chosen = new Int32Array(T * K);
  const gate = new Float64Array(T * K);
  const order = Array.from({ length: E }, (_, i) => i);
  for (let t = 0; t < T; t++) {
    let max = -Infinity;
    for (let e = 0; e < E; e++) max = Math.max(max, logits[t * E + e]!);
    if (!Number.isFinite(max)) {
      throw new RangeError(`MoE router of layer ${l} produced ${max} for token ${t}`);
    }
    let sum = 0;
    for (let e = 0; e < E; e++) sum += probs[t * E + e] = Math.exp(logits[t * E + e]! - max);
    for (let e = 0; e < E; e++) probs[t * E + e] = probs[t * E + e]! / sum;
    // Stable sort: ties go to the lower expert index, as torch.topk does on CPU.
    order.sort((a, b) => probs[t * E + b]! - probs[t * E + a]! || a - b);
    let norm = 0;
    for (let k = 0; k < K; k++) norm += probs[t * E + order[k]!]!;
    for (let k = 0; k < K; k++) {
      const e = order[k]!;
      chosen[t * K + k] = e;
      gate[t * K + k] = moe.normTopK ? probs[t * E + e]! / norm : probs[t * E + e]!;
    }
  }
  return { probs, chosen, gate };
}

/**
 * The tokens routed to expert `e` (in token order, then choice order: the rows an expert runs
 * on) and their weights.
 */
export function expertTokens(
  r: Pick<Routing, "chosen" | "gate">,
  T: number,
  K: number,
  e: number,
): { rows: number[]; weights: number[] } {
  const rows: number[] = [];
  const weights: number[] = [];
  for (let t = 0; t < T; t++) {
    for (let k = 0; k < K; k++) {
      if (r.chosen[t * K + k] === e) {
        rows.push(t);
        weights.push(r.gate[t * K + k]!);
      }
    }
  }
  return { rows, weights };
}
