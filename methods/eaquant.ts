/**
 * EAQuant (arXiv 2506.13329; darren-fzq1/EAQuant `quantize/eaquant.py`, `smooth.py`,
 * `quantizer.py`): PTQ of Mixture-of-Experts models at W4A4 / W3A4, with three components, each a
 * switch so its effect can be measured alone:
 *
 * - `smooth` — expert-aware smoothing aggregation: SmoothQuant factors (α 0.6) for the q/k/v
 *   input, and, for the MoE input, one factor vector per expert from that expert's routed
 *   activations and its gate/up weights, merged into one vector (`merge`: element-wise `max`, the
 *   code's default, or `frequency`, weighted by each expert's share of routed tokens) so that it
 *   folds into the shared post-attention RMSNorm; the router's columns are scaled with it, so the
 *   full-precision function is unchanged (with `max` the code ignores the router's own factor, as
 *   here).
 * - `routerAlign` — router logits distribution alignment: the router is quantized to W8 per
 *   output row (one row per expert) with a clipping ratio r ∈ [0.35, 1] (101 steps) chosen per row
 *   to minimise `KL(p_fp ‖ p_q)` restricted to each token's full-precision top-k experts, on the
 *   calibration tokens' router inputs. Without it, the router's clipping minimises weight MSE like
 *   every other weight.
 * - `balance` — expert-level calibration balance: each expert's statistics use at most
 *   `2 · (k/E) · seqLen` of its routed tokens (`expertTokenRatio` · average load of one window),
 *   and an expert that received none uses every token of the router input.
 *
 * Weights (attention and experts) are quantized per output channel (or group) with a clipping
 * ratio per row searched on the same grid to minimise the weight's squared error (the code's
 * `per_channel_tensor`). Activations use the cell's activation quantizer (the code: per-token
 * dynamic asymmetric with clipping 0.9, as the `moe` preset sets for every method); the router's
 * input is quantized at `routerAbits` (8).
 *
 * Not done, and recorded in every row's notes: the DuQuant-style rotation with zig-zag
 * permutation (an online-calibrated transform of its own); the outlier-mask smoothing of each
 * expert's down input (IQR + Otsu); v→o smoothing (its shapes differ under grouped-query
 * attention, as in the fixture); the `sum2`/`sum3`/`all` merge rules. The coordinate-wise router
 * search (rows in turn, the others held at their current choice) and the token subset it uses
 * (at most {@linkcode ROUTER_SEARCH_TOKENS}) are our choices: the code's batched search is not
 * documented beyond its name. When `balance` is off, an expert without routed tokens is left out
 * of the merge (it has no statistics) and noted.
 *
 * @module
 */

import { UnsupportedConfigError } from "../core/errors.ts";
import {
  clipRangeSearch,
  paramsForRange,
  quantizeMatrix,
  quantizeValue,
  rangeWithZero,
} from "../core/quantizer.ts";
import { collectActivationStats } from "./calibration/act_stats.ts";
import { createKvCache, embedTokens, layerForward } from "../runners/forward.ts";
import { quantizeLinears } from "./rtn.ts";
import {
  expertMlps,
  type LlamaConfig,
  type LlamaWeights,
  type Matrix,
  type MoeMlp,
} from "../models/types.ts";
import { foldSmoothing, type LayerSmoothing } from "./smoothing.ts";
import { columnAbsMax, smoothingFactors } from "./smoothquant.ts";
import type { Method, QuantizedModel } from "./types.ts";
import { requireCalibration } from "./support.ts";

/** Clipping grid of the code's searches: r from 0.35 to 1 in 101 steps. */
export const CLIP_GRID = Array.from({ length: 101 }, (_, i) => 0.35 + (0.65 * i) / 100);

/** Router inputs used by the KL search (the first ones, in window order). */
export const ROUTER_SEARCH_TOKENS = 4096;

/** `per_channel_tensor`: the clipping ratio on {@linkcode CLIP_GRID} with the least squared error. */
export function clipSearchMse(
  x: ArrayLike<number>,
  from: number,
  to: number,
  bits: number,
  symmetric: boolean,
): { scale: number; zero: number } {
  return clipRangeSearch(x, from, to, bits, symmetric, CLIP_GRID, 2);
}

/** A router row quantized at clipping ratio `r` (per-row asymmetric 8-bit). */
function routerRow(w: Float32Array, r: number, bits: number): Float32Array {
  const { lo, hi } = rangeWithZero(w, 0, w.length);
  const { scale, zero } = paramsForRange(r * lo, r * hi, bits, false);
  const maxq = 2 ** bits - 1;
  return w.map((v) => scale * (quantizeValue(v, scale, zero, maxq) - zero));
}

/** `Σ_t Σ_{e ∈ topk_fp(t)} p_fp(e) (log p_fp(e) − log p_q(e))` for logits `[N][E]`. */
export function topkKl(
  fpLogits: Float32Array,
  qLogits: Float32Array,
  N: number,
  E: number,
  k: number,
): number {
  let total = 0;
  const lsm = (z: Float32Array, t: number) => {
    let m = -Infinity;
    for (let e = 0; e < E; e++) m = Math.max(m, z[t * E + e]!);
    let s = 0;
    for (let e = 0; e < E; e++) s += Math.exp(z[t * E + e]! - m);
    return m + Math.log(s);
  };
  const order = Array.from({ length: E }, (_, i) => i);
  for (let t = 0; t < N; t++) {
    const zf = lsm(fpLogits, t), zq = lsm(qLogits, t);
    order.sort((a, b) => fpLogits[t * E + b]! - fpLogits[t * E + a]! || a - b);
    for (let i = 0; i < k; i++) {
      const e = order[i]!;
      const lp = fpLogits[t * E + e]! - zf;
      total += Math.exp(lp) * (lp - (qLogits[t * E + e]! - zq));
    }
  }
  return total;
}

/** Logits `[N][E]` of router rows `w` on inputs `x` (`[N][dim]`). */
function routerLogits(
  x: Float32Array,
  N: number,
  w: Float32Array,
  E: number,
  dim: number,
): Float32Array {
  const out = new Float32Array(N * E);
  for (let t = 0; t < N; t++) {
    for (let e = 0; e < E; e++) {
      let s = 0;
      for (let j = 0; j < dim; j++) s += x[t * dim + j]! * w[e * dim + j]!;
      out[t * E + e] = s;
    }
  }
  return out;
}

/**
 * Router logits distribution alignment: per row, the clipping ratio minimising the top-k KL on
 * the router inputs `x`, rows in turn (coordinate-wise). Returns the quantized router and ratios.
 */
export function alignRouter(
  router: Matrix,
  x: Float32Array,
  N: number,
  k: number,
  bits: number,
): { matrix: Matrix; ratios: number[]; kl: number; klMinMax: number } {
  const E = router.rows, dim = router.cols;
  const fp = routerLogits(x, N, router.data, E, dim);
  const ratios = new Array<number>(E).fill(1);
  const q = new Float32Array(router.data.length);
  for (let e = 0; e < E; e++) {
    q.set(routerRow(router.data.subarray(e * dim, (e + 1) * dim), 1, bits), e * dim);
  }
  const klMinMax = topkKl(fp, routerLogits(x, N, q, E, dim), N, E, k);
  let kl = klMinMax;
  for (let e = 0; e < E; e++) {
    const row = router.data.subarray(e * dim, (e + 1) * dim);
    const logits = routerLogits(x, N, q, E, dim);
    for (const r of CLIP_GRID) {
      const cand = routerRow(row, r, bits);
      for (let t = 0; t < N; t++) {
        let s = 0;
        for (let j = 0; j < dim; j++) s += x[t * dim + j]! * cand[j]!;
        logits[t * E + e] = s;
      }
      const v = topkKl(fp, logits, N, E, k);
      if (v < kl) {
        kl = v;
        ratios[e] = r;
        q.set(cand, e * dim);
      }
    }
  }
  return { matrix: { rows: E, cols: dim, data: q }, ratios, kl: kl / N, klMinMax: klMinMax / N };
}

/** Router inputs (post-attention RMSNorm outputs) of every MoE block, first `max` tokens. */
function routerInputs(
  model: { config: LlamaConfig; weights: LlamaWeights },
  windows: readonly ArrayLike<number>[],
  max: number,
  kernels: Parameters<typeof layerForward>[5],
): { x: Float32Array; n: number }[] {
  const c = model.config;
  const out = model.weights.layers.map(() => ({ x: new Float32Array(max * c.dim), n: 0 }));
  for (const w of windows) {
    if (out.every((o) => o.n >= max)) break;
    const x = embedTokens(model, w);
    const cache = createKvCache(c, w.length);
    for (let l = 0; l < c.nLayers; l++) {
      layerForward(model, l, x, w.length, cache, kernels, (kind, input, T) => {
        if (kind !== "router") return;
        const o = out[l]!;
        const take = Math.min(T, max - o.n);
        o.x.set(input.subarray(0, take * c.dim), o.n * c.dim);
        o.n += take;
      });
    }
  }
  return out;
}

/** The EAQuant method. */
export const eaquant: Method = {
  id: "eaquant",
  title: "EAQuant",
  taxonomy: "moe",
  scope: "moe",
  version: 1,
  wBits: [2, 3, 4, 5, 6, 7, 8],
  aBits: [2, 3, 4, 5, 6, 7, 8, 16],
  relativeCost: 1.5,
  needsCalibration: true,
  models: "moe",
  reference: "darren-fzq1/EAQuant (eaquant.py, smooth.py, quantizer.py); arXiv 2506.13329",
  params: {
    smooth: { type: "boolean", default: true, doc: "Expert-aware smoothing aggregation" },
    routerAlign: {
      type: "boolean",
      default: true,
      doc: "Router logits distribution alignment (KL clipping search)",
    },
    balance: {
      type: "boolean",
      default: true,
      doc: "Expert-level calibration balance (token caps, fallback)",
    },
    alpha: { type: "number", default: 0.6, min: 0, max: 1, doc: "Smoothing strength α" },
    merge: {
      type: "string",
      default: "max",
      choices: ["max", "frequency"],
      doc:
        "How per-expert smoothing vectors merge: element-wise max, or weighted by routed-token share",
    },
    expertTokenRatio: {
      type: "number",
      default: 2,
      min: 0.01,
      doc: "Token cap per expert, in units of its average load in one calibration window",
    },
    routerWbits: {
      type: "number",
      default: 8,
      min: 2,
      max: 8,
      integer: true,
      doc: "Router weight bits",
    },
    routerAbits: {
      type: "number",
      default: 8,
      min: 2,
      max: 16,
      integer: true,
      doc: "Router input bits",
    },
  },
  quantize: (model, q, params, ctx) =>
    new Promise<QuantizedModel>((resolve) => {
      const moeConfig = model.config.moe;
      if (!moeConfig) throw new UnsupportedConfigError("eaquant is for Mixture-of-Experts models");
      const calib = requireCalibration(ctx, "eaquant");
      const { topK: k, nExperts: E } = moeConfig;
      const seqLen = calib.windows[0]!.length;
      const cap = params.balance
        ? Math.floor((k / E) * seqLen * (params.expertTokenRatio as number))
        : Infinity;
      const notes = [
        "not done: DuQuant rotation, down-input outlier smoothing, v→o smoothing, sum2/sum3 merges",
      ];
      let weights = model.weights;
      if (params.smooth) {
        const alpha = params.alpha as number;
        const stats = collectActivationStats(model, calib.windows, ctx.kernels, {
          expertTokenCap: cap,
        });
        const layers = model.weights.layers.map((layer, l): LayerSmoothing => {
          const st = stats[l]!;
          const mlp = layer.mlp as MoeMlp;
          const qkv = smoothingFactors(
            st.qkv.absMax,
            columnAbsMax([layer.q, layer.k, layer.v]),
            alpha,
          );
          const vectors: { s: Float32Array; w: number }[] = [];
          st.experts!.forEach((es, e) => {
            const ex = expertMlps(mlp)[e]!;
            let act = es.gateup.absMax;
            if (es.tokens === 0) {
              if (!params.balance) {
                notes.push(
                  `layer ${l} expert ${e}: no routed calibration token; left out of the merge`,
                );
                return;
              }
              act = st.gateup.absMax;
              notes.push(
                `layer ${l} expert ${e}: no routed calibration token; statistics of every token`,
              );
            }
            vectors.push({
              s: smoothingFactors(act, columnAbsMax([ex.gate!, ex.up]), alpha),
              w: es.tokens,
            });
          });
          const total = vectors.reduce((a, v) => a + v.w, 0);
          const gateup = new Float32Array(layer.mlpNorm.length);
          for (let j = 0; j < gateup.length; j++) {
            gateup[j] = params.merge === "max"
              ? Math.max(...vectors.map((v) => v.s[j]!))
              : vectors.reduce(
                (a, v) => a + (total > 0 ? v.w / total : 1 / vectors.length) * v.s[j]!,
                0,
              );
          }
          return { qkv, gateup };
        });
        weights = foldSmoothing(model.weights, layers, model.config);
        notes.push(
          `expert-aware smoothing α=${alpha}, merge ${params.merge}${
            params.balance ? `, token cap ${cap}` : ""
          }`,
        );
      }
      // Weights: per-row clipping search on every attention and expert linear.
      const quantized = quantizeLinears(weights, q, clipSearchMse);
      const packed = quantized.packed;
      let out = quantized.weights;
      // Router: W8, KL-aligned or MSE-clipped.
      const routerBits = params.routerWbits as number;
      const inputs = params.routerAlign
        ? routerInputs(
          { config: model.config, weights },
          calib.windows,
          ROUTER_SEARCH_TOKENS,
          ctx.kernels,
        )
        : undefined;
      const layers = out.layers.map((layer, l) => {
        const mlp = layer.mlp as MoeMlp;
        let router: Matrix;
        if (inputs) {
          const a = alignRouter(mlp.router, inputs[l]!.x, inputs[l]!.n, k, routerBits);
          router = a.matrix;
          notes.push(
            `layer ${l} router: KL ${a.klMinMax.toExponential(3)} → ${
              a.kl.toExponential(3)
            } (ratios ${a.ratios.map((r) => r.toFixed(3)).join(", ")})`,
          );
        } else {
          const r = quantizeMatrix(mlp.router.data, mlp.router.rows, mlp.router.cols, {
            bits: routerBits,
            granularity: "channel",
            symmetric: false,
          }, clipSearchMse);
          router = { ...mlp.router, data: r.dequantized };
        }
        return { ...layer, mlp: { ...mlp, router } };
      });
      out = { ...out, layers };
      resolve({
        config: model.config,
        weights: out,
        packed,
        notes,
        routerQuantized: true,
        ...(q.aBits < 16 ? { routerAbits: params.routerAbits as number } : {}),
      });
    }),
};
