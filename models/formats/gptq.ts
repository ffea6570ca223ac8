/**
 * GPTQ checkpoint tensors (AutoGPTQ / GPTQModel / transformers) for one linear layer, both ways.
 *
 * | name | dtype | shape | content |
 * |---|---|---|---|
 * | `qweight` | I32 | [in·b/32, out] | codes packed down the input dimension, LSB first |
 * | `qzeros` | I32 | [⌈in/g⌉, out·b/32] | zero points packed across outputs, LSB first |
 * | `scales` | F16 | [⌈in/g⌉, out] | per (group, output) |
 * | `g_idx` | I32 | [in] | group of every input column |
 * | `bias` | F16 | [out] | only with a bias |
 *
 * Packing follows AutoGPTQ `auto_gptq/nn_modules/qlinear/qlinear_cuda_old.py` `pack()`: for 2, 4
 * and 8 bits, 32/b fields per word; for 3 bits, 32 fields in 3 words read as one little-endian
 * 96-bit stream (fields 10 and 21 straddle words); see `bitpack.ts`. Zero points follow the
 * checkpoint format: `"gptq"` (v1, the transformers default) stores z − 1 (loaders add 1 per
 * field), `"gptq_v2"` (GPTQModel `convert_gptq_v1_to_v2_format_module`) stores z. v1 cannot
 * hold z = 0 (AutoGPTQ's packer would OR −1 = 0xFFFFFFFF into the word and corrupt its
 * neighbours), so the exporter refuses it; our asymmetric min-max gives z = 0 exactly when a
 * group has no negative weight, symmetric quantization never does.
 *
 * Deviations: codes are written as they are (AutoGPTQ's `pack()` recomputes them from the
 * dequantized float weight), so the export is exact by construction; scales are our float32
 * rounded to float16 (`scale_rounding.ts` reports the change, and `fp16ScaleChooser` avoids it).
 *
 * @module
 */

import { type PackedWeight, unpackCodes } from "../../core/quantizer.ts";
import { packStream, unpackStream } from "./bitpack.ts";
import { checkPacked, columnGroups, type ImportedLinear, packedFromCodes } from "./packed.ts";
import { roundScales } from "./scale_rounding.ts";
import {
  expectTensor,
  floatTensor,
  type RawTensor,
  rawTensor,
  readFloats,
  readIntegers,
  readWords,
  type TensorLike,
} from "./tensor.ts";

/** `"gptq"` (v1: stores z − 1) or `"gptq_v2"` (stores z). */
export type GptqCheckpointFormat = "gptq" | "gptq_v2";

/** Bit-widths GPTQ checkpoints define. */
export const GPTQ_BITS: readonly number[] = [2, 3, 4, 8];

/** The tensors of one GPTQ linear (keys are the suffixes after the module name). */
export interface GptqTensors {
  readonly qweight: RawTensor;
  readonly qzeros: RawTensor;
  readonly scales: RawTensor;
  readonly g_idx: RawTensor;
  readonly bias?: RawTensor;
}

function checkBits(name: string, bits: number): void {
  if (!GPTQ_BITS.includes(bits)) {
    throw new RangeError(`${name}: GPTQ stores 2, 3, 4 or 8 bits, got ${bits}`);
  }
}

/** Input columns (or outputs) a packed dimension must be a multiple of: 32/b, or 32 for 3 bits. */
function packMultiple(bits: number): number {
  return bits === 3 ? 32 : 32 / bits;
}

/**
 * The GPTQ `group_size` of a packed weight: its group size, or −1 when one group spans the row
 * (per-channel or per-tensor).
 */
export function gptqGroupSize(p: PackedWeight): number {
  return p.groupsPerRow === 1 && p.groupSize >= p.cols ? -1 : p.groupSize;
}

/** `"gptq"` (v1, the most widely loadable) when every zero point is ≥ 1, else `"gptq_v2"`. */
export function gptqFormatFor(p: PackedWeight): GptqCheckpointFormat {
  return p.zeros.every((z) => z >= 1) ? "gptq" : "gptq_v2";
}

/** Options of {@linkcode exportGptq}. */
export interface GptqExportOptions {
  readonly checkpointFormat: GptqCheckpointFormat;
  /** The layer's bias (float32, `[out]`), stored as float16. */
  readonly bias?: Float32Array;
  /** The module's name, for error messages. */
  readonly name?: string;
}

/**
 * GPTQ tensors of a packed weight `[out][in]`.
 *
 * @throws {RangeError} Naming the weight when bits ∉ {2, 3, 4, 8}; when `in` is not a multiple
 *   of 32/b (32 for 3 bits) or `out` not a multiple of the same; when v1 is asked for and a zero
 *   point is 0; when a scale overflows float16; when the bias length is not `out`.
 */
export function exportGptq(p: PackedWeight, options: GptqExportOptions): GptqTensors {
  const name = options.name ?? "weight";
  const b = p.bits;
  checkBits(name, b);
  checkPacked(name, p);
  const inF = p.cols, outF = p.rows, G = p.groupsPerRow;
  const m = packMultiple(b);
  if (inF % m !== 0) {
    throw new RangeError(
      `${name}: GPTQ qweight packs ${m} input columns per ${b === 3 ? "3 words" : "word"} ` +
        `at ${b} bits; in_features ${inF} is not a multiple of ${m}`,
    );
  }
  if (outF % m !== 0) {
    throw new RangeError(
      `${name}: GPTQ qzeros packs ${m} outputs per ${b === 3 ? "3 words" : "word"} ` +
        `at ${b} bits; out_features ${outF} is not a multiple of ${m}`,
    );
  }
  const v1 = options.checkpointFormat === "gptq";
  if (!v1 && options.checkpointFormat !== "gptq_v2") {
    throw new RangeError(
      `${name}: checkpointFormat must be "gptq" or "gptq_v2", got ${options.checkpointFormat}`,
    );
  }
  if (v1) {
    const i = p.zeros.indexOf(0);
    if (i >= 0) {
      throw new RangeError(
        `${name}: checkpoint_format "gptq" (v1) stores z − 1 and cannot hold zero point 0 ` +
          `(output ${Math.floor(i / G)}, group ${i % G}); export as "gptq_v2" ` +
          `(gptqFormatFor picks it) or quantize symmetrically`,
      );
    }
  }
  const codes = unpackCodes(p);
  const rowsPacked = (inF * b) / 32;
  const qweight = new Uint32Array(rowsPacked * outF);
  for (let o = 0; o < outF; o++) {
    const base = o * inF;
    packStream(inF, b, (k) => codes[base + k]!, qweight, o, outF);
  }
  const zw = (outF * b) / 32;
  const qzeros = new Uint32Array(G * zw);
  const off = v1 ? 1 : 0;
  for (let g = 0; g < G; g++) {
    packStream(outF, b, (o) => p.zeros[o * G + g]! - off, qzeros, g * zw, 1);
  }
  const rounded = roundScales(`${name}.scales`, p.scales, "F16");
  const scalesT = new Float32Array(G * outF);
  for (let o = 0; o < outF; o++) {
    for (let g = 0; g < G; g++) scalesT[g * outF + o] = rounded[o * G + g]!;
  }
  const gIdx = Int32Array.from(columnGroups(p));
  const out: GptqTensors = {
    qweight: rawTensor(
      `${name}.qweight`,
      "I32",
      [rowsPacked, outF],
      new Int32Array(qweight.buffer),
    ),
    qzeros: rawTensor(`${name}.qzeros`, "I32", [G, zw], new Int32Array(qzeros.buffer)),
    scales: floatTensor(`${name}.scales`, scalesT, [G, outF], "F16"),
    g_idx: rawTensor(`${name}.g_idx`, "I32", [inF], gIdx),
  };
  if (options.bias) {
    if (options.bias.length !== outF) {
      throw new RangeError(`${name}.bias: ${options.bias.length} values, expected ${outF}`);
    }
    return { ...out, bias: floatTensor(`${name}.bias`, options.bias, [outF], "F16") };
  }
  return out;
}

/** Options of {@linkcode importGptq}: the `quantization_config` fields the tensors need. */
export interface GptqImportOptions {
  readonly bits: number;
  /** `group_size`; −1 for one group per row. */
  readonly groupSize: number;
  readonly checkpointFormat: GptqCheckpointFormat;
  /** The module's name, for error messages. */
  readonly name?: string;
}

/**
 * Reads GPTQ tensors back into a packed weight: codes, float16 scales (as float32), zero points
 * (v1 fields + 1) and `g_idx` (kept as `groupIndex` when it is not `⌊i/g⌋`, i.e. act-order).
 * A missing `g_idx` means `⌊i/g⌋`.
 *
 * @throws {RangeError} Naming the tensor when it is missing or has the wrong dtype or shape, when
 *   a `g_idx` entry is out of range, or when a v1 zero field is 2^b − 1 (z = 2^b, not a code; the
 *   mark of a z = 0 corrupted by AutoGPTQ's packer).
 */
export function importGptq(
  tensors: Readonly<Record<string, TensorLike | undefined>>,
  options: GptqImportOptions,
): ImportedLinear {
  const name = options.name ?? "weight";
  const b = options.bits;
  checkBits(name, b);
  const qw = expectTensor(`${name}.qweight`, tensors.qweight, ["I32", "U32"], [-1, -1]);
  const [rowsPacked, outF] = qw.shape as [number, number];
  if ((rowsPacked * 32) % b !== 0 || (b === 3 && rowsPacked % 3 !== 0)) {
    throw new RangeError(
      `tensor "${name}.qweight": ${rowsPacked} packed rows is not a whole number of ${b}-bit blocks`,
    );
  }
  const inF = (rowsPacked * 32) / b;
  const g = options.groupSize === -1 ? inF : options.groupSize;
  if (!(Number.isInteger(g) && g >= 1)) {
    throw new RangeError(`${name}: group_size must be −1 or a positive integer, got ${g}`);
  }
  const G = Math.ceil(inF / g);
  const zw = (outF * b) / 32;
  if (!Number.isInteger(zw) || (b === 3 && outF % 32 !== 0)) {
    throw new RangeError(
      `tensor "${name}.qweight": out_features ${outF} cannot be packed in qzeros at ${b} bits`,
    );
  }
  const qz = expectTensor(`${name}.qzeros`, tensors.qzeros, ["I32", "U32"], [G, zw]);
  const sc = expectTensor(`${name}.scales`, tensors.scales, ["F16", "F32", "BF16"], [G, outF]);
  const words = readWords(qw);
  const codes = new Uint8Array(outF * inF);
  for (let o = 0; o < outF; o++) {
    const base = o * inF;
    unpackStream(inF, b, words, o, outF, (k, v) => {
      codes[base + k] = v;
    });
  }
  const maxq = 2 ** b - 1;
  const v1 = options.checkpointFormat === "gptq";
  const zeroWords = readWords(qz);
  const zeros = new Uint8Array(outF * G);
  for (let gi = 0; gi < G; gi++) {
    unpackStream(outF, b, zeroWords, gi * zw, 1, (o, v) => {
      const z = v1 ? v + 1 : v;
      if (z > maxq) {
        throw new RangeError(
          `tensor "${name}.qzeros": v1 field ${v} at group ${gi}, output ${o} means zero point ` +
            `${z}, outside [0, ${maxq}] (a z = 0 corrupted by a v1 packer?)`,
        );
      }
      zeros[o * G + gi] = z;
    });
  }
  const scalesT = readFloats(`${name}.scales`, sc);
  const scales = new Float32Array(outF * G);
  for (let gi = 0; gi < G; gi++) {
    for (let o = 0; o < outF; o++) scales[o * G + gi] = scalesT[gi * outF + o]!;
  }
  let groups: number[] | undefined;
  if (tensors.g_idx !== undefined) {
    const gt = expectTensor(`${name}.g_idx`, tensors.g_idx, ["I32", "I64"], [inF]);
    groups = readIntegers(`${name}.g_idx`, gt);
    groups.forEach((x, i) => {
      if (!(x >= 0 && x < G)) {
        throw new RangeError(`tensor "${name}.g_idx": entry ${i} is ${x}, expected 0…${G - 1}`);
      }
    });
  }
  const packed = packedFromCodes(codes, outF, inF, b, g, G, scales, zeros, groups);
  if (tensors.bias === undefined) return { packed };
  const bt = expectTensor(`${name}.bias`, tensors.bias, ["F16", "F32", "BF16"], [outF]);
  return { packed, bias: readFloats(`${name}.bias`, bt) };
}

/** The settings both GPTQ config objects record. */
export interface GptqConfigOptions {
  readonly bits: number;
  /** `group_size` (−1 for per-channel). */
  readonly groupSize: number;
  /** Act-order: true when any exported weight has a `groupIndex`. */
  readonly descAct: boolean;
  readonly sym: boolean;
  readonly checkpointFormat: GptqCheckpointFormat;
  /** Hessian dampening fraction (AutoGPTQ's default 0.01). */
  readonly dampPercent?: number;
  /** Default true. */
  readonly trueSequential?: boolean;
  /** Default false. */
  readonly staticGroups?: boolean;
  /** Default `model` (the weights are `model.safetensors` or its shards). */
  readonly modelFileBaseName?: string;
}

function checkConfig(o: GptqConfigOptions): void {
  checkBits("quantization_config", o.bits);
  if (!(o.groupSize === -1 || (Number.isInteger(o.groupSize) && o.groupSize >= 1))) {
    throw new RangeError(
      `quantization_config: group_size must be −1 or positive, got ${o.groupSize}`,
    );
  }
  const damp = o.dampPercent ?? 0.01;
  if (!(damp > 0 && damp < 1)) {
    throw new RangeError(`quantization_config: damp_percent must be in (0, 1), got ${damp}`);
  }
}

/**
 * `quantize_config.json` as AutoGPTQ writes it (`auto_gptq/quantization/config.py`
 * `BaseQuantizeConfig.to_dict`).
 */
export function gptqQuantizeConfig(o: GptqConfigOptions): Record<string, unknown> {
  checkConfig(o);
  return {
    bits: o.bits,
    group_size: o.groupSize,
    damp_percent: o.dampPercent ?? 0.01,
    desc_act: o.descAct,
    static_groups: o.staticGroups ?? false,
    sym: o.sym,
    true_sequential: o.trueSequential ?? true,
    model_name_or_path: null,
    model_file_base_name: o.modelFileBaseName ?? "model",
    quant_method: "gptq",
    checkpoint_format: o.checkpointFormat,
  };
}

/**
 * The `quantization_config` object of `config.json` (transformers `GPTQConfig`: bits ∈ {2, 3, 4,
 * 8}, damp_percent ∈ (0, 1)). `"gptq_v2"` is read by GPTQModel only.
 */
export function gptqQuantizationConfig(o: GptqConfigOptions): Record<string, unknown> {
  checkConfig(o);
  return {
    quant_method: "gptq",
    bits: o.bits,
    group_size: o.groupSize,
    desc_act: o.descAct,
    sym: o.sym,
    damp_percent: o.dampPercent ?? 0.01,
    true_sequential: o.trueSequential ?? true,
    static_groups: o.staticGroups ?? false,
    checkpoint_format: o.checkpointFormat,
  };
}
