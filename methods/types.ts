/**
 * What a quantization method is: registry data (id, taxonomy class, scope, supported bits,
 * parameters with defaults) plus the function that turns full-precision weights into quantized
 * ones.
 *
 * @module
 */

import type { ActQuantOptions } from "../core/act_quantizer.ts";
import type { Granularity, PackedWeight } from "../core/quantizer.ts";
import type { Kernels } from "../kernels/types.ts";
import type { LlamaConfig, LlamaWeights } from "../models/types.ts";
import type { LinearDiagnostic } from "./calibration/sequential.ts";
import type { CalibrationSet, CalibrationSpec } from "./calibration/set.ts";

/** Classes of the PTQ taxonomy (PTQ-Bench's four, plus the baseline, transformation and MoE-specific). */
export type TaxonomyClass =
  | "baseline"
  | "compensation"
  | "rotation"
  | "salience"
  | "optimization"
  | "transformation"
  | "moe";

/** What a method quantizes. `none` is the full-precision reference. */
export type MethodScope = "none" | "weight-only" | "weight-activation" | "moe";

/** The bit configuration of one matrix cell, written `W{w}A{a}[g{group}]`. */
export interface QuantConfig {
  /** Weight bits; 32 means unquantized (full precision). */
  readonly wBits: number;
  /** Activation bits; 16 or more means unquantized activations. */
  readonly aBits: number;
  readonly granularity: Granularity;
  /** Input columns per group when `granularity` is `group`. */
  readonly groupSize?: number;
  /** Symmetric absmax (true) or asymmetric min-max with zero in range (false). */
  readonly symmetric: boolean;
  /**
   * How activations are quantized when `aBits` < 16 (absent: per-token dynamic symmetric, no
   * clipping — `DEFAULT_ACT_OPTIONS`). Omitted for weight-only configurations.
   */
  readonly act?: ActQuantOptions;
  /**
   * MoE routers (and shared-expert gates) quantized apart, e.g. `{wBits: 8, aBits: 8}` (see
   * `methods/router.ts`); absent: router weights in full precision.
   */
  readonly router?: RouterQuant;
}

/** Bits of a MoE router's weights and of its input. */
export interface RouterQuant {
  readonly wBits: number;
  /** 16 or more: the router reads the float MLP input. */
  readonly aBits: number;
}

/**
 * `W4A16`, `W4A16g32`, `W8A16t` (per-tensor weights), `W8A8s` (symmetric weights), `FP32`; an
 * activation quantizer other than per-token dynamic symmetric adds `-tensor`, `-static`, `-asym`,
 * `-clip0.9`, `-bmm` (e.g. `W8A8st-static`, SmoothQuant O3); a quantized MoE router adds
 * `-rW8A8`.
 */
export function quantLabel(q: QuantConfig): string {
  if (q.wBits >= 32 && q.aBits >= 16) return "FP32";
  const g = q.granularity === "group" ? `g${q.groupSize}` : q.granularity === "tensor" ? "t" : "";
  let a = "";
  if (q.aBits < 16 && q.act) {
    const o = q.act;
    if (o.static) a += "-static";
    else if (o.granularity === "tensor") a += "-tensor";
    if (!o.symmetric) a += "-asym";
    if (o.clip !== 1) a += `-clip${o.clip}`;
    if (o.bmm) a += "-bmm";
  }
  const r = q.router ? `-rW${q.router.wBits}A${q.router.aBits}` : "";
  return `W${q.wBits}A${q.aBits}${g}${q.symmetric ? "s" : ""}${a}${r}`;
}

/** One tunable parameter of a method, documented for `--help` and the README. */
export interface ParamSpec {
  readonly type: "number" | "boolean" | "string";
  readonly default: number | boolean | string;
  readonly doc: string;
  /** For strings: the accepted values. */
  readonly choices?: readonly string[];
  /** For numbers: inclusive bounds and whether only integers are accepted. */
  readonly min?: number;
  readonly max?: number;
  readonly integer?: boolean;
}

/** The inputs a method may use besides the weights. */
export interface MethodContext {
  readonly kernels: Kernels;
  /** Calibration windows, given to methods with `needsCalibration`. */
  readonly calibration?: CalibrationSet;
  /** Progress of the method's own work (e.g. layers done). */
  readonly onProgress?: (done: number, total: number) => void;
}

/** A quantized model: weights to run (dequantized float32), and packed forms for kernels. */
export interface QuantizedModel {
  readonly config: LlamaConfig;
  readonly weights: LlamaWeights;
  /** Packed integer weights by linear name (`layers.0.q`), for kernels that read codes directly. */
  readonly packed: ReadonlyMap<string, PackedWeight>;
  /** Deviations or events worth recording in the result row. */
  readonly notes: readonly string[];
  /** Per-linear diagnostics of calibrated methods (reconstruction error, the method's own loss). */
  readonly diagnostics?: QuantDiagnostics;
  /** The quantization-kernel share of weight-activation models (see `methods/activations.ts`). */
  readonly activationZeros?: ActivationZeros;
  /** Activation bits of MoE routers' input, when the method quantizes it apart (EAQuant: 8). */
  readonly routerAbits?: number;
  /** The MoE routers' weights are quantized (EAQuant, or `QuantConfig.router`). */
  readonly routerQuantized?: boolean;
}

/** Fraction of activation elements that quantize to zero (CrossQuant's "quantization kernel"). */
export interface ActivationZeros {
  /** Over all sites: mean of the per-window fractions. */
  readonly fraction: number;
  /** Standard error of `fraction` over windows. */
  readonly stderr: number | null;
  /** Windows measured. */
  readonly windows: number;
  /** Fraction per input site (`qkv`, `o`, `gateup`, `down`, and `bmm` when set). */
  readonly bySite: Readonly<Record<string, number>>;
  /** What the windows were. */
  readonly source: string;
}

/** A model after a function-preserving transform (smoothing), ready for a weight quantizer. */
export interface TransformedModel {
  readonly config: LlamaConfig;
  /** Full-precision weights; `activations` set when the transform defines the activation quantizer. */
  readonly weights: LlamaWeights;
  readonly notes: readonly string[];
}

/** Diagnostics of a calibrated quantization, as stored in rows. */
export interface QuantDiagnostics {
  /** Mean over layers of each linear kind's relative reconstruction error `‖ΔW X‖²/‖WX‖²`. */
  readonly relErrorByKind: Readonly<Record<string, number>>;
  /** Sums over all linears of each method statistic (e.g. GPTQ's `loss`). */
  readonly statTotals: Readonly<Record<string, number>>;
  /** Every linear, in processing order. */
  readonly linears: readonly LinearDiagnostic[];
}

/** Summarizes per-linear diagnostics by kind. */
export function summarizeDiagnostics(linears: readonly LinearDiagnostic[]): QuantDiagnostics {
  const sums = new Map<string, { s: number; n: number }>();
  const statTotals: Record<string, number> = {};
  for (const d of linears) {
    const e = sums.get(d.kind) ?? { s: 0, n: 0 };
    e.s += d.relError;
    e.n++;
    sums.set(d.kind, e);
    for (const [k, v] of Object.entries(d.stats ?? {})) statTotals[k] = (statTotals[k] ?? 0) + v;
  }
  const relErrorByKind: Record<string, number> = {};
  for (const [k, { s, n }] of sums) relErrorByKind[k] = s / n;
  return { relErrorByKind, statTotals, linears };
}

/** A registered quantization method. */
export interface Method {
  readonly id: string;
  readonly title: string;
  /** Primary taxonomy class; the leaderboard groups by it. */
  readonly taxonomy: TaxonomyClass;
  readonly scope: MethodScope;
  /** Bumped whenever the method's numbers may change; stored in every row. */
  readonly version: number;
  /** Weight bit-widths the method supports. */
  readonly wBits: readonly number[];
  /** Activation bit-widths the method supports (16 = unquantized). */
  readonly aBits: readonly number[];
  readonly needsCalibration: boolean;
  /** Weight-quantizer granularities the method handles (absent: all three). */
  readonly granularities?: readonly Granularity[];
  /** The models it quantizes: dense ones only, Mixture-of-Experts ones only (absent: both). */
  readonly models?: "dense" | "moe";
  /**
   * Calibration settings of the method's own reference, over the suite's defaults
   * (`DEFAULT_CALIBRATION`): AWQ's `pileval-awq` recipe with 512-token blocks and seed 42. A
   * matrix's calibration settings override them field by field (absent: the suite's defaults).
   */
  readonly calibration?: Partial<CalibrationSpec>;
  /**
   * The weight quantizer's range convention, recorded in every row as
   * `quant.rangeIncludesZero`: whether an asymmetric group's range is widened to include zero.
   * Absent: the shared quantizer's (`core/quantizer.ts`), `!q.symmetric`. AWQ's own quantizer
   * never widens it (false).
   */
  rangeIncludesZero?(q: QuantConfig): boolean;
  /** Paper or code the implementation follows. */
  readonly reference?: string;
  readonly params: Readonly<Record<string, ParamSpec>>;
  /**
   * Expected cost of one cell (quantization and evaluation) relative to an RTN cell (1 when unset),
   * for balancing shards; rough ratios measured on stories260K.
   */
  readonly relativeCost?: number;
  /** Parameter defaults that depend on the model (e.g. SmoothQuant's α per model family). */
  modelDefaults?(modelId: string): Readonly<Record<string, number | boolean | string>>;
  /**
   * Methods that transform the full-precision weights before quantizing them (SmoothQuant,
   * static CrossQuant) expose the transform alone, so another method can quantize the result:
   * the chain `smoothquant+gptq`.
   */
  transform?(
    model: { config: LlamaConfig; weights: LlamaWeights },
    q: QuantConfig,
    params: Readonly<Record<string, number | boolean | string>>,
    ctx: MethodContext,
  ): Promise<TransformedModel>;
  /**
   * Quantize a model. Throws `UnsupportedConfigError` for a configuration the method does not
   * handle (the runner records the cell as unsupported).
   */
  quantize(
    model: { config: LlamaConfig; weights: LlamaWeights },
    q: QuantConfig,
    params: Readonly<Record<string, number | boolean | string>>,
    ctx: MethodContext,
  ): Promise<QuantizedModel>;
}

/**
 * Whether `m` (a method or a row's method) is the full-precision reference: the registry's entry
 * of scope `none` (`fp`), which every matrix runs first and every comparison is against.
 */
export function isFullPrecision(m: { readonly scope: string }): boolean {
  return m.scope === "none";
}

/** Fills in defaults and rejects unknown or ill-typed parameters. */
export function resolveParams(
  method: Method,
  given: Readonly<Record<string, unknown>> = {},
): Record<string, number | boolean | string> {
  const out: Record<string, number | boolean | string> = {};
  for (const [name, spec] of Object.entries(method.params)) out[name] = spec.default;
  for (const [name, value] of Object.entries(given)) {
    const spec = method.params[name];
    if (!spec) {
      const known = Object.keys(method.params);
      throw new TypeError(
        `Method "${method.id}" has no parameter "${name}"; it has: ${known.join(", ") || "none"}`,
      );
    }
    const actual: string = typeof value;
    if (actual !== spec.type) {
      throw new TypeError(
        `Parameter "${name}" of "${method.id}" must be a ${spec.type}, got ${
          JSON.stringify(value)
        }`,
      );
    }
    if (spec.choices && !spec.choices.includes(value as string)) {
      throw new TypeError(
        `Parameter "${name}" of "${method.id}" must be one of ${spec.choices.join(", ")}, got ${
          JSON.stringify(value)
        }`,
      );
    }
    if (typeof value === "number") {
      const bad = !Number.isFinite(value) || (spec.integer && !Number.isInteger(value)) ||
        (spec.min !== undefined && value < spec.min) ||
        (spec.max !== undefined && value > spec.max);
      if (bad) {
        throw new RangeError(
          `Parameter "${name}" of "${method.id}" must be ${
            spec.integer ? "an integer" : "a number"
          }${spec.min !== undefined ? ` ≥ ${spec.min}` : ""}${
            spec.max !== undefined ? ` ≤ ${spec.max}` : ""
          }, got ${value}`,
        );
      }
    }
    out[name] = value as number | boolean | string;
  }
  return out;
}
