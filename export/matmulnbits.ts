/**
 * Inputs and attributes of ONNX Runtime's `com.microsoft.MatMulNBits` for one linear layer, both
 * ways. The operator computes `Y = A · dequant(B)ᵀ` with the dequantized `B` of shape `[N, K]`
 * (`N` = out, `K` = in) and `dequant = (q − zp)·scale` per block of `block_size` consecutive `K`.
 *
 * | input | dtype | shape | content |
 * |---|---|---|---|
 * | `B` | U8 | [N, k_blocks, blob] | blob = block_size·bits/8; element k of a block at byte ⌊k·bits/8⌋, LSB first |
 * | `scales` | F32 | [N·k_blocks] | flat, as the ORT quantizer writes it |
 * | `zero_points` | U8 | [N·⌈k_blocks·bits/8⌉] | packed like B, each row starting on a byte; absent means 2^(bits−1) |
 *
 * Follows microsoft/onnxruntime `docs/ContribOperators.md` (MatMulNBits) and
 * `onnxruntime/python/tools/quantization/matmul_nbits_quantizer.py`. `K` is zero-padded to
 * `k_blocks·block_size`; the padded positions get the block's zero code, so they dequantize to 0.
 * `block_size` must be a power of two ≥ 16 and equal our group size; a per-channel weight (one
 * group per row) gets the next power of two ≥ max(K, 16) as its block. The deprecated `g_idx`
 * input is not written, so act-order weights (non-contiguous groups) are refused. Scales are
 * float32, for float32 activations.
 *
 * @module
 */

import { type PackedWeight, unpackCodes } from "../core/quantizer.ts";
import { checkPacked, isContiguous, packedFromCodes } from "../models/formats/packed.ts";
import {
  expectTensor,
  type RawTensor,
  rawTensor,
  readFloats,
  type TensorLike,
} from "../models/formats/tensor.ts";

/** Bit-widths the operator's layout is defined for (which ones a runtime runs is another matter). */
export const MATMULNBITS_BITS: readonly number[] = [2, 4, 8];

/** The node's required attributes. */
export interface MatMulNBitsAttributes {
  readonly K: number;
  readonly N: number;
  readonly bits: number;
  readonly block_size: number;
}

/** The operator's weight inputs. */
export interface MatMulNBitsTensors {
  readonly B: RawTensor;
  readonly scales: RawTensor;
  readonly zero_points?: RawTensor;
}

/** A linear layer in MatMulNBits form. */
export interface MatMulNBitsWeight {
  readonly attributes: MatMulNBitsAttributes;
  readonly tensors: MatMulNBitsTensors;
}

function isPow2(x: number): boolean {
  return Number.isInteger(x) && x >= 1 && (x & (x - 1)) === 0;
}

/**
 * The `block_size` a packed weight exports with: its group size, or for one group per row the
 * next power of two ≥ max(K, 16).
 *
 * @throws {RangeError} When the group size is not a power of two ≥ 16.
 */
export function matMulNBitsBlockSize(p: PackedWeight, name = "weight"): number {
  if (p.groupsPerRow === 1 && p.groupSize >= p.cols) {
    let b = 16;
    while (b < p.cols) b *= 2;
    return b;
  }
  if (!isPow2(p.groupSize) || p.groupSize < 16) {
    throw new RangeError(
      `${name}: MatMulNBits block_size must be a power of two ≥ 16 and equal the group size; ` +
        `group size ${p.groupSize} is not`,
    );
  }
  return p.groupSize;
}

/** Bytes per row of packed zero points. */
function zpBytesPerRow(kBlocks: number, bits: number): number {
  return Math.ceil((kBlocks * bits) / 8);
}

/** Options of {@linkcode exportMatMulNBits}. */
export interface MatMulNBitsExportOptions {
  /**
   * `"auto"` (default): omit them when every zero point is 2^(bits−1) (the operator's default);
   * `"always"`: write them; `"never"`: refuse weights whose zero points are not all 2^(bits−1).
   */
  readonly zeroPoints?: "auto" | "always" | "never";
  /** The module's name, for error messages. */
  readonly name?: string;
}

/**
 * MatMulNBits inputs of a packed weight `[N][K]`.
 *
 * @throws {RangeError} Naming the weight when bits ∉ {2, 4, 8}, the group size cannot be a
 *   block size, the weight has act-order groups, or zero points are refused but needed.
 */
export function exportMatMulNBits(
  p: PackedWeight,
  options: MatMulNBitsExportOptions = {},
): MatMulNBitsWeight {
  const name = options.name ?? "weight";
  const bits = p.bits;
  if (!MATMULNBITS_BITS.includes(bits)) {
    throw new RangeError(`${name}: MatMulNBits packs 2, 4 or 8 bits, got ${bits}`);
  }
  checkPacked(name, p);
  if (p.groupIndex && !isContiguous(p.groupIndex, p.groupSize)) {
    throw new RangeError(
      `${name}: act-order groups need MatMulNBits' deprecated g_idx input, which is not written; ` +
        `export a weight with contiguous groups`,
    );
  }
  const bs = matMulNBitsBlockSize(p, name);
  const N = p.rows, K = p.cols, G = p.groupsPerRow;
  const kBlocks = Math.ceil(K / bs);
  if (kBlocks !== G) {
    throw new RangeError(
      `${name}: ${G} groups per row, but K ${K} in blocks of ${bs} makes ${kBlocks}`,
    );
  }
  const half = 2 ** (bits - 1);
  const mode = options.zeroPoints ?? "auto";
  const allHalf = p.zeros.every((z) => z === half);
  if (mode === "never" && !allHalf) {
    throw new RangeError(
      `${name}: zero points are needed (not all ${half}) but zeroPoints is "never"`,
    );
  }
  const blob = (bs * bits) / 8;
  const perByte = 8 / bits;
  const codes = unpackCodes(p);
  const B = new Uint8Array(N * kBlocks * blob);
  for (let n = 0; n < N; n++) {
    for (let kb = 0; kb < kBlocks; kb++) {
      const zero = p.zeros[n * G + kb]!;
      const base = (n * kBlocks + kb) * blob;
      for (let j = 0; j < bs; j++) {
        const k = kb * bs + j;
        const q = k < K ? codes[n * K + k]! : zero;
        const at = base + Math.floor(j / perByte);
        B[at] = B[at]! | (q << ((j % perByte) * bits));
      }
    }
  }
  const tensors: MatMulNBitsTensors = {
    B: rawTensor(`${name}.B`, "U8", [N, kBlocks, blob], B),
    scales: rawTensor(`${name}.scales`, "F32", [N * kBlocks], Float32Array.from(p.scales)),
  };
  const attributes = { K, N, bits, block_size: bs };
  if (mode === "never" || (mode === "auto" && allHalf)) return { attributes, tensors };
  const zb = zpBytesPerRow(kBlocks, bits);
  const zp = new Uint8Array(N * zb);
  for (let n = 0; n < N; n++) {
    for (let kb = 0; kb < kBlocks; kb++) {
      const at = n * zb + Math.floor(kb / perByte);
      zp[at] = zp[at]! | (p.zeros[n * G + kb]! << ((kb % perByte) * bits));
    }
  }
  return {
    attributes,
    tensors: { ...tensors, zero_points: rawTensor(`${name}.zero_points`, "U8", [N * zb], zp) },
  };
}

/**
 * Reads MatMulNBits inputs back into a packed weight (group size `block_size`, or `K` when one
 * block spans the row; padded positions dropped). `B` may be `[N, k_blocks, blob]` or flat;
 * `scales` and `zero_points` may be flat or 2-D.
 *
 * @throws {RangeError} Naming the input when it is missing or has the wrong dtype or size, or an
 *   attribute when it is out of range.
 */
export function importMatMulNBits(
  tensors: Readonly<Record<string, TensorLike | undefined>>,
  attributes: MatMulNBitsAttributes,
  name = "weight",
): PackedWeight {
  const { K, N, bits, block_size: bs } = attributes;
  if (!MATMULNBITS_BITS.includes(bits)) {
    throw new RangeError(`${name}: MatMulNBits attribute bits is ${bits}, expected 2, 4 or 8`);
  }
  if (!isPow2(bs) || bs < 16) {
    throw new RangeError(`${name}: attribute block_size ${bs} is not a power of two ≥ 16`);
  }
  if (!(Number.isInteger(K) && K >= 1 && Number.isInteger(N) && N >= 1)) {
    throw new RangeError(`${name}: attributes K ${K} and N ${N} must be positive integers`);
  }
  const kBlocks = Math.ceil(K / bs);
  const blob = (bs * bits) / 8;
  const flat = (key: string, t: TensorLike | undefined, dtypes: string[], n: number) => {
    if (t === undefined) throw new RangeError(`tensor "${name}.${key}" is missing`);
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (count !== n) {
      throw new RangeError(
        `tensor "${name}.${key}": ${count} elements (shape [${t.shape.join(", ")}]), expected ${n}`,
      );
    }
    return expectTensor(`${name}.${key}`, t, dtypes, t.shape.map(() => -1));
  };
  const Bt = flat("B", tensors.B, ["U8"], N * kBlocks * blob);
  const B = new Uint8Array(Bt.data.buffer, Bt.data.byteOffset, Bt.data.byteLength);
  const perByte = 8 / bits;
  const mask = 2 ** bits - 1;
  const codes = new Uint8Array(N * K);
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      const kb = Math.floor(k / bs), j = k % bs;
      const byte = B[(n * kBlocks + kb) * blob + Math.floor(j / perByte)]!;
      codes[n * K + k] = (byte >>> ((j % perByte) * bits)) & mask;
    }
  }
  const scales = readFloats(
    `${name}.scales`,
    flat("scales", tensors.scales, ["F32", "F16"], N * kBlocks),
  );
  const zeros = new Uint8Array(N * kBlocks).fill(2 ** (bits - 1));
  if (tensors.zero_points !== undefined) {
    const zb = zpBytesPerRow(kBlocks, bits);
    const zt = flat("zero_points", tensors.zero_points, ["U8"], N * zb);
    const zp = new Uint8Array(zt.data.buffer, zt.data.byteOffset, zt.data.byteLength);
    for (let n = 0; n < N; n++) {
      for (let kb = 0; kb < kBlocks; kb++) {
        zeros[n * kBlocks + kb] =
          (zp[n * zb + Math.floor(kb / perByte)]! >>> ((kb % perByte) * bits)) &
          mask;
      }
    }
  }
  return packedFromCodes(codes, N, K, bits, Math.min(bs, K), kBlocks, scales, zeros);
}
