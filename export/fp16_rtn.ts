/**
 * RTN with float16-exact scales: the RTN method (`methods/rtn.ts`, same quantizer, same
 * min-max / absmax ranges and zero points) whose group scales are rounded to float16 before the
 * codes are computed (`scale_rounding.ts` `fp16ScaleChooser`). Formats that store float16 scales
 * (GPTQ, AWQ, compressed-tensors in float16) then hold exactly the model that was quantized, so
 * `deno task export` uses it for RTN exports to them.
 *
 * @module
 */

import { quantizeLinears, rtn } from "../methods/rtn.ts";
import type { Method } from "../methods/types.ts";
import { fp16ScaleChooser } from "../models/formats/scale_rounding.ts";

/** RTN whose scales are float16 values (id `rtn`: the method, with its scales made storable). */
export const rtnFp16Scales: Method = {
  ...rtn,
  quantize(model, q) {
    const { weights, packed } = quantizeLinears(model.weights, q, fp16ScaleChooser());
    return Promise.resolve({
      config: model.config,
      weights,
      packed,
      notes: ["scales rounded to float16 before the codes are chosen (export)"],
    });
  },
};
