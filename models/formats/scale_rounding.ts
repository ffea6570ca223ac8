/**
 * Scale rounding for checkpoint formats that store scales narrower than our float32 (GPTQ and
 * AutoAWQ store float16, compressed-tensors the weight dtype): a report of what rounding changes,
 * the rounding itself (refusing overflow), the packed weight with rounded scales (the dequantized
 * reference a loader reproduces), and a scale chooser that makes the export lossless by
 * quantizing with float16-exact scales in the first place.
 *
 * @module
 */

import type { GroupParamsChooser, PackedWeight } from "../../core/quantizer.ts";
import { groupParams } from "../../core/quantizer.ts";
import { type FloatDtype, roundToDtype } from "./tensor.ts";

/** How storing float32 scales in a narrower float dtype changes them. */
export interface ScaleRoundingReport {
  /** The dtype checked. */
  readonly dtype: FloatDtype;
  /** Number of scales checked. */
  readonly count: number;
  /** True when every scale is stored exactly (the export is lossless). */
  readonly exact: boolean;
  /** Scales that change when rounded. */
  readonly changed: number;
  /** Largest `|rounded − s| / |s|` over non-zero scales (0 when exact; Infinity on overflow). */
  readonly maxRelativeChange: number;
  /** Scales that round to ±Infinity (above 65504 for F16). */
  readonly overflow: number;
  /** Non-zero scales that round to zero (below half the smallest F16 subnormal). */
  readonly flushedToZero: number;
}

/**
 * Reports what rounding `scales` to `dtype` does, so the caller can decide whether the export is
 * lossless or quantize again with {@linkcode fp16ScaleChooser}.
 */
export function scaleRoundingReport(
  scales: ArrayLike<number>,
  dtype: FloatDtype = "F16",
): ScaleRoundingReport {
  let changed = 0, overflow = 0, flushed = 0, maxRel = 0;
  for (let i = 0; i < scales.length; i++) {
    const s = scales[i]!;
    const r = roundToDtype(s, dtype);
    if (r === s || (Number.isNaN(r) && Number.isNaN(s))) continue;
    changed++;
    if (!Number.isFinite(r)) overflow++;
    if (r === 0 && s !== 0) flushed++;
    const rel = Math.abs(r - s) / Math.abs(s);
    if (!(rel <= maxRel)) maxRel = rel;
  }
  return {
    dtype,
    count: scales.length,
    exact: changed === 0,
    changed,
    maxRelativeChange: maxRel,
    overflow,
    flushedToZero: flushed,
  };
}

/**
 * Rounds scales to `dtype` for storage; throws a `RangeError` naming `name` and the first index
 * whose rounded scale is not finite (a float16 overflow would make every weight of the group
 * ±Infinity or NaN).
 */
export function roundScales(
  name: string,
  scales: ArrayLike<number>,
  dtype: FloatDtype,
): Float32Array {
  const out = new Float32Array(scales.length);
  for (let i = 0; i < scales.length; i++) {
    const r = roundToDtype(scales[i]!, dtype);
    if (!Number.isFinite(r)) {
      throw new RangeError(
        `${name}: scale ${scales[i]} at index ${i} is not finite in ${dtype}` +
          (dtype === "F16" ? " (largest F16 is 65504)" : ""),
      );
    }
    out[i] = r;
  }
  return out;
}

/**
 * The packed weight with its scales rounded to `dtype`: what a loader of the exported checkpoint
 * dequantizes (`dequantizePacked` of the result is the bit-exact reference for round trips).
 */
export function withRoundedScales(p: PackedWeight, dtype: FloatDtype = "F16"): PackedWeight {
  return { ...p, scales: roundScales("scales", p.scales, dtype) };
}

/** Smallest positive float16 (a subnormal), 2^−24. */
const F16_MIN_SUBNORMAL = 2 ** -24;

/**
 * Wraps a scale chooser so that every scale is float16-exact (rounded to nearest, at least the
 * smallest float16 subnormal): a weight quantized with it exports to GPTQ / AWQ / float16
 * compressed-tensors losslessly. The zero point is the wrapped chooser's, and codes are then
 * computed against the rounded scale by `quantizeMatrix`.
 */
export function fp16ScaleChooser(choose: GroupParamsChooser = groupParams): GroupParamsChooser {
  return (x, from, to, bits, symmetric) => {
    const p = choose(x, from, to, bits, symmetric);
    const s = Math.f16round(p.scale);
    if (!Number.isFinite(s)) {
      throw new RangeError(`scale ${p.scale} overflows float16 (largest 65504)`);
    }
    return { scale: Math.max(s, F16_MIN_SUBNORMAL), zero: p.zero };
  };
}
