/**
 * AutoAWQ "GEMM" checkpoint tensors for one linear layer: the reader (AWQ checkpoints are common
 * on the Hub) and a writer for round trips.
 *
 * | name | dtype | shape | content |
 * |---|---|---|---|
 * | `qweight` | I32 | [in, out/8] | 8 outputs per word, in AWQ's interleaved order |
 * | `qzeros` | I32 | [in/g, out/8] | zero points, same order |
 * | `scales` | F16 | [in/g, out] | per (group, output) |
 * | `bias` | F16 | [out] | only with a bias |
 *
 * Follows AutoAWQ `awq/modules/linear/gemm.py` (`WQLinear_GEMM.from_linear`) and
 * `awq/utils/packing_utils.py` (`unpack_awq`, `reverse_awq_order`, `dequantize_gemm`): nibble
 * slot `i` (bits `4i…4i+3`) of word `c` holds output `8c + AWQ_ORDER[i]` with
 * `AWQ_ORDER = [0, 2, 4, 6, 1, 3, 5, 7]`; zero points are stored as they are (no − 1); the dequant
 * is `(q − z)·scale` with group `⌊i/g⌋`. Only 4 bits, `in % g = 0` and `out % 8 = 0` (what
 * `WQLinear_GEMM` asserts); AWQ has no act-order, so a packed weight with a non-contiguous group
 * index is refused.
 *
 * @module
 */

import { type PackedWeight, unpackCodes } from "../../core/quantizer.ts";
import { checkPacked, type ImportedLinear, isContiguous, packedFromCodes } from "./packed.ts";
import { roundScales } from "./scale_rounding.ts";
import {
  expectTensor,
  floatTensor,
  type RawTensor,
  rawTensor,
  readFloats,
  readWords,
  type TensorLike,
} from "./tensor.ts";

/** Output (within a group of 8) held by nibble slot `i` of an AWQ GEMM word. */
export const AWQ_ORDER: readonly number[] = [0, 2, 4, 6, 1, 3, 5, 7];

/** The tensors of one AWQ GEMM linear (keys are the suffixes after the module name). */
export interface AwqTensors {
  readonly qweight: RawTensor;
  readonly qzeros: RawTensor;
  readonly scales: RawTensor;
  readonly bias?: RawTensor;
}

/** Packs `[rows][cols]` 4-bit values into `[rows][cols/8]` words in AWQ order. */
function packAwq(
  values: (r: number, c: number) => number,
  rows: number,
  cols: number,
): Uint32Array {
  const wpr = cols / 8;
  const out = new Uint32Array(rows * wpr);
  for (let r = 0; r < rows; r++) {
    for (let w = 0; w < wpr; w++) {
      let word = 0;
      for (let i = 0; i < 8; i++) word |= values(r, w * 8 + AWQ_ORDER[i]!) << (4 * i);
      out[r * wpr + w] = word >>> 0;
    }
  }
  return out;
}

/** Unpacks AWQ-order words `[rows][cols/8]`; calls `set(r, c, v)`. */
function unpackAwq(
  words: Uint32Array,
  rows: number,
  cols: number,
  set: (r: number, c: number, v: number) => void,
): void {
  const wpr = cols / 8;
  for (let r = 0; r < rows; r++) {
    for (let w = 0; w < wpr; w++) {
      const word = words[r * wpr + w]!;
      for (let i = 0; i < 8; i++) set(r, w * 8 + AWQ_ORDER[i]!, (word >>> (4 * i)) & 15);
    }
  }
}

/** Options of {@linkcode exportAwqGemm}. */
export interface AwqExportOptions {
  /** The layer's bias (float32, `[out]`), stored as float16. */
  readonly bias?: Float32Array;
  /** The module's name, for error messages. */
  readonly name?: string;
}

/**
 * AutoAWQ GEMM tensors of a 4-bit packed weight `[out][in]`.
 *
 * @throws {RangeError} Naming the weight when bits ≠ 4, `out % 8 ≠ 0`, the group size does not
 *   divide `in`, the weight has an act-order group index, or a scale overflows float16.
 */
export function exportAwqGemm(p: PackedWeight, options: AwqExportOptions = {}): AwqTensors {
  const name = options.name ?? "weight";
  if (p.bits !== 4) throw new RangeError(`${name}: AutoAWQ GEMM stores 4 bits only, got ${p.bits}`);
  checkPacked(name, p);
  const outF = p.rows, inF = p.cols, G = p.groupsPerRow;
  if (outF % 8 !== 0) {
    throw new RangeError(
      `${name}: AWQ GEMM packs 8 outputs per word; out_features ${outF} is not a multiple of 8`,
    );
  }
  const g = Math.min(p.groupSize, inF);
  if (inF % g !== 0) {
    throw new RangeError(`${name}: AWQ needs the group size ${g} to divide in_features ${inF}`);
  }
  if (p.groupIndex && !isContiguous(p.groupIndex, p.groupSize)) {
    throw new RangeError(
      `${name}: AWQ has no act-order; this weight's groups are not contiguous columns`,
    );
  }
  const codes = unpackCodes(p);
  const qweight = packAwq((i, o) => codes[o * inF + i]!, inF, outF);
  const qzeros = packAwq((gi, o) => p.zeros[o * G + gi]!, G, outF);
  const rounded = roundScales(`${name}.scales`, p.scales, "F16");
  const scalesT = new Float32Array(G * outF);
  for (let o = 0; o < outF; o++) {
    for (let gi = 0; gi < G; gi++) scalesT[gi * outF + o] = rounded[o * G + gi]!;
  }
  const out: AwqTensors = {
    qweight: rawTensor(`${name}.qweight`, "I32", [inF, outF / 8], new Int32Array(qweight.buffer)),
    qzeros: rawTensor(`${name}.qzeros`, "I32", [G, outF / 8], new Int32Array(qzeros.buffer)),
    scales: floatTensor(`${name}.scales`, scalesT, [G, outF], "F16"),
  };
  if (!options.bias) return out;
  if (options.bias.length !== outF) {
    throw new RangeError(`${name}.bias: ${options.bias.length} values, expected ${outF}`);
  }
  return { ...out, bias: floatTensor(`${name}.bias`, options.bias, [outF], "F16") };
}

/** Options of {@linkcode importAwqGemm}: the `quantization_config` fields the tensors need. */
export interface AwqImportOptions {
  /** `group_size` (`q_group_size`); −1 for one group per row. */
  readonly groupSize: number;
  /** `bits` (`w_bit`); only 4 is accepted. Default 4. */
  readonly bits?: number;
  /** The module's name, for error messages. */
  readonly name?: string;
}

/**
 * Reads AutoAWQ GEMM tensors back into a packed weight (scales as float32).
 *
 * @throws {RangeError} Naming the tensor when it is missing or has the wrong dtype or shape, or
 *   when the group size does not divide `in`.
 */
export function importAwqGemm(
  tensors: Readonly<Record<string, TensorLike | undefined>>,
  options: AwqImportOptions,
): ImportedLinear {
  const name = options.name ?? "weight";
  if ((options.bits ?? 4) !== 4) {
    throw new RangeError(`${name}: AutoAWQ GEMM stores 4 bits only, got ${options.bits}`);
  }
  const qw = expectTensor(`${name}.qweight`, tensors.qweight, ["I32", "U32"], [-1, -1]);
  const [inF, wpr] = qw.shape as [number, number];
  const outF = wpr * 8;
  const g = options.groupSize === -1 ? inF : options.groupSize;
  if (!(Number.isInteger(g) && g >= 1 && inF % g === 0)) {
    throw new RangeError(
      `${name}: group_size ${options.groupSize} does not divide in_features ${inF}`,
    );
  }
  const G = inF / g;
  const qz = expectTensor(`${name}.qzeros`, tensors.qzeros, ["I32", "U32"], [G, wpr]);
  const sc = expectTensor(`${name}.scales`, tensors.scales, ["F16", "F32", "BF16"], [G, outF]);
  const codes = new Uint8Array(outF * inF);
  unpackAwq(readWords(qw), inF, outF, (i, o, v) => {
    codes[o * inF + i] = v;
  });
  const zeros = new Uint8Array(outF * G);
  unpackAwq(readWords(qz), G, outF, (gi, o, v) => {
    zeros[o * G + gi] = v;
  });
  const scalesT = readFloats(`${name}.scales`, sc);
  const scales = new Float32Array(outF * G);
  for (let gi = 0; gi < G; gi++) {
    for (let o = 0; o < outF; o++) scales[o * G + gi] = scalesT[gi * outF + o]!;
  }
  const packed = packedFromCodes(codes, outF, inF, 4, g, G, scales, zeros);
  if (tensors.bias === undefined) return { packed };
  const bt = expectTensor(`${name}.bias`, tensors.bias, ["F16", "F32", "BF16"], [outF]);
  return { packed, bias: readFloats(`${name}.bias`, bt) };
}

/**
 * The `quantization_config` object of `config.json` for an AutoAWQ GEMM model (transformers
 * `AwqConfig`: quant_method, bits, group_size, zero_point, version).
 */
export function awqQuantizationConfig(
  groupSize: number,
  zeroPoint = true,
): Record<string, unknown> {
  return {
    quant_method: "awq",
    bits: 4,
    group_size: groupSize,
    zero_point: zeroPoint,
    version: "gemm",
  };
}
