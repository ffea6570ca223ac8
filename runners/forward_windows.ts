/**
 * Several windows through a model. With `merged`, block by block instead of window by window:
 * block `l` runs on every window before block `l + 1` starts, and its MLP (a position-wise map)
 * runs once on all the windows' tokens together (in groups of at most {@linkcode MERGED_ROWS}
 * rows). A model whose weights stream from their files
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
    /** Rows a merged product takes at most (default {@linkcode MERGED_ROWS}). */
    readonly maxRows?: number;
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
  const cache = scratchCache(model, Math.max(1, ...lengths));
  const xs = windows.map((w) => embedTokens(model, w, 0));
  for (let l = 0; l < c.nLayers; l++) {
    const hs: Float32Array[] = [];
    const hns: Float32Array[] = [];
    xs.forEach((x, i) => {
      const T = lengths[i]!;
      const att = new Float32Array(T * c.nHeads * c.headDim);
      cache.pos = 0;
      selfAttention(model, l, attnInput(model, l, x, T, kernels), T, cache, kernels, att);
      hs.push(attnResidual(model, l, att, x, T, kernels));
      hns.push(mlpInput(model, l, hs[i]!, T, kernels));
    });
    windowsMlp(model, l, hs, hns, xs, kernels, {
      ...(options.maxRows !== undefined ? { maxRows: options.maxRows } : {}),
      ...(routing ? { routing } : {}),
    });
  }
  return xs;
}

/**
 * Block `l`'s MLP and residual for several windows given each window's post-attention states
 * `hs[i]` and MLP inputs `hns[i]`: block outputs into `outs[i]` (may be `hs[i]`). The rows of
 * windows of two tokens or more run together, in groups of at most `maxRows` (default
 * {@linkcode MERGED_ROWS}); a one-token window runs alone (its router and MLP rows would be
 * one-row products in its own pass, which some kernels sum in another order). The numbers are
 * those of each window's own pass. The model must not quantize activations.
 */
export function windowsMlp(
  model: ForwardModel,
  l: number,
  hs: readonly Float32Array[],
  hns: readonly Float32Array[],
  outs: readonly Float32Array[],
  kernels: Kernels,
  options: { readonly maxRows?: number; readonly routing?: WindowRoutingObserver } = {},
): void {
  const { dim } = model.config;
  const { routing } = options;
  const lengths = hs.map((h) => h.length / dim);
  const groups = [
    ...windowGroups(lengths.map((T) => (T > 1 ? T : 0)), options.maxRows ?? MERGED_ROWS),
    ...lengths.flatMap((T, i) => (T === 1 ? [[i]] : [])),
  ];
  for (const group of groups) {
    const rows = concatWindows(group.map((i) => hns[i]!), dim);
    const y = new Float32Array(rows.total * dim);
    const split = routing
      ? (layer: number, probs: Float64Array, chosen: Int32Array) => {
        const E = probs.length / rows.total, k = chosen.length / rows.total;
        group.forEach((i, g) => {
          const a = rows.starts[g]!, T = lengths[i]!;
          const p = probs.subarray(a * E, (a + T) * E);
          routing(i, layer, p, chosen.subarray(a * k, (a + T) * k), T);
        });
      }
      : undefined;
    mlpForward(model, l, rows.data, rows.total, kernels, y, undefined, {
      ...(group.length > 1 ? { segments: rows.starts } : {}),
      ...(split ? { routing: split } : {}),
    });
    group.forEach((i, g) => {
      const a = rows.starts[g]! * dim, b = a + lengths[i]! * dim;
      mlpResidual(model, l, y.subarray(a, b), hs[i]!, lengths[i]!, kernels, outs[i]!);
    });
  }
}

/**
 * Rows a merged product takes at most (8,192 tokens: 128 MiB of Mixtral's 4,096-wide states per
 * buffer); more windows run in several groups, each group reading the block's weights once.
 */
export const MERGED_ROWS = 8192;

/**
 * Consecutive windows grouped so that each group's rows (`rows[i]`; 0 leaves a window out) add up
 * to at most `maxRows`; a longer window is a group of its own. Returns window indices.
 */
export function windowGroups(rows: readonly number[], maxRows: number): number[][] {
  const groups: number[][] = [];
  let current: number[] = [];
  let used = 0;
  rows.forEach((n, i) => {
    if (n === 0) return;
    if (current.length > 0 && used + n > maxRows) {
      groups.push(current);
      current = [];
      used = 0;
    }
    current.push(i);
    used += n;
  });
  if (current.length > 0) groups.push(current);
  return groups;
}

/** Windows' rows (`[T_i][dim]` each) one after another, with each window's first row. */
export function concatWindows(
  parts: readonly Float32Array[],
  dim: number,
): { data: Float32Array; starts: number[]; total: number } {
  const starts: number[] = [];
  let total = 0;
  for (const p of parts) {
    starts.push(total);
    total += p.length / dim;
  }
  const data = parts.length === 1 ? parts[0]! : new Float32Array(total * dim);
  if (data !== parts[0]) parts.forEach((p, i) => data.set(p, starts[i]! * dim));
  return { data, starts, total };
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
