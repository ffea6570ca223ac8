/**
 * compressed-tensors "pack-quantized" tensors (vLLM / llm-compressor checkpoints) for one linear
 * layer, both ways.
 *
 * | name | dtype | shape | content |
 * |---|---|---|---|
 * | `weight_packed` | I32 | [out, ⌈in·b/32⌉] | codes packed along the input columns, LSB first |
 * | `weight_scale` | F16 / BF16 / F32 | [out, n_groups] | scale (the weight dtype) |
 * | `weight_zero_point` | I32 | [⌈out·b/32⌉, n_groups] | asymmetric only; packed along dim 0 |
 * | `weight_shape` | I64 | [2] | [out, in] |
 * | `weight_g_idx` | I32 | [in] | only with `actorder: "group"` |
 *
 * Follows compressed-tensors `compressors/pack_quantized/{base,helpers}.py`
 * (`PackedQuantizationCompressor.compress`, `pack_to_int32`, `unpack_from_int32`): codes are
 * signed `q_s ∈ [−2^(b−1), 2^(b−1))` stored as the field `q_s + 2^(b−1)`, zero points likewise,
 * and the dequant is `(q_s − zp_s)·scale`; with our unsigned code `q` and zero `z`, the fields
 * are exactly `q` and `z`. A symmetric scheme stores no zero point (`zp_s = 0`, our `z = 2^(b−1)`).
 *
 * Only 4 and 8 bits are written or read: for other widths the field layout depends on the
 * library version (≤ 0.17.x packs ⌊32/b⌋ fields per word with unused high bits, 0.18.0 packs a
 * dense bitstream; the current compressor matches only 4 and 8 bits), so a file could not say
 * which layout it has.
 *
 * @module
 */

import { type PackedWeight, unpackCodes } from "../../core/quantizer.ts";
import { packStream, streamWords, unpackStream } from "./bitpack.ts";
import { checkPacked, columnGroups, isContiguous, packedFromCodes } from "./packed.ts";
import { roundScales } from "./scale_rounding.ts";
import {
  expectTensor,
  type FloatDtype,
  floatTensor,
  type RawTensor,
  rawTensor,
  readFloats,
  readIntegers,
  readWords,
  type TensorLike,
} from "./tensor.ts";

/** Bit-widths exported and imported (see the module note on versions). */
export const COMPRESSED_TENSORS_BITS: readonly number[] = [4, 8];

function checkBits(name: string, bits: number): void {
  if (!COMPRESSED_TENSORS_BITS.includes(bits)) {
    throw new RangeError(
      `${name}: compressed-tensors pack-quantized is exported for 4 or 8 bits only, got ${bits}: ` +
        `the layout of other widths changed between versions (≤ 0.17.x: ⌊32/b⌋ fields per word; ` +
        `0.18.0: a dense bitstream), so the file would not say which one it holds`,
    );
  }
}

/** The tensors of one pack-quantized linear (keys are the suffixes after the module name). */
export interface CompressedTensorsTensors {
  readonly weight_packed: RawTensor;
  readonly weight_scale: RawTensor;
  readonly weight_zero_point?: RawTensor;
  readonly weight_shape: RawTensor;
  readonly weight_g_idx?: RawTensor;
}

/** Options of {@linkcode exportCompressedTensors}. */
export interface CompressedTensorsExportOptions {
  /** dtype of `weight_scale`, the model's weight dtype (default F16). */
  readonly scaleDtype?: FloatDtype;
  /**
   * Write a symmetric scheme (no zero point). Default: symmetric exactly when every zero point is
   * 2^(b−1).
   */
  readonly symmetric?: boolean;
  /** The module's name, for error messages. */
  readonly name?: string;
}

/** Whether every zero point is 2^(b−1), i.e. the weight can be stored as a symmetric scheme. */
export function isSymmetricPacked(p: PackedWeight): boolean {
  const half = 2 ** (p.bits - 1);
  return p.zeros.every((z) => z === half);
}

/**
 * pack-quantized tensors of a packed weight `[out][in]`.
 *
 * @throws {RangeError} Naming the weight when bits ∉ {4, 8}, when `symmetric` is asked for but a
 *   zero point is not 2^(b−1), or when a scale is not finite in `scaleDtype`.
 */
export function exportCompressedTensors(
  p: PackedWeight,
  options: CompressedTensorsExportOptions = {},
): CompressedTensorsTensors {
  const name = options.name ?? "weight";
  const b = p.bits;
  checkBits(name, b);
  checkPacked(name, p);
  const outF = p.rows, inF = p.cols, G = p.groupsPerRow;
  const half = 2 ** (b - 1);
  const symmetric = options.symmetric ?? isSymmetricPacked(p);
  if (symmetric) {
    const i = p.zeros.findIndex((z) => z !== half);
    if (i >= 0) {
      throw new RangeError(
        `${name}: a symmetric scheme stores no zero point (it is ${half} at ${b} bits), but ` +
          `output ${Math.floor(i / G)}, group ${i % G} has zero point ${p.zeros[i]}`,
      );
    }
  }
  const codes = unpackCodes(p);
  const wpr = streamWords(inF, b);
  const packed = new Uint32Array(outF * wpr);
  for (let o = 0; o < outF; o++) {
    const base = o * inF;
    packStream(inF, b, (k) => codes[base + k]!, packed, o * wpr, 1);
  }
  const scales = roundScales(`${name}.weight_scale`, p.scales, options.scaleDtype ?? "F16");
  let out: CompressedTensorsTensors = {
    weight_packed: rawTensor(
      `${name}.weight_packed`,
      "I32",
      [outF, wpr],
      new Int32Array(packed.buffer),
    ),
    weight_scale: floatTensor(
      `${name}.weight_scale`,
      scales,
      [outF, G],
      options.scaleDtype ?? "F16",
    ),
    weight_shape: rawTensor(
      `${name}.weight_shape`,
      "I64",
      [2],
      new BigInt64Array([BigInt(outF), BigInt(inF)]),
    ),
  };
  if (!symmetric) {
    const zr = streamWords(outF, b);
    const zp = new Uint32Array(zr * G);
    for (let g = 0; g < G; g++) packStream(outF, b, (o) => p.zeros[o * G + g]!, zp, g, G);
    out = {
      ...out,
      weight_zero_point: rawTensor(
        `${name}.weight_zero_point`,
        "I32",
        [zr, G],
        new Int32Array(zp.buffer),
      ),
    };
  }
  if (p.groupIndex && !isContiguous(p.groupIndex, p.groupSize)) {
    out = {
      ...out,
      weight_g_idx: rawTensor(
        `${name}.weight_g_idx`,
        "I32",
        [inF],
        Int32Array.from(columnGroups(p)),
      ),
    };
  }
  return out;
}

/** Options of {@linkcode importCompressedTensors}: the scheme's `weights` arguments. */
export interface CompressedTensorsImportOptions {
  readonly bits: number;
  /** `group_size` of a `group` strategy; absent or null for `channel`. */
  readonly groupSize?: number | null;
  readonly symmetric: boolean;
  /** The module's name, for error messages. */
  readonly name?: string;
}

/**
 * Reads pack-quantized tensors back into a packed weight (scales as float32, zero points
 * 2^(b−1) for a symmetric scheme, `weight_g_idx` kept as `groupIndex` when not `⌊i/g⌋`).
 *
 * @throws {RangeError} Naming the tensor when it is missing or has the wrong dtype or shape, or
 *   when a `weight_g_idx` entry is out of range.
 */
export function importCompressedTensors(
  tensors: Readonly<Record<string, TensorLike | undefined>>,
  options: CompressedTensorsImportOptions,
): PackedWeight {
  const name = options.name ?? "weight";
  const b = options.bits;
  checkBits(name, b);
  const shapeT = expectTensor(`${name}.weight_shape`, tensors.weight_shape, ["I64", "I32"], [2]);
  const [outF, inF] = readIntegers(`${name}.weight_shape`, shapeT) as [number, number];
  if (!(outF >= 1 && inF >= 1)) {
    throw new RangeError(`tensor "${name}.weight_shape": [${outF}, ${inF}] is not a matrix shape`);
  }
  const g = options.groupSize ?? inF;
  if (!(Number.isInteger(g) && g >= 1)) {
    throw new RangeError(`${name}: group_size must be a positive integer or null, got ${g}`);
  }
  const G = Math.ceil(inF / g);
  const wpr = streamWords(inF, b);
  const wp = expectTensor(`${name}.weight_packed`, tensors.weight_packed, ["I32"], [outF, wpr]);
  const sc = expectTensor(`${name}.weight_scale`, tensors.weight_scale, ["F16", "BF16", "F32"], [
    outF,
    G,
  ]);
  const words = readWords(wp);
  const codes = new Uint8Array(outF * inF);
  for (let o = 0; o < outF; o++) {
    const base = o * inF;
    unpackStream(inF, b, words, o * wpr, 1, (k, v) => {
      codes[base + k] = v;
    });
  }
  const zeros = new Uint8Array(outF * G);
  if (options.symmetric) {
    zeros.fill(2 ** (b - 1));
  } else {
    const zr = streamWords(outF, b);
    const zt = expectTensor(`${name}.weight_zero_point`, tensors.weight_zero_point, ["I32"], [
      zr,
      G,
    ]);
    const zw = readWords(zt);
    for (let gi = 0; gi < G; gi++) {
      unpackStream(outF, b, zw, gi, G, (o, v) => {
        zeros[o * G + gi] = v;
      });
    }
  }
  let groups: number[] | undefined;
  if (tensors.weight_g_idx !== undefined) {
    const gt = expectTensor(`${name}.weight_g_idx`, tensors.weight_g_idx, ["I32", "I64"], [inF]);
    groups = readIntegers(`${name}.weight_g_idx`, gt);
    groups.forEach((x, i) => {
      if (!(x >= 0 && x < G)) {
        throw new RangeError(
          `tensor "${name}.weight_g_idx": entry ${i} is ${x}, expected 0…${G - 1}`,
        );
      }
    });
  }
  const scales = readFloats(`${name}.weight_scale`, sc);
  return packedFromCodes(codes, outF, inF, b, g, G, scales, zeros, groups);
}

/** The settings of {@linkcode compressedTensorsQuantizationConfig}. */
export interface CompressedTensorsConfigOptions {
  readonly bits: number;
  /** Group size, or null for per-channel (`strategy: "channel"`). */
  readonly groupSize: number | null;
  readonly symmetric: boolean;
  /** `"group"` when weights carry `weight_g_idx` (act-order), else null. */
  readonly actorder?: "group" | null;
  /** Modules left unquantized (default `["lm_head"]`). */
  readonly ignore?: readonly string[];
  /** Module classes or names the scheme targets (default `["Linear"]`). */
  readonly targets?: readonly string[];
}

/**
 * The `quantization_config` object of `config.json` for a weight-only pack-quantized model
 * (compressed-tensors `QuantizationConfig` / `QuantizationArgs` fields; one config group).
 */
export function compressedTensorsQuantizationConfig(
  o: CompressedTensorsConfigOptions,
): Record<string, unknown> {
  checkBits("quantization_config", o.bits);
  if (o.groupSize !== null && !(Number.isInteger(o.groupSize) && o.groupSize >= 1)) {
    throw new RangeError(
      `quantization_config: group_size must be positive or null, got ${o.groupSize}`,
    );
  }
  return {
    quant_method: "compressed-tensors",
    format: "pack-quantized",
    quantization_status: "compressed",
    ignore: [...(o.ignore ?? ["lm_head"])],
    kv_cache_scheme: null,
    global_compression_ratio: null,
    config_groups: {
      group_0: {
        targets: [...(o.targets ?? ["Linear"])],
        weights: {
          num_bits: o.bits,
          type: "int",
          symmetric: o.symmetric,
          strategy: o.groupSize === null ? "channel" : "group",
          group_size: o.groupSize,
          dynamic: false,
          actorder: o.actorder ?? null,
          observer: "minmax",
        },
        input_activations: null,
        output_activations: null,
      },
    },
  };
}
