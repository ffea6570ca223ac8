/**
 * What a method declares it runs on (`Method`: bit-widths, granularities, dense or MoE models),
 * checked once, by the runner, before a cell starts: every method is refused with the same kind of
 * message, and a cell it cannot run becomes an `unsupported` row without quantizing anything.
 * Finer refusals that depend on the model's architecture stay with the method
 * (`UnsupportedConfigError` from `quantize`).
 *
 * @module
 */

import type { Granularity } from "../core/quantizer.ts";
import type { LlamaConfig } from "../models/types.ts";
import type { CalibrationSet } from "./calibration/set.ts";
import { type Method, type MethodContext, type QuantConfig, quantLabel } from "./types.ts";

const GRANULARITY: Record<Granularity, string> = {
  tensor: "per tensor",
  channel: "per output channel",
  group: "per group",
};

/** Why `method` cannot run `q` on a model of `config`, or undefined when its declaration allows it. */
export function cellUnsupported(
  method: Method,
  config: Pick<LlamaConfig, "moe">,
  q: QuantConfig,
): string | undefined {
  const id = method.id;
  if (!method.wBits.includes(q.wBits) || !method.aBits.includes(q.aBits)) {
    return `${id} supports W${method.wBits.join("/")} A${method.aBits.join("/")}, not ${
      quantLabel(q)
    }`;
  }
  const g = method.granularities;
  if (g && !g.includes(q.granularity)) {
    return `${id} quantizes weights ${g.map((x) => GRANULARITY[x]).join(" or ")}, not ${
      GRANULARITY[q.granularity]
    }`;
  }
  const moe = config.moe !== undefined;
  if (method.models === "dense" && moe) {
    return `${id} does not quantize Mixture-of-Experts models`;
  }
  if (method.models === "moe" && !moe) return `${id} is for Mixture-of-Experts models`;
  return undefined;
}

/** The context's calibration set; a `TypeError` naming `id` when the caller gave none. */
export function requireCalibration(ctx: MethodContext, id: string): CalibrationSet {
  if (!ctx.calibration) {
    throw new TypeError(`${id} needs a calibration set (MethodContext.calibration)`);
  }
  return ctx.calibration;
}
