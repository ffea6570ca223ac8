/**
 * Activation statistics of the linear layers' inputs over a calibration set: the per-channel
 * minimum and maximum at each of a block's four input sites (q/k/v, o, gate/up, down), collected
 * in one pass of every window through the model as given (SmoothQuant `calibration.py`
 * `get_act_scales`: a running max of `|x|` per input channel of every linear, over all tokens).
 *
 * In MoE blocks the gate/up site is the router's input (every token), the down site runs over every
 * expert's routed tokens, and each expert also gets its own statistics of the tokens routed to it
 * (at most `expertTokenCap` of them, in window order: EAQuant's calibration balance), with its
 * token count. An expert that received no token has empty statistics (`tokens: 0`); what to do
 * with it is the consumer's rule.
 *
 * @module
 */

import { ACT_SITES, type ActSite } from "../../core/act_quantizer.ts";
import type { Kernels } from "../../kernels/types.ts";
import {
  createKvCache,
  embedTokens,
  layerForward,
  type LinearObserver,
} from "../../runners/forward.ts";
import {
  expertMlps,
  type LinearKind,
  type LlamaConfig,
  type LlamaWeights,
} from "../../models/types.ts";

/** Per-channel extremes of one site's inputs. */
export interface ChannelStats {
  /** Smallest value of each input channel. */
  readonly min: Float32Array;
  /** Largest value of each input channel. */
  readonly max: Float32Array;
  /** Largest `|x|` of each input channel. */
  readonly absMax: Float32Array;
}

/** Statistics of one expert's routed tokens. */
export interface ExpertStats {
  readonly gateup: ChannelStats;
  readonly down: ChannelStats;
  /** Routed tokens counted (after the cap). */
  readonly tokens: number;
  /** Routed tokens seen, before the cap. */
  readonly routed: number;
}

/**
 * Statistics of every site of one block (and of each expert in MoE blocks: the routed ones, then
 * the shared one if the block has it).
 */
export type LayerActivationStats = Readonly<Record<ActSite, ChannelStats>> & {
  readonly experts?: readonly ExpertStats[];
};

/** Statistics of every site of every block. */
export type ActivationStats = readonly LayerActivationStats[];

const SITE_OF: Partial<Record<LinearKind | "router", ActSite>> = {
  q: "qkv",
  o: "o",
  gate: "gateup",
  router: "gateup",
  down: "down",
};

type Mutable = ChannelStats & { min: Float32Array; max: Float32Array };

function record(s: Mutable, input: Float32Array, T: number): void {
  const n = s.min.length;
  for (let t = 0; t < T; t++) {
    for (let j = 0; j < n; j++) {
      const v = input[t * n + j]!;
      // Comparisons written so that NaN propagates into the statistics.
      if (!(v >= s.min[j]!)) s.min[j] = v;
      if (!(v <= s.max[j]!)) s.max[j] = v;
    }
  }
}

function emptyStats(n: number): Mutable {
  return {
    min: new Float32Array(n).fill(Infinity),
    max: new Float32Array(n).fill(-Infinity),
    absMax: new Float32Array(n),
  };
}

/**
 * Runs every window through `model` (with its activation quantizer, if any) and records the
 * per-channel extremes of each linear input. Throws a `RangeError` naming the layer and site when
 * a statistic is NaN or infinite.
 */
export function collectActivationStats(
  model: { readonly config: LlamaConfig; readonly weights: LlamaWeights },
  windows: readonly ArrayLike<number>[],
  kernels: Kernels,
  options: { readonly expertTokenCap?: number } = {},
): ActivationStats {
  const c = model.config;
  if (windows.length === 0) throw new RangeError("Activation statistics need at least one window");
  const cap = options.expertTokenCap ?? Infinity;
  const stats = model.weights.layers.map((layer) => {
    const mlp = layer.mlp;
    const hidden = mlp.kind === "dense" ? mlp.down.cols : mlp.experts[0]!.down.cols;
    return {
      qkv: emptyStats(c.dim),
      o: emptyStats(layer.o.cols),
      gateup: emptyStats(c.dim),
      down: emptyStats(hidden),
      // The shared expert (if any) is the last, sees every token and has no cap.
      experts: mlp.kind === "dense" ? undefined : expertMlps(mlp).map((ex, e) => ({
        gateup: emptyStats(c.dim),
        down: emptyStats(ex.down.cols),
        cap: e < mlp.experts.length ? cap : Infinity,
        tokens: 0,
        routed: 0,
        // Tokens of the current window admitted for this expert (gate input), for its down input.
        admitted: 0,
      })),
    };
  });
  for (const w of windows) {
    const x = embedTokens(model, w);
    const T = w.length;
    const cache = createKvCache(c, T);
    for (let l = 0; l < c.nLayers; l++) {
      const layer = stats[l]!;
      const observe: LinearObserver = (kind, input, n, expert) => {
        if (expert !== undefined && layer.experts) {
          const e = layer.experts[expert]!;
          if (kind === "gate") {
            const take = Math.max(0, Math.min(n, e.cap - e.tokens));
            e.routed += n;
            e.tokens += take;
            e.admitted = take;
            record(e.gateup, input, take);
          } else if (kind === "down") record(e.down, input, e.admitted);
          // The block's down statistics gather every expert of the routed width.
          if (kind === "down" && input.length === n * layer.down.min.length) {
            record(layer.down, input, n);
          }
          return;
        }
        const site = SITE_OF[kind];
        if (!site || (kind === "gate" && layer.experts)) return;
        record(layer[site], input, n);
      };
      layerForward(model, l, x, T, cache, kernels, observe);
    }
  }
  const check = (s: Mutable, l: number, site: string) => {
    for (let j = 0; j < s.min.length; j++) {
      if (!Number.isFinite(s.min[j]!) || !Number.isFinite(s.max[j]!)) {
        throw new RangeError(
          `Activation statistics of layer ${l} (${site} input, channel ${j}) are not finite: ` +
            `the calibration activations hold NaN or ±Infinity`,
        );
      }
      s.absMax[j] = Math.max(-s.min[j]!, s.max[j]!);
    }
  };
  return stats.map((layer, l) => {
    for (const site of ACT_SITES) check(layer[site], l, site);
    const experts = layer.experts?.map((e, i): ExpertStats => {
      if (e.tokens > 0) {
        check(e.gateup, l, `expert ${i} gate/up`);
        check(e.down, l, `expert ${i} down`);
      }
      return { gateup: e.gateup, down: e.down, tokens: e.tokens, routed: e.routed };
    });
    const { qkv, o, gateup, down } = layer;
    return experts ? { qkv, o, gateup, down, experts } : { qkv, o, gateup, down };
  });
}
