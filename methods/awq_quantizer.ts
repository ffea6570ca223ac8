/**
 * The weight quantizer AWQ uses inside its searches and for its final round-to-nearest (llm-awq
 * `quantizer.py` `pseudo_quantize_tensor`, AutoAWQ `AwqQuantizer.pseudo_quantize_tensor`). It
 * differs from the shared GPTQ-convention quantizer (`core/quantizer.ts`) in one rule: the
 * asymmetric range of a group is its own `[min, max]`, **not widened to include zero**.
 *
 * Per group of `g` input columns of a row, with `maxq = 2^b − 1`:
 * - `scale = max(max − min, 1e-5) / maxq`;
 * - `zero = clamp(−round(min / scale), 0, maxq)`;
 * - `q = clamp(round(w / scale) + zero, 0, maxq)`, read back as `scale · (q − zero)`.
 *
 * A group whose values are all positive (or all negative) therefore gets `zero` clamped to 0 (or
 * `maxq`) and its far end saturates, exactly as in the references. The symmetric branch
 * (`zero_point=False`, which the llm-awq code says was never used) is `scale = max(max|w|, 1e-5) /
 * (2^(b−1) − 1)` with signed codes in `[−2^(b−1), 2^(b−1) − 1]`, i.e. our packed zero `2^(b−1)`.
 *
 * Arithmetic is float32 (each of `max − min`, the scale, `min / scale`, `w / scale` and the
 * dequantized value rounded to float32), the same steps as the references on float32 tensors;
 * they run fp16 models, so their own numbers carry fp16 rounding instead. Rounding is
 * half-to-even (`torch.round`).
 *
 * The references assert `in % g == 0`; here a row whose column count `g` does not divide has a
 * shorter last group, as in the shared quantizer (the method notes which linears this affects).
 *
 * @module
 */

import { UnsupportedConfigError } from "../core/errors.ts";
import {
  type QuantizedMatrix,
  quantizeMatrix,
  type QuantizerSpec,
  roundHalfEven,
} from "../core/quantizer.ts";
import type { QuantConfig } from "./types.ts";

/** The floor of a group's range (asymmetric) or absolute maximum (symmetric): `clamp(min=1e-5)`. */
export const AWQ_RANGE_FLOOR = Math.fround(1e-5);

/**
 * AWQ's scale and zero point for the group `x[from..to)` (a `GroupParamsChooser` for
 * `quantizeMatrix`): min-max without zero forced into the range, or AWQ's absmax.
 *
 * @example Asymmetric 2-bit group in [0.5, 2]: the range is not widened to 0
 * ```ts
 * import { awqGroupParams } from "./awq_quantizer.ts";
 * const p = awqGroupParams([0.5, 1, 2], 0, 3, 2, false);
 * // scale = (2 − 0.5)/3 = 0.5, zero = clamp(−round(0.5 / 0.5), 0, 3) = 0
 * if (p.scale !== 0.5 || p.zero !== 0) throw new Error("unexpected");
 * ```
 */
export function awqGroupParams(
  x: ArrayLike<number>,
  from: number,
  to: number,
  bits: number,
  symmetric: boolean,
): { scale: number; zero: number } {
  if (symmetric) {
    let m = 0;
    for (let i = from; i < to; i++) m = Math.max(m, Math.abs(x[i]!));
    const half = 2 ** (bits - 1);
    return { scale: Math.fround(Math.max(m, AWQ_RANGE_FLOOR) / (half - 1)), zero: half };
  }
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = from; i < to; i++) {
    const v = x[i]!;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const maxq = 2 ** bits - 1;
  const scale = Math.fround(Math.max(Math.fround(hi - lo), AWQ_RANGE_FLOOR) / maxq);
  const z = -roundHalfEven(Math.fround(lo / scale));
  return { scale, zero: Math.min(maxq, Math.max(0, z)) };
}

/**
 * The quantizer spec of a cell for AWQ: per group of `groupSize` columns, or per output row
 * (`channel`: one group of all columns, AWQ's `q_group_size = −1`). Per-tensor quantization has
 * no AWQ counterpart and throws `UnsupportedConfigError`.
 */
export function awqSpec(
  q: Pick<QuantConfig, "wBits" | "granularity" | "groupSize" | "symmetric">,
): QuantizerSpec {
  if (q.granularity === "tensor") {
    throw new UnsupportedConfigError(
      "awq quantizes per group of input columns or per output channel, not per tensor",
    );
  }
  return {
    bits: q.wBits,
    granularity: q.granularity,
    symmetric: q.symmetric,
    ...(q.granularity === "group" ? { groupSize: q.groupSize! } : {}),
  };
}

/** Columns per group of `spec` for a matrix of `cols` columns (all of them per channel). */
export function groupColumns(spec: QuantizerSpec, cols: number): number {
  return spec.granularity === "group" ? Math.min(spec.groupSize!, cols) : cols;
}

/**
 * Round-to-nearest of a row-major `[rows][cols]` matrix with AWQ's quantizer: packed codes and
 * the dequantized float32 values.
 */
export function awqQuantizeMatrix(
  data: Float32Array,
  rows: number,
  cols: number,
  spec: QuantizerSpec,
): QuantizedMatrix {
  return quantizeMatrix(data, rows, cols, spec, awqGroupParams);
}
