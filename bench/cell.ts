/**
 * One cell's quantization, shared by the matrix runner and the browser page so both compute the
 * same model: the method's weights (written back in the checkpoint's storage dtype, as the
 * reference implementations do), then the routers when the cell asks (`QuantConfig.router`),
 * then the activation stage.
 *
 * @module
 */

import { applyActivationQuant } from "../methods/activations.ts";
import { quantizeRouters } from "../methods/router.ts";
import { roundToSourceDtype } from "../methods/storage_dtype.ts";
import {
  type Method,
  type MethodContext,
  type QuantConfig,
  type QuantizedModel,
  resolveParams,
} from "../methods/types.ts";
import type { LoadedModel } from "../models/types.ts";

/** Parameters of a method for a model: the method's model defaults, then the given ones. */
export function cellParams(
  method: Method,
  modelId: string,
  given: Readonly<Record<string, unknown>>,
): Record<string, number | boolean | string> {
  return resolveParams(method, { ...method.modelDefaults?.(modelId), ...given });
}

/** Quantizes `model` as the cell `(method, params, q)` says. */
export async function quantizeCell(
  model: LoadedModel,
  method: Method,
  params: Readonly<Record<string, number | boolean | string>>,
  q: QuantConfig,
  ctx: MethodContext,
): Promise<QuantizedModel> {
  let weightsDone = await method.quantize(model, q, params, ctx);
  const cast = roundToSourceDtype(model.weights, weightsDone.weights);
  if (cast.rounded > 0) {
    weightsDone = {
      ...weightsDone,
      weights: cast.weights,
      notes: [
        ...weightsDone.notes,
        `dequantized weights of ${cast.rounded} linears rounded to the checkpoint's ${cast.dtype} ` +
        `(as the reference's W.to(dtype))`,
      ],
    };
  }
  if (q.router) weightsDone = quantizeRouters(weightsDone, q.router);
  return applyActivationQuant(weightsDone, q, ctx);
}
