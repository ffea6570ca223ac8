/**
 * A quantized model as the tensors and config objects of a transformers-layout checkpoint in
 * one of two formats:
 *
 * - `gptq` (AutoGPTQ / GPTQModel / transformers `GPTQConfig`): every linear as
 *   `qweight/qzeros/scales/g_idx` (`gptq.ts`), `quantization_config` in `config.json` and
 *   `quantize_config.json`; zero points v1 (`"gptq"`, stores z − 1) when every zero point of
 *   every linear is ≥ 1, else v2 (`"gptq_v2"`, GPTQModel only), as `gptqFormatFor` decides per
 *   weight;
 * - `compressed-tensors` `pack-quantized` (vLLM / llm-compressor): every linear as
 *   `weight_packed/weight_scale/weight_zero_point/weight_shape[/weight_g_idx]`
 *   (`compressed_tensors.ts`), 4 or 8 bits; linears left unquantized are listed in `ignore`.
 *
 * All other tensors (embeddings, norms, biases, the classifier, routers) are written as floats
 * in `floatDtype` (default F16, the dtype GPTQ kernels run in); a tensor with a value beyond
 * float16's range (|x| > 65504) is kept in float32 instead and reported. `"source"` keeps the
 * source checkpoint's dtype (lossless). Fused Phi-3 tensors are re-fused (`checkpoint_layout.ts`).
 * GPTQ stores float16 scales: the report says how many scales that rounds (none when the model
 * was quantized with `fp16ScaleChooser`).
 *
 * @module
 */

import type { PackedWeight } from "../core/quantizer.ts";
import type { LlamaConfig, LlamaWeights } from "../models/types.ts";
import {
  type CheckpointEntry,
  checkpointLayout,
  type QuantizedCheckpointLinear,
} from "./checkpoint_layout.ts";
import {
  compressedTensorsQuantizationConfig,
  exportCompressedTensors,
  isSymmetricPacked,
} from "../models/formats/compressed_tensors.ts";
import {
  exportGptq,
  type GptqCheckpointFormat,
  gptqFormatFor,
  gptqGroupSize,
  gptqQuantizationConfig,
  gptqQuantizeConfig,
} from "../models/formats/gptq.ts";
import { isContiguous } from "../models/formats/packed.ts";
import { type EagerTensorEntry, namedEntries } from "../models/formats/safetensors_write.ts";
import { scaleRoundingReport } from "../models/formats/scale_rounding.ts";
import { type FloatDtype, floatTensor } from "../models/formats/tensor.ts";

/** The checkpoint formats written by {@linkcode quantizedCheckpoint}. */
export type CheckpointFormat = "gptq" | "compressed-tensors";

/** Options of {@linkcode quantizedCheckpoint}. */
export interface QuantizedCheckpointOptions {
  readonly format: CheckpointFormat;
  /**
   * dtype of the float tensors (and of compressed-tensors' `weight_scale`): F16 (default), BF16,
   * F32, or `source` (the source embedding's storage dtype, F32 when unknown).
   */
  readonly floatDtype?: FloatDtype | "source";
  /** GPTQ zero-point format: `auto` (default: v1 when possible, as `gptqFormatFor`), or forced. */
  readonly gptqFormat?: "auto" | GptqCheckpointFormat;
  /** GPTQ `damp_percent` to record (the method's `percdamp`; default 0.01, AutoGPTQ's). */
  readonly dampPercent?: number;
}

/** How the export's scales and floats relate to the model's (the manifest records it). */
export interface CheckpointReport {
  readonly format: CheckpointFormat;
  /** GPTQ zero-point format written (`gptq` = v1, `gptq_v2`). */
  readonly checkpointFormat?: GptqCheckpointFormat;
  readonly floatDtype: FloatDtype;
  /** Float tensors kept in float32 because float16 cannot hold them. */
  readonly keptFloat32: readonly string[];
  /** Scale rounding to the stored scale dtype, over all linears. */
  readonly scales: {
    readonly dtype: FloatDtype;
    readonly count: number;
    readonly changed: number;
    readonly maxRelativeChange: number;
  };
  readonly bits: number;
  /** Group size (−1 / null: one group per row). */
  readonly groupSize: number | null;
  readonly symmetric: boolean;
  readonly actOrder: boolean;
  readonly quantizedLinears: number;
  /** Linear modules written unquantized (compressed-tensors `ignore`). */
  readonly unquantized: readonly string[];
}

/** The checkpoint: tensors in writing order, config objects and the report. */
export interface QuantizedCheckpoint {
  readonly tensors: readonly EagerTensorEntry[];
  /** `config.json`'s `quantization_config`. */
  readonly quantizationConfig: Record<string, unknown>;
  /** `quantize_config.json` (GPTQ only). */
  readonly quantizeConfig?: Record<string, unknown>;
  /** `config.json`'s `torch_dtype`. */
  readonly torchDtype: string;
  readonly report: CheckpointReport;
}

const TORCH_DTYPE: Readonly<Record<FloatDtype, string>> = {
  F16: "float16",
  BF16: "bfloat16",
  F32: "float32",
};

/** The `torch_dtype` name of a float dtype. */
export function torchDtypeName(d: FloatDtype): string {
  return TORCH_DTYPE[d];
}

function uniform<T>(what: string, values: readonly [string, T][]): T {
  const first = values[0]!;
  const other = values.find(([, v]) => v !== first[1]);
  if (other) {
    throw new RangeError(
      `the checkpoint's quantization_config holds one ${what} for every linear, but ` +
        `${first[0]} has ${first[1]} and ${other[0]} has ${other[1]}`,
    );
  }
  return first[1];
}

/** Refuses a model whose forward pass a weight-only checkpoint cannot express. */
function assertWeightOnly(weights: LlamaWeights, format: CheckpointFormat): void {
  if (weights.online) {
    throw new RangeError(
      "the model has online rotations (QuaRot) in its forward pass, which a " +
        `${format} checkpoint cannot express`,
    );
  }
  if (weights.activations) {
    throw new RangeError(
      `the model quantizes activations, which a weight-only ${format} export cannot express; ` +
        "export a weight-only (A16) model",
    );
  }
}

/** The float tensors' dtype for `option`, `"source"` meaning the source embedding's dtype. */
function resolveFloatDtype(
  weights: LlamaWeights,
  option: QuantizedCheckpointOptions["floatDtype"],
): FloatDtype {
  const source = (weights.embed.dtype ?? "F32") as FloatDtype;
  return option === "source"
    ? (["F16", "BF16", "F32"].includes(source) ? source : "F32")
    : option ?? "F16";
}

/** Bits, group size (−1: one group per row), symmetry and act order shared by all linears. */
interface LinearSettings {
  readonly bits: number;
  readonly groupSize: number;
  readonly symmetric: boolean;
  readonly actOrder: boolean;
}

/** The settings one `quantization_config` records for `linears`, which must agree on them. */
function uniformSettings(linears: readonly QuantizedCheckpointLinear[]): LinearSettings {
  const named = (get: (p: PackedWeight) => unknown) =>
    linears.map((l) => [l.module, get(l.packed)] as [string, unknown]);
  const bits = uniform("bit-width", named((p) => p.bits)) as number;
  // A linear with one group per row (in_features ≤ g) fits any group size ≥ its width: the
  // config's group size is that of the linears with several groups, or −1 when none has.
  const grouped = linears.filter((l) => gptqGroupSize(l.packed) !== -1);
  const groupSize = grouped.length === 0 ? -1 : uniform(
    "group size",
    grouped.map((l) => [l.module, l.packed.groupSize] as [string, unknown]),
  ) as number;
  const symmetric = uniform("symmetric setting", named(isSymmetricPacked)) as boolean;
  const actOrder = linears.some((l) =>
    l.packed.groupIndex !== undefined && !isContiguous(l.packed.groupIndex, l.packed.groupSize)
  );
  return { bits, groupSize, symmetric, actOrder };
}

/** Scale rounding to `dtype` summed over all `linears`. */
function scalesReport(
  linears: readonly QuantizedCheckpointLinear[],
  dtype: FloatDtype,
): CheckpointReport["scales"] {
  let count = 0, changed = 0, maxRel = 0;
  for (const l of linears) {
    const r = scaleRoundingReport(l.packed.scales, dtype);
    count += r.count;
    changed += r.changed;
    maxRel = Math.max(maxRel, r.maxRelativeChange);
  }
  return { dtype, count, changed, maxRelativeChange: maxRel };
}

/** The GPTQ zero-point format to write, refusing unquantized linears (GPTQ has no `ignore`). */
function gptqCheckpointFormat(
  linears: readonly QuantizedCheckpointLinear[],
  unquantized: readonly string[],
  wanted: "auto" | GptqCheckpointFormat,
): GptqCheckpointFormat {
  if (unquantized.length > 0) {
    throw new RangeError(
      `GPTQ checkpoints quantize every linear of the decoder blocks, but ${unquantized[0]}` +
        `${unquantized.length > 1 ? ` (and ${unquantized.length - 1} more)` : ""} is not ` +
        "quantized",
    );
  }
  return wanted === "auto"
    ? (linears.every((l) => gptqFormatFor(l.packed) === "gptq") ? "gptq" : "gptq_v2")
    : wanted;
}

/** How {@linkcode checkpointTensors} stores the layout's entries. */
interface TensorEncoding {
  readonly format: CheckpointFormat;
  readonly floatDtype: FloatDtype;
  readonly symmetric: boolean;
  readonly checkpointFormat: GptqCheckpointFormat | undefined;
}

/** The layout's tensors in writing order, and the float tensors kept in float32. */
function checkpointTensors(
  layout: readonly CheckpointEntry[],
  enc: TensorEncoding,
): { tensors: EagerTensorEntry[]; keptFloat32: string[] } {
  const keptFloat32: string[] = [];
  const tensors: EagerTensorEntry[] = [];
  for (const e of layout) {
    if (e.kind === "float") {
      let dtype = enc.floatDtype;
      if (dtype === "F16" && e.values.some((x) => !Number.isFinite(Math.f16round(x)))) {
        dtype = "F32";
        keptFloat32.push(e.name);
      }
      tensors.push({ name: e.name, ...floatTensor(e.name, e.values, e.shape, dtype) });
      continue;
    }
    const codec = enc.format === "gptq"
      ? exportGptq(e.packed, { checkpointFormat: enc.checkpointFormat!, name: e.module })
      : exportCompressedTensors(e.packed, {
        scaleDtype: enc.floatDtype,
        symmetric: enc.symmetric,
        name: e.module,
      });
    tensors.push(...namedEntries(e.module, { ...codec }));
  }
  return { tensors, keptFloat32 };
}

/** The GPTQ `quantization_config` and `quantize_config.json` objects. */
function gptqConfigs(
  s: LinearSettings,
  checkpointFormat: GptqCheckpointFormat,
  dampPercent: number | undefined,
): Pick<QuantizedCheckpoint, "quantizationConfig" | "quantizeConfig"> {
  const o = {
    bits: s.bits,
    groupSize: s.groupSize,
    descAct: s.actOrder,
    sym: s.symmetric,
    checkpointFormat,
    ...(dampPercent !== undefined ? { dampPercent } : {}),
  };
  return { quantizationConfig: gptqQuantizationConfig(o), quantizeConfig: gptqQuantizeConfig(o) };
}

/** The compressed-tensors `quantization_config`, ignoring `unquantized` and the classifier. */
function compressedTensorsConfig(
  s: LinearSettings,
  unquantized: readonly string[],
): Record<string, unknown> {
  return compressedTensorsQuantizationConfig({
    bits: s.bits,
    groupSize: s.groupSize === -1 ? null : s.groupSize,
    symmetric: s.symmetric,
    actorder: s.actOrder ? "group" : null,
    ignore: [...unquantized, "lm_head"],
  });
}

/**
 * The checkpoint of a quantized model (`packed` by our linear site names, as
 * `QuantizedModel.packed`).
 *
 * @throws {RangeError} Naming the module when a linear cannot be stored in the format (bits,
 *   shape multiples, v1 with zero point 0, float16 scale overflow, act-order parts that differ
 *   in a fused tensor), when linears disagree on bits, group size or symmetry (one
 *   `quantization_config` describes them all), when no linear is quantized, or (GPTQ) when a
 *   linear other than the classifier is unquantized.
 */
export function quantizedCheckpoint(
  config: LlamaConfig,
  weights: LlamaWeights,
  packed: ReadonlyMap<string, PackedWeight>,
  options: QuantizedCheckpointOptions,
): QuantizedCheckpoint {
  const format = options.format;
  assertWeightOnly(weights, format);
  const layout = checkpointLayout(config, weights, packed);
  const linears = layout.flatMap((e) => (e.kind === "linear" ? [e] : []));
  if (linears.length === 0) {
    throw new RangeError(`no linear is quantized: nothing to store as ${format}`);
  }
  const floatDtype = resolveFloatDtype(weights, options.floatDtype);
  const unquantized = layout.flatMap((e) =>
    e.kind === "float" && e.sites ? [e.name.replace(/\.weight$/, "")] : []
  );
  const settings = uniformSettings(linears);
  const { bits, groupSize, symmetric, actOrder } = settings;
  const scales = scalesReport(linears, format === "gptq" ? "F16" : floatDtype);
  const checkpointFormat = format === "gptq"
    ? gptqCheckpointFormat(linears, unquantized, options.gptqFormat ?? "auto")
    : undefined;
  const { tensors, keptFloat32 } = checkpointTensors(layout, {
    format,
    floatDtype,
    symmetric,
    checkpointFormat,
  });
  const report: CheckpointReport = {
    format,
    ...(checkpointFormat ? { checkpointFormat } : {}),
    floatDtype,
    keptFloat32,
    scales,
    bits,
    groupSize: format === "gptq" ? groupSize : groupSize === -1 ? null : groupSize,
    symmetric,
    actOrder,
    quantizedLinears: linears.length,
    unquantized,
  };
  const torchDtype = torchDtypeName(floatDtype);
  if (format === "gptq") {
    const configs = gptqConfigs(settings, checkpointFormat!, options.dampPercent);
    return { tensors, ...configs, torchDtype, report };
  }
  const quantizationConfig = compressedTensorsConfig(settings, unquantized);
  return { tensors, quantizationConfig, torchDtype, report };
}
