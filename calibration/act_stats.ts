/**
 * Activation statistics of the linear layers' inputs over a calibration set: the per-channel
 * minimum and maximum at each of a block's four input sites (q/k/v, o, gate/up, down), collected
 * in one pass of every window through the model as given (SmoothQuant `calibration.py`
 * `get_act_scales`: a running max of `|x|` per input channel of every linear, over all tokens).
 *
 * @module
 */

import { ACT_SITES, type ActSite } from "../core/act_quantizer.ts";
import { UnsupportedConfigError } from "../core/errors.ts";
import type { Kernels } from "../kernels/types.ts";
import {
  createKvCache,
  embedTokens,
  layerForward,
  type LinearObserver,
} from "../models/forward.ts";
import type { LinearKind, LlamaConfig, LlamaWeights } from "../models/types.ts";

/** Per-channel extremes of one site's inputs. */
export interface ChannelStats {
  /** Smallest value of each input channel. */
  readonly min: Float32Array;
  /** Largest value of each input channel. */
  readonly max: Float32Array;
  /** Largest `|x|` of each input channel. */
  readonly absMax: Float32Array;
}

/** Statistics of every site of every block. */
export type ActivationStats = readonly Readonly<Record<ActSite, ChannelStats>>[];

const SITE_OF: Partial<Record<LinearKind, ActSite>> = {
  q: "qkv",
  o: "o",
  gate: "gateup",
  down: "down",
};

function emptyStats(n: number): ChannelStats & { min: Float32Array; max: Float32Array } {
  return {
    min: new Float32Array(n).fill(Infinity),
    max: new Float32Array(n).fill(-Infinity),
    absMax: new Float32Array(n),
  };
}

/**
 * Runs every window through `model` (with its activation quantizer, if any) and records the
 * per-channel extremes of each linear input. Throws `UnsupportedConfigError` for MoE models and a
 * `RangeError` naming the layer and site when a statistic is NaN or infinite.
 */
export function collectActivationStats(
  model: { readonly config: LlamaConfig; readonly weights: LlamaWeights },
  windows: readonly ArrayLike<number>[],
  kernels: Kernels,
): ActivationStats {
  const c = model.config;
  if (model.weights.layers.some((l) => l.mlp.kind !== "dense")) {
    throw new UnsupportedConfigError(
      "Activation statistics of MoE blocks (per-expert inputs) are not implemented yet",
    );
  }
  if (windows.length === 0) throw new RangeError("Activation statistics need at least one window");
  const stats = model.weights.layers.map((layer) => ({
    qkv: emptyStats(c.dim),
    o: emptyStats(layer.o.cols),
    gateup: emptyStats(c.dim),
    down: emptyStats(layer.mlp.kind === "dense" ? layer.mlp.down.cols : 0),
  }));
  for (const w of windows) {
    const x = embedTokens(model, w);
    const T = w.length;
    const cache = createKvCache(c, T);
    for (let l = 0; l < c.nLayers; l++) {
      const observe: LinearObserver = (kind, input) => {
        const site = SITE_OF[kind];
        if (!site) return;
        const s = stats[l]![site];
        const n = s.min.length;
        for (let t = 0; t < T; t++) {
          for (let j = 0; j < n; j++) {
            const v = input[t * n + j]!;
            // Comparisons written so that NaN propagates into the statistics.
            if (!(v >= s.min[j]!)) s.min[j] = v;
            if (!(v <= s.max[j]!)) s.max[j] = v;
          }
        }
      };
      layerForward(model, l, x, T, cache, kernels, observe);
    }
  }
  stats.forEach((layer, l) => {
    for (const site of ACT_SITES) {
      const s = layer[site];
      for (let j = 0; j < s.min.length; j++) {
        if (!Number.isFinite(s.min[j]!) || !Number.isFinite(s.max[j]!)) {
          throw new RangeError(
            `Activation statistics of layer ${l} (${site} input, channel ${j}) are not finite: ` +
              `the calibration activations hold NaN or ±Infinity`,
          );
        }
        s.absMax[j] = Math.max(-s.min[j]!, s.max[j]!);
      }
    }
  });
  return stats;
}
