/**
 * AWQ's per-group scale search (llm-awq `auto_scale.py` `_search_module_scale`, AutoAWQ
 * `AwqQuantizer._search_best_scale` / `_compute_best_scale`).
 *
 * For a group of linears that read the same input `X`:
 * 1. `x̄_j` = mean over every calibration token of `|X_j|` (llm-awq's `get_act_scale`, misnamed
 *    `x_max`); with `duoScaling`, also `w̄_j` = mean over the output rows of the group's stacked
 *    weights of `|W[o, j]| / (max |W| over that row's quantization group + 1e-6)`.
 * 2. For each ratio `r = i / grid`, `i = 0 … grid − 1` (r = 1 excluded), the candidate
 *    `s = clamp_min(x̄^r, 1e-4)` (llm-awq) or `s = clamp_min(x̄^r / (w̄^(1−r) + 1e-4), 1e-4)`
 *    (AutoAWQ `duo_scaling`), normalised `s ← s / sqrt(max(s) · min(s))`; AutoAWQ then sets
 *    infinite or NaN entries to 1 (done here in duo mode only, where it applies).
 * 3. Trial weights `Q(W · diag(s)) · diag(s)^−1` for every linear of the group, with AWQ's
 *    quantizer (`awq_quantizer.ts`); the caller's loss compares the inspected module's output
 *    with them against its full-precision output.
 * 4. The ratio with the smallest loss, compared with a strict `<` (ties keep the smaller r).
 *
 * In llm-awq mode r = 0 gives `s ≡ 1` exactly, so its trial weights are round-to-nearest with
 * AWQ's quantizer bit for bit and the chosen loss is never above RTN's; with `duoScaling` the grid
 * has no RTN point.
 *
 * Arithmetic is float32 at each step (the references run fp16 tensors, with float32 inside the
 * pow); the exponent is the Python float `i / grid` in llm-awq mode and the float32 tensor value
 * `i / grid` in AutoAWQ's, as each computes it. Means are summed in float64.
 *
 * @module
 */

import type { QuantizerSpec } from "../core/quantizer.ts";
import type { Matrix } from "../models/types.ts";
import { awqQuantizeMatrix, groupColumns } from "./awq_quantizer.ts";

/** Floor of candidate scales (`clamp(min=1e-4)`) and the `+ 1e-4` of duo scaling. */
export const AWQ_SCALE_FLOOR = Math.fround(1e-4);
/** The `+ 1e-6` under each group's absolute maximum in AutoAWQ's weight statistic. */
export const AWQ_WEIGHT_EPS = Math.fround(1e-6);

/**
 * `x̄_j`: the mean of `|x_j|` over every row (token) of the `[tokens][cols]` arrays `xs`, summed
 * in float64 and rounded to float32.
 */
export function meanAbs(xs: readonly Float32Array[], cols: number): Float32Array {
  const sum = new Float64Array(cols);
  let n = 0;
  for (const x of xs) {
    const T = x.length / cols;
    for (let t = 0; t < T; t++) {
      for (let j = 0; j < cols; j++) sum[j] = sum[j]! + Math.abs(x[t * cols + j]!);
    }
    n += T;
  }
  if (n === 0) throw new RangeError("Cannot compute AWQ's input statistic: no calibration tokens");
  return Float32Array.from(sum, (s) => s / n);
}

/**
 * AutoAWQ's `w̄_j`: over the rows of all `ms` stacked (`torch.cat(dim=0)`), the mean of
 * `|W[o, j]| / (max |W[o, group(j)]| + 1e-6)` with the groups of `spec` (float32 quotients,
 * float64 sum).
 */
export function weightMeanNormalized(ms: readonly Matrix[], spec: QuantizerSpec): Float32Array {
  const cols = ms[0]!.cols;
  const g = groupColumns(spec, cols);
  const sum = new Float64Array(cols);
  let rows = 0;
  for (const m of ms) {
    const d = m.data;
    for (let r = 0; r < m.rows; r++) {
      for (let c0 = 0; c0 < cols; c0 += g) {
        const c1 = Math.min(cols, c0 + g);
        let amax = 0;
        for (let j = c0; j < c1; j++) amax = Math.max(amax, Math.abs(d[r * cols + j]!));
        const den = Math.fround(amax + AWQ_WEIGHT_EPS);
        for (let j = c0; j < c1; j++) {
          sum[j] = sum[j]! + Math.fround(Math.abs(d[r * cols + j]!) / den);
        }
      }
    }
    rows += m.rows;
  }
  return Float32Array.from(sum, (s) => s / rows);
}

/** How the candidate scales are formed. */
export interface ScaleRule {
  /** AutoAWQ's `duo_scaling` (true) or llm-awq's activation-only rule (false). */
  readonly duoScaling: boolean;
  /** Grid points (20 in both references). */
  readonly grid: number;
}

/**
 * The normalised candidate scales of grid point `i` (`r = i / grid`): see the module
 * documentation. `wbar` is required with `duoScaling`.
 */
export function candidateScales(
  xbar: Float32Array,
  wbar: Float32Array | undefined,
  i: number,
  rule: ScaleRule,
): Float32Array {
  const n = xbar.length;
  const s = new Float32Array(n);
  if (rule.duoScaling) {
    if (!wbar) throw new TypeError("duo scaling needs the weight statistic w̄");
    // AutoAWQ: `ratio` is a float32 tensor element divided by n_grid.
    const r = Math.fround(i / rule.grid);
    const rw = Math.fround(1 - r);
    for (let j = 0; j < n; j++) {
      const num = Math.fround(Math.pow(xbar[j]!, r));
      const den = Math.fround(Math.fround(Math.pow(wbar[j]!, rw)) + AWQ_SCALE_FLOOR);
      s[j] = Math.max(Math.fround(num / den), AWQ_SCALE_FLOOR);
    }
  } else {
    // llm-awq: `ratio * 1 / n_grid` is a Python float.
    const r = i / rule.grid;
    for (let j = 0; j < n; j++) {
      s[j] = Math.max(Math.fround(Math.pow(xbar[j]!, r)), AWQ_SCALE_FLOOR);
    }
  }
  let max = -Infinity;
  let min = Infinity;
  for (let j = 0; j < n; j++) {
    // torch.max/min propagate NaN
    if (Number.isNaN(s[j]!)) max = min = NaN;
    else if (!Number.isNaN(max)) {
      max = Math.max(max, s[j]!);
      min = Math.min(min, s[j]!);
    }
  }
  const norm = Math.fround(Math.sqrt(Math.fround(max * min)));
  for (let j = 0; j < n; j++) s[j] = s[j]! / norm;
  if (rule.duoScaling) {
    // AutoAWQ: scales[isinf] = 1, scales[isnan] = 1 ("avoid scaling values that overflow").
    for (let j = 0; j < n; j++) if (!Number.isFinite(s[j]!)) s[j] = 1;
  }
  return s;
}

/**
 * The trial weight `Q(W · diag(s)) · diag(s)^−1` of one linear (float32 products and quotients,
 * AWQ's quantizer with `spec`).
 */
export function trialWeight(m: Matrix, s: Float32Array, spec: QuantizerSpec): Matrix {
  const { rows, cols } = m;
  const src = m.data;
  const scaled = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < cols; j++) scaled[r * cols + j] = src[r * cols + j]! * s[j]!;
  }
  const q = awqQuantizeMatrix(scaled, rows, cols, spec).dequantized;
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < cols; j++) q[r * cols + j] = q[r * cols + j]! / s[j]!;
  }
  return { rows, cols, data: q };
}

/** The outcome of one group's search. */
export interface ScaleSearchResult {
  /** The chosen ratio `r = i / grid`. */
  readonly ratio: number;
  /** Index `i` of the chosen grid point. */
  readonly index: number;
  /** The chosen (normalised) scales. */
  readonly scales: Float32Array;
  /** Loss of every grid point, in grid order. */
  readonly losses: readonly number[];
  /** The chosen loss (`losses[index]`). */
  readonly loss: number;
}

/**
 * Searches the grid for one group: `loss(trials)` gets the trial weights of every linear of
 * `linears` (in order) and returns the inspected module's mean squared output error. Throws a
 * `RangeError` when no grid point gives a finite loss comparison (the references raise).
 */
export function searchScales(
  linears: readonly Matrix[],
  xbar: Float32Array,
  spec: QuantizerSpec,
  rule: ScaleRule,
  loss: (trials: readonly Matrix[]) => number,
): ScaleSearchResult {
  const wbar = rule.duoScaling ? weightMeanNormalized(linears, spec) : undefined;
  const losses: number[] = [];
  let best = -1;
  let bestLoss = Infinity;
  let bestScales: Float32Array | undefined;
  for (let i = 0; i < rule.grid; i++) {
    const s = candidateScales(xbar, wbar, i, rule);
    const l = loss(linears.map((m) => trialWeight(m, s, spec)));
    losses.push(l);
    if (l < bestLoss) {
      bestLoss = l;
      best = i;
      bestScales = s;
    }
  }
  if (best < 0 || !bestScales) {
    throw new RangeError(`AWQ scale search found no finite loss: ${losses.join(", ")}`);
  }
  const bad = bestScales.findIndex((v) => !Number.isFinite(v) || !(v > 0));
  if (bad >= 0) {
    throw new RangeError(`AWQ scale ${bad} of the chosen ratio is ${bestScales[bad]}`);
  }
  return {
    ratio: best / rule.grid,
    index: best,
    scales: bestScales,
    losses,
    loss: bestLoss,
  };
}
