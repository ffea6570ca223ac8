/**
 * Quantized weights written back in the checkpoint's storage dtype. The reference
 * implementations quantize in float32 and store the dequantized weight into the model's own
 * tensor (`W.to(dtype)`: GPTQ's `fasterquant` and `--nearest`, AWQ's in-place
 * `pseudo_quantize_tensor`), so for a bf16 or fp16 checkpoint every dequantized value is
 * rounded to that format. This step does the same for every linear a method changed, so a
 * quantized bf16 model computes with the weights the reference would hold.
 *
 * @module
 */

import { isHalfDtype, roundToStorage } from "../core/storage_dtype.ts";
import { PackedMatrix } from "../models/lazy_matrix.ts";
import { listLinears, mapLinears } from "../models/linears.ts";
import type { LlamaWeights, Matrix } from "../models/types.ts";

/**
 * `quantized` with every linear that differs from its counterpart in `source` rounded to the
 * source's 16-bit storage dtype (unchanged linears and float32 sources are kept as they are),
 * and the number of linears rounded.
 */
export function roundToSourceDtype(
  source: LlamaWeights,
  quantized: LlamaWeights,
): { weights: LlamaWeights; rounded: number; dtype?: string } {
  const sources = new Map(listLinears(source).map(({ site, matrix }) => [site.name, matrix]));
  let rounded = 0;
  let dtype: string | undefined;
  const weights = mapLinears(quantized, (site, m): Matrix => {
    const src = sources.get(site.name);
    if (!src || src === m || !isHalfDtype(src.dtype)) return m;
    rounded++;
    dtype = src.dtype;
    if (m instanceof PackedMatrix) return new PackedMatrix(m.packed, src.dtype);
    return {
      rows: m.rows,
      cols: m.cols,
      data: roundToStorage(m.data.slice(), src.dtype),
      dtype: src.dtype,
    };
  });
  return { weights, rounded, ...(dtype ? { dtype } : {}) };
}
