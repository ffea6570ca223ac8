/**
 * What the block-reconstruction methods (FlexRound, AffineQuant) check and build before any
 * compute: positive integer `epochs` and `batchSize`, a per-channel or per-group grid, a
 * calibration set, and the activation quantizer weight-activation cells train through.
 *
 * @module
 */

import { UnsupportedConfigError } from "../core/errors.ts";
import {
  type ActivationQuantization,
  DEFAULT_ACT_OPTIONS,
  validateActQuant,
} from "../core/act_quantizer.ts";
import type { CalibrationSet } from "./calibration/set.ts";
import type { MethodContext, QuantConfig } from "./types.ts";
import { requireCalibration } from "./support.ts";
import type { ReconstructionOptions } from "./calibration/reconstruct.ts";

/** Test hooks of the reconstruction methods. */
export interface ReconstructionHooks {
  /** Make the loss of this optimizer step of this block NaN (the guard must catch it). */
  readonly injectNaN?: ReconstructionOptions["injectNaN"];
}

/** The `seed` parameter of the reconstruction methods. */
export const ORDER_SEED_PARAM = {
  type: "number",
  default: 0,
  min: 0,
  integer: true,
  doc: "Seed of the order in which windows are visited",
} as const;

/** The checked common inputs of a reconstruction method. */
export interface ReconstructionSetup {
  readonly epochs: number;
  readonly batchSize: number;
  readonly calib: CalibrationSet;
  /** The cell's activation quantizer (A < 16), absent in weight-only cells. */
  readonly act?: ActivationQuantization;
}

/**
 * Checks and gathers the inputs shared by reconstruction methods; errors name the method `id`
 * and the parameter.
 */
export function reconstructionSetup(
  id: string,
  q: QuantConfig,
  params: Readonly<Record<string, number | boolean | string>>,
  ctx: MethodContext,
): ReconstructionSetup {
  const epochs = params.epochs as number;
  const batchSize = params.batchSize as number;
  for (const [name, v] of [["epochs", epochs], ["batchSize", batchSize]] as const) {
    if (!Number.isInteger(v) || v < 1) {
      throw new RangeError(`Parameter "${name}" of "${id}" must be a positive integer, got ${v}`);
    }
  }
  if (q.granularity === "tensor") {
    throw new UnsupportedConfigError(
      `${id} quantizes weights per output channel or per group, not per tensor`,
    );
  }
  const calib = requireCalibration(ctx, id);
  if (q.aBits >= 16) return { epochs, batchSize, calib };
  const act = { bits: q.aBits, kernel: "uniform" as const, options: q.act ?? DEFAULT_ACT_OPTIONS };
  validateActQuant(act.bits, act.options);
  return { epochs, batchSize, calib, act };
}
