/**
 * Several windows through a model. With `merged`, block by block instead of window by window:
 * block `l` runs on every window before block `l + 1` starts, and its MLP (a position-wise map)
 * runs once on all the windows' tokens together. A model whose weights stream from their files
 * then reads each block's weights once for all windows, where window-by-window passes read the
 * whole model per window (a Mixtral block's experts are 2.8 GB of bf16). Attention stays per
 * window, each from position 0 with its own keys and values.
 *
 * Merged results equal {@linkcode forwardHidden}'s on each window bit for bit (tested on the
 * reference and WASM kernels): each row of a matrix product depends on that row alone, except
 * that some kernels multiply a single row by a matrix-vector routine summing in another order, so
 * a one-token window's MLP, and an expert's row that is its window's only one, run alone as in
 * their own pass. Callers merge where reading the weights again per window is what costs
 * (streamed models). A model that quantizes activations never merges (a per-tensor activation
 * scale would see other windows' tokens).
 *
 * @module
 */

import type { Kernels } from "../kernels/types.ts";
import type { ForwardModel } from "../models/types.ts";
import { refKernels } from "../kernels/ref/mod.ts";
import { embedTokens } from "../models/embed.ts";
import {
  attnInput,
  attnResidual,
  forwardHidden,
  type KvCache,
  mlpForward,
  mlpInput,
  mlpResidual,
  selfAttention,
} from "./forward.ts";

/** Sees block `layer`'s router decisions for window `window`'s `tokens` tokens. */
export type WindowRoutingObserver = (
  window: number,
  layer: number,
  probs: Float64Array,
  chosen: Int32Array,
  tokens: number,
) => void;

/** The final hidden states of each window (see the module doc); `routing` sees every decision. */
export function forwardHiddenWindows(
  model: ForwardModel,
  windows: readonly ArrayLike<number>[],
  options: {
    readonly kernels?: Kernels;
    readonly routing?: WindowRoutingObserver;
    /** Block by block, MLPs on all windows' tokens at once (see the module doc). */
    readonly merged?: boolean;
  } = {},
): Float32Array[] {
  const kernels = options.kernels ?? refKernels;
  const routing = options.routing;
  if (!options.merged || model.weights.activations) {
    return windows.map((w, i) =>
      forwardHidden(model, w, {
        kernels,
        ...(routing ? { routing: (l, p, c, T) => routing(i, l, p, c, T) } : {}),
      })
    );
  }
  const c = model.config;
  const lengths = windows.map((w) => w.length);
  // Windows of one token keep their MLP to themselves (a one-row product sums in another order
  // on some kernels); the others' rows go together.
  const together = lengths.flatMap((T, i) => (T > 1 ? [i] : []));
  const offsets = new Map<number, number>();
  let total = 0;
  for (const i of together) {
    offsets.set(i, total);
    total += lengths[i]!;
  }
  const segments = together.map((i) => offsets.get(i)!);
  const cache = scratchCache(model, Math.max(1, ...lengths));
  const xs = windows.map((w) => embedTokens(model, w, 0));
  const hs = new Float32Array(total * c.dim);
  const hn = new Float32Array(total * c.dim);
  const y = new Float32Array(total * c.dim);
  for (let l = 0; l < c.nLayers; l++) {
    xs.forEach((x, i) => {
      const T = lengths[i]!;
      const att = new Float32Array(T * c.nHeads * c.headDim);
      cache.pos = 0;
      selfAttention(model, l, attnInput(model, l, x, T, kernels), T, cache, kernels, att);
      const h = attnResidual(model, l, att, x, T, kernels);
      const n = mlpInput(model, l, h, T, kernels);
      const a = offsets.get(i);
      if (a !== undefined) {
        hs.set(h, a * c.dim);
        hn.set(n, a * c.dim);
        return;
      }
      // A one-token window: its MLP alone.
      const yi = new Float32Array(T * c.dim);
      mlpForward(model, l, n, T, kernels, yi, undefined, {
        ...(routing ? { routing: (layer, p, ch, t) => routing(i, layer, p, ch, t) } : {}),
      });
      mlpResidual(model, l, yi, h, T, kernels, x);
    });
    if (total === 0) continue;
    const split = routing
      ? (layer: number, probs: Float64Array, chosen: Int32Array) => {
        const E = probs.length / total, k = chosen.length / total;
        for (const i of together) {
          const a = offsets.get(i)!, T = lengths[i]!;
          routing(
            i,
            layer,
            probs.subarray(a * E, (a + T) * E),
            chosen.subarray(a * k, (a + T) * k),
            T,
          );
        }
      }
      : undefined;
    mlpForward(model, l, hn, total, kernels, y, undefined, {
      segments,
      ...(split ? { routing: split } : {}),
    });
    for (const i of together) {
      const a = offsets.get(i)! * c.dim, b = a + lengths[i]! * c.dim;
      mlpResidual(model, l, y.subarray(a, b), hs.subarray(a, b), lengths[i]!, kernels, xs[i]!);
    }
  }
  return xs;
}

/**
 * A key/value cache of one block's size that every block shares: block `l` of a window is done
 * with its keys and values before block `l + 1` starts.
 */
function scratchCache(model: ForwardModel, capacity: number): KvCache {
  const kvDim = model.config.nKvHeads * model.config.headDim;
  const k = new Float32Array(capacity * kvDim);
  const v = new Float32Array(capacity * kvDim);
  return {
    pos: 0,
    capacity,
    k: Array.from({ length: model.config.nLayers }, () => k),
    v: Array.from({ length: model.config.nLayers }, () => v),
  };
}
