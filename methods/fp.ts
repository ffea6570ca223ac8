/**
 * The full-precision reference: the model as loaded, unquantized. Every matrix has one such cell,
 * and quantized cells are compared against it (KL divergence, top-1 agreement).
 *
 * @module
 */

import type { Method } from "./types.ts";

/** The unquantized model (float32 weights and activations). */
export const fp: Method = {
  id: "fp",
  title: "Full precision (FP32)",
  taxonomy: "baseline",
  scope: "none",
  version: 1,
  wBits: [32],
  aBits: [16],
  needsCalibration: false,
  params: {},
  quantize(model) {
    return Promise.resolve({
      config: model.config,
      weights: model.weights,
      packed: new Map(),
      notes: [],
    });
  },
};
