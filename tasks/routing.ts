/**
 * Routing consistency of a quantized Mixture-of-Experts model against its full-precision original
 * (issue "MoE and EAQuant"; no anchor reports these): both models run the same windows, and at
 * every MoE block and token the routers' decisions are compared.
 *
 * - `router_topk_exact`: share of (token, block) pairs whose chosen top-k expert sets are equal;
 * - `router_topk_overlap`: mean `|S_fp ∩ S_q| / k`;
 * - `router_kl`: mean `KL(p_fp ‖ p_q)` of the routers' softmax distributions over all experts,
 *   in nats;
 * - expert load: tokens routed to each expert of each block, full precision and quantized.
 *
 * The quantized model's routers see the quantized model's own hidden states, so the metrics
 * measure the end-to-end effect of quantization on routing. Standard errors are over windows.
 *
 * @module
 */

import { RunningStats } from "../core/stats.ts";
import type { Kernels } from "../kernels/types.ts";
import type { ForwardModel } from "../runners/forward.ts";
import { forwardHiddenWindows } from "../runners/forward_windows.ts";
import { isStreamed } from "../models/linears.ts";
import type { Metric } from "./types.ts";

/** Router decisions of one block for `T` tokens. */
export interface RouterDecisions {
  /** `[T][E]` softmax probabilities. */
  readonly probs: Float64Array;
  /** `[T][k]` chosen experts. */
  readonly chosen: Int32Array;
}

/** Sums of the per-token comparisons. */
export interface RoutingTally {
  pairs: number;
  exact: number;
  overlap: number;
  kl: number;
}

/** Adds the comparison of `T` tokens' decisions (`E` experts, top-`k`) to `tally`. */
export function compareRouting(
  fp: RouterDecisions,
  q: RouterDecisions,
  T: number,
  E: number,
  k: number,
  tally: RoutingTally,
): void {
  for (let t = 0; t < T; t++) {
    let common = 0;
    for (let i = 0; i < k; i++) {
      const e = fp.chosen[t * k + i]!;
      for (let j = 0; j < k; j++) if (q.chosen[t * k + j] === e) common++;
    }
    let kl = 0;
    for (let e = 0; e < E; e++) {
      const p = fp.probs[t * E + e]!;
      if (p > 0) kl += p * (Math.log(p) - Math.log(Math.max(q.probs[t * E + e]!, 1e-300)));
    }
    tally.pairs++;
    if (common === k) tally.exact++;
    tally.overlap += common / k;
    tally.kl += kl;
  }
}

/** The routing metrics of a quantized MoE model, with expert loads. */
export interface RoutingReport {
  readonly metrics: readonly Metric[];
  /** Per block, tokens routed to each expert: `[layer][expert]`. */
  readonly loadFp: readonly number[][];
  readonly loadQuantized: readonly number[][];
  readonly windows: number;
  readonly source: string;
}

/**
 * Compares the routers of `quantized` with those of `fp` on `windows` (see the module
 * documentation). Throws a `TypeError` for a model without MoE blocks.
 */
export function routingConsistency(
  fp: ForwardModel,
  quantized: ForwardModel,
  windows: readonly ArrayLike<number>[],
  kernels: Kernels,
  source = "",
): RoutingReport {
  const moe = fp.config.moe;
  if (!moe) throw new TypeError("Routing metrics need a Mixture-of-Experts model");
  const E = moe.nExperts, k = moe.topK, L = fp.config.nLayers;
  const loadFp = Array.from({ length: L }, () => new Array<number>(E).fill(0));
  const loadQ = Array.from({ length: L }, () => new Array<number>(E).fill(0));
  const stats = { exact: new RunningStats(), overlap: new RunningStats(), kl: new RunningStats() };
  // A model streamed from its files runs all windows block by block, reading each block once
  // instead of once per window (the same numbers as per-window passes).
  const merged = isStreamed(fp.weights);
  const decisions = windows.map(() => new Map<number, RouterDecisions>());
  forwardHiddenWindows(fp, windows, {
    kernels,
    merged,
    routing: (w, l, probs, chosen) => {
      decisions[w]!.set(l, { probs: probs.slice(), chosen: chosen.slice() });
      for (const e of chosen) loadFp[l]![e]!++;
    },
  });
  const tallies = windows.map((): RoutingTally => ({ pairs: 0, exact: 0, overlap: 0, kl: 0 }));
  forwardHiddenWindows(quantized, windows, {
    kernels,
    merged,
    routing: (w, l, probs, chosen, T) => {
      for (const e of chosen) loadQ[l]![e]!++;
      compareRouting(decisions[w]!.get(l)!, { probs, chosen }, T, E, k, tallies[w]!);
    },
  });
  for (const tally of tallies) {
    stats.exact.push(tally.exact / tally.pairs);
    stats.overlap.push(tally.overlap / tally.pairs);
    stats.kl.push(tally.kl / tally.pairs);
  }
  const metric = (id: string, s: RunningStats, higherIsBetter: boolean, unit: string): Metric => ({
    metric: id,
    value: s.mean,
    stderr: s.n > 1 ? s.stderr : null,
    n: s.n,
    higherIsBetter,
    unit,
  });
  return {
    metrics: [
      metric("router_topk_exact", stats.exact, true, "fraction"),
      metric("router_topk_overlap", stats.overlap, true, "fraction"),
      metric("router_kl", stats.kl, false, "nats/token"),
    ],
    loadFp,
    loadQuantized: loadQ,
    windows: windows.length,
    source,
  };
}
