/**
 * RTN: round-to-nearest weight quantization, the data-free baseline (IST-DASLab/gptq `opt.py`
 * `--nearest`, with `quant.py` `Quantizer`).
 *
 * Every linear weight (q, k, v, o, gate, up, down; in MoE blocks every expert's) is quantized
 * independently with the shared uniform quantizer (`core/quantizer.ts`): per output channel,
 * per group of input columns, or per tensor; asymmetric min-max with zero in range by default (as
 * GPTQ's `--nearest`), or symmetric absmax. Embeddings, norms, routers and the classifier stay in
 * full precision. No deviation from the reference. With activation bits below 16 the cell's
 * activation quantizer is attached after the weights (`activations.ts`): naive W8A8 / W4A4.
 *
 * @module
 */

import { type GroupParamsChooser, type PackedWeight, quantizeMatrix } from "../core/quantizer.ts";
import { mapLinears } from "../models/linears.ts";
import { isLazy, PackedMatrix, valuesOf } from "../models/lazy_matrix.ts";
import { noteMaterialized } from "../models/residency.ts";
import type { LlamaWeights } from "../models/types.ts";
import type { Method, QuantConfig } from "./types.ts";

/** The RTN method. */
export const rtn: Method = {
  id: "rtn",
  title: "Round-to-nearest",
  taxonomy: "baseline",
  scope: "weight-only",
  version: 1,
  wBits: [2, 3, 4, 5, 6, 7, 8],
  aBits: [2, 3, 4, 5, 6, 7, 8, 16],
  needsCalibration: false,
  reference: "IST-DASLab/gptq `--nearest` (quant.py Quantizer)",
  params: {},
  quantize(model, q) {
    const { weights, packed } = quantizeLinears(model.weights, q);
    return Promise.resolve({ config: model.config, weights, packed, notes: [] });
  },
};

/**
 * Every linear quantized independently with the weight quantizer of `q`, its groups' scales and
 * zeros chosen by `choose` (min-max by default; EAQuant passes its clipping search).
 */
export function quantizeLinears(
  w: LlamaWeights,
  q: QuantConfig,
  choose?: GroupParamsChooser,
): { weights: LlamaWeights; packed: Map<string, PackedWeight> } {
  const packed = new Map<string, PackedWeight>();
  const spec = {
    bits: q.wBits,
    granularity: q.granularity,
    symmetric: q.symmetric,
    ...(q.groupSize !== undefined ? { groupSize: q.groupSize } : {}),
  };
  const weights = mapLinears(w, (site, m) => {
    // A streamed weight is read once here: not made resident (`valuesOf`), as nothing else
    // reads its float32 values again.
    const r = quantizeMatrix(valuesOf(m), m.rows, m.cols, spec, choose);
    packed.set(site.name, r.packed);
    // A weight streamed from its file stays compact once quantized: its packed codes, with the
    // dequantized values materialized on access (the same values: scale · (q − zero)).
    if (isLazy(m)) {
      noteMaterialized(r.dequantized.byteLength); // garbage now: PackedMatrix re-derives it
      return new PackedMatrix(r.packed);
    }
    return { rows: m.rows, cols: m.cols, data: r.dequantized };
  });
  return { weights, packed };
}
