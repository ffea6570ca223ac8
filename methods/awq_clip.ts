/**
 * AWQ's weight clipping search (llm-awq `auto_clip.py` `auto_clip_layer`, AutoAWQ
 * `AwqQuantizer._compute_best_clip`).
 *
 * For one linear `W` `[out][in]` and its (already scaled) calibration inputs:
 * - tokens are subsampled: every `step`-th of all `n` tokens (windows concatenated in order),
 *   `step = max(1, ⌊n / 512⌋)` (AutoAWQ; llm-awq's `⌊n / 512⌋` is the same for n ≥ 512 and
 *   fails below), which keeps 512 to 1023 tokens;
 * - for every (row, group): `m₀ = max |w_g|`; for `i = 0 … maxShrink·grid − 1` (10 with the
 *   defaults 0.5 × 20): `m = m₀ · (1 − i/grid)`, `ŵ = Q(clamp(w_g, −m, m))` with AWQ's quantizer
 *   on the clamped group, and the error is the mean over the kept tokens of
 *   `(Σ_{k∈g} x_k ŵ_k − Σ_{k∈g} x_k w_k)²` — the group's partial dot product, not the row's
 *   output;
 * - the `m` with the smallest error is kept, compared with a strict `<` against a running
 *   minimum that starts at 1e9 as in the references (i = 0 is no clipping);
 * - `W ← clamp(W, −m*, m*)` per (row, group).
 *
 * Arithmetic: the clamped weights and their quantization in float32 as in the references (which
 * run fp16); the partial dot products through the kernels' matmul (float32 results), their
 * squared differences averaged in float64. Output rows are not batched (the references' batches
 * of 256 or 64 rows only bound memory).
 *
 * @module
 */

import type { QuantizerSpec } from "../core/quantizer.ts";
import type { Kernels } from "../kernels/types.ts";
import type { Matrix } from "../models/types.ts";
import { awqGroupParams, groupColumns } from "./awq_quantizer.ts";
import { quantizeValue } from "../core/quantizer.ts";

/** Settings of the clip search. */
export interface ClipOptions {
  /** Grid points over (0, 1] (20). */
  readonly grid: number;
  /** Largest fraction of `m₀` removed (0.5): `maxShrink · grid` points are tried. */
  readonly maxShrink: number;
  /** Tokens to keep (512): every `max(1, ⌊n / tokens⌋)`-th. */
  readonly tokens: number;
}

/** The defaults of both references. */
export const CLIP_DEFAULTS: ClipOptions = { grid: 20, maxShrink: 0.5, tokens: 512 };

/** Initial running minimum of the error, as in the references (`torch.ones_like(...) * 1e9`). */
const INITIAL_MIN_ERROR = 1e9;

/**
 * Every `max(1, ⌊n / keep⌋)`-th row of the `[tokens][cols]` arrays `xs` taken as one stream of `n`
 * tokens, as a `[kept][cols]` array.
 */
export function subsampleTokens(
  xs: readonly Float32Array[],
  cols: number,
  keep: number,
): { x: Float32Array; tokens: number; step: number } {
  const n = xs.reduce((s, x) => s + x.length / cols, 0);
  const step = Math.max(1, Math.floor(n / keep));
  const kept = Math.ceil(n / step);
  const out = new Float32Array(kept * cols);
  let t = 0; // global token index
  let k = 0;
  for (const x of xs) {
    const T = x.length / cols;
    // first global index ≥ t that is a multiple of step
    let i = (step - (t % step)) % step;
    for (; i < T; i += step) out.set(x.subarray(i * cols, (i + 1) * cols), (k++) * cols);
    t += T;
  }
  return { x: out, tokens: kept, step };
}

/** The result of the clip search of one linear. */
export interface ClipResult {
  /** `[rows][groupsPerRow]` clipping maxima `m*` (equal to `m₀` where no clipping won). */
  readonly maxVal: Float32Array;
  /** `[rows][groupsPerRow]` the chosen shrink index `i` (0 = none). */
  readonly shrink: Uint8Array;
  readonly groupsPerRow: number;
  /** Columns per group. */
  readonly groupSize: number;
}

/**
 * The clip search of one linear `w` on the kept calibration inputs `x` (`[tokens][in]`, already
 * divided by the linear's AWQ scales): see the module documentation.
 */
export function searchClip(
  w: Matrix,
  x: Float32Array,
  tokens: number,
  spec: QuantizerSpec,
  kernels: Kernels,
  opts: ClipOptions = CLIP_DEFAULTS,
): ClipResult {
  const { rows, cols } = w;
  const g = groupColumns(spec, cols);
  const groupsPerRow = Math.ceil(cols / g);
  const maxVal = new Float32Array(rows * groupsPerRow);
  const shrink = new Uint8Array(rows * groupsPerRow);
  const steps = Math.floor(opts.maxShrink * opts.grid);
  const maxq = 2 ** spec.bits - 1;
  for (let grp = 0; grp < groupsPerRow; grp++) {
    const c0 = grp * g;
    const gs = Math.min(cols, c0 + g) - c0;
    // The group's inputs [tokens][gs] and weights [rows][gs].
    const xg = new Float32Array(tokens * gs);
    for (let t = 0; t < tokens; t++) xg.set(x.subarray(t * cols + c0, t * cols + c0 + gs), t * gs);
    const wg = new Float32Array(rows * gs);
    for (let r = 0; r < rows; r++) {
      wg.set(w.data.subarray(r * cols + c0, r * cols + c0 + gs), r * gs);
    }
    const org = new Float32Array(tokens * rows);
    kernels.matmul(xg, tokens, { rows, cols: gs, data: wg }, org);
    const m0 = new Float32Array(rows);
    for (let r = 0; r < rows; r++) {
      let m = 0;
      for (let k = 0; k < gs; k++) m = Math.max(m, Math.abs(wg[r * gs + k]!));
      m0[r] = m;
    }
    const best = Float32Array.from(m0);
    const minErr = new Float64Array(rows).fill(INITIAL_MIN_ERROR);
    const wq = new Float32Array(rows * gs);
    const cur = new Float32Array(tokens * rows);
    for (let i = 0; i < steps; i++) {
      const f = Math.fround(1 - i / opts.grid);
      const mv = new Float32Array(rows);
      for (let r = 0; r < rows; r++) {
        const m = Math.fround(m0[r]! * f);
        mv[r] = m;
        const o = r * gs;
        for (let k = 0; k < gs; k++) wq[o + k] = Math.min(m, Math.max(-m, wg[o + k]!));
        const p = awqGroupParams(wq, o, o + gs, spec.bits, spec.symmetric);
        for (let k = 0; k < gs; k++) {
          wq[o + k] = p.scale * (quantizeValue(wq[o + k]!, p.scale, p.zero, maxq) - p.zero);
        }
      }
      kernels.matmul(xg, tokens, { rows, cols: gs, data: wq }, cur);
      for (let r = 0; r < rows; r++) {
        let e = 0;
        for (let t = 0; t < tokens; t++) {
          const d = cur[t * rows + r]! - org[t * rows + r]!;
          e += d * d;
        }
        e /= tokens;
        if (e < minErr[r]!) {
          minErr[r] = e;
          best[r] = mv[r]!;
          shrink[r * groupsPerRow + grp] = i;
        }
      }
    }
    for (let r = 0; r < rows; r++) maxVal[r * groupsPerRow + grp] = best[r]!;
  }
  return { maxVal, shrink, groupsPerRow, groupSize: g };
}

/** `clamp(W, −m*, m*)` per (row, group) of a clip search's result (a new matrix). */
export function applyClip(w: Matrix, clip: ClipResult): Matrix {
  const { rows, cols } = w;
  const data = new Float32Array(rows * cols);
  const src = w.data;
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < cols; j++) {
      const m = clip.maxVal[r * clip.groupsPerRow + Math.floor(j / clip.groupSize)]!;
      data[r * cols + j] = Math.min(m, Math.max(-m, src[r * cols + j]!));
    }
  }
  return { rows, cols, data };
}
