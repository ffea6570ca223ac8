/**
 * The uniform weight quantizer every method shares (GPTQ's conventions, IST-DASLab/gptq `quant.py`
 * `Quantizer`), and its packed storage form.
 *
 * A weight matrix `[rows][cols]` (`[out][in]`) is cut into quantization groups: the whole tensor,
 * one output row ("per-channel"), or `groupSize` contiguous input columns of a row ("per-group").
 * When `groupSize` does not divide `cols`, the last group of each row holds the remaining
 * `cols mod groupSize` columns (GPTQ's convention: its groups are column slices that stop at the
 * matrix edge; OmniQuant instead pads with zeros). stories260K's `down` (172 inputs) at g32 has
 * five groups of 32 and one of 12.
 * Each group gets a float32 `scale` and an integer `zero`; a value `x` becomes the code
 * `q = clamp(roundHalfEven(x / scale) + zero, 0, 2^bits − 1)` and reads back as
 * `x̂ = scale · (q − zero)`.
 *
 * Two ways to choose `(scale, zero)`, both recorded in every result row:
 * - `asymmetric` (default; the GPTQ `Quantizer.find_params` convention): the range is
 *   `[min(min x, 0), max(max x, 0)]` (zero always representable), `scale = (xmax − xmin)/(2^b − 1)`,
 *   `zero = round(−xmin / scale)`; an all-zero group uses the range (−1, +1).
 * - `symmetric` (absmax, SmoothQuant convention): `scale = max|x| / (2^(b−1) − 1)` and
 *   `zero = 2^(b−1)`, so signed codes `q − zero` lie in `[−(2^(b−1) − 1), 2^(b−1) − 1]`;
 *   an all-zero group uses scale 1.
 *
 * Rounding is round-half-to-even (as `torch.round`). Arithmetic is float32, as the reference's
 * on float32 tensors: `xmax − xmin`, the scale, `−xmin / scale` and every `x / scale` are each
 * rounded to float32 before the next step (so a quotient that float32 rounds onto a tie rounds
 * as torch does).
 *
 * @module
 */

/** Smallest and largest supported weight bit-widths. */
export const MIN_BITS = 2;
/** Largest supported weight bit-width. */
export const MAX_BITS = 8;

const F32_MIN_SUBNORMAL = 1.401298464324817e-45;

/** How a weight matrix is divided into groups that share one scale and zero. */
export type Granularity = "tensor" | "channel" | "group";

/** A complete description of a uniform weight quantizer. */
export interface QuantizerSpec {
  /** Bits per weight, an integer in [2, 8]. */
  readonly bits: number;
  readonly granularity: Granularity;
  /** Input columns per group; required (and only used) when granularity is `group`. */
  readonly groupSize?: number;
  /** Symmetric absmax (true) or asymmetric min-max with zero in range (false). */
  readonly symmetric: boolean;
}

/**
 * Quantization codes of a matrix, bit-packed for kernels.
 *
 * Each row is packed on its own into `wordsPerRow` little-endian 32-bit words holding
 * `floor(32 / bits)` codes each (code `j` of a word sits at bit `j · bits`), so codes never straddle
 * a word: 2-bit → 16 per word, 3-bit → 10 (30 of 32 bits used), 4-bit → 8, 8-bit → 4.
 * `scales` and `zeros` are `[rows][groupsPerRow]`; a tensor-wide quantizer repeats its one pair.
 */
export interface PackedWeight {
  readonly bits: number;
  readonly rows: number;
  readonly cols: number;
  /** Columns per group (`cols` for per-channel and per-tensor); the last group may be shorter. */
  readonly groupSize: number;
  readonly groupsPerRow: number;
  readonly wordsPerRow: number;
  /** `rows * wordsPerRow` packed words. */
  readonly words: Uint32Array;
  /** `rows * groupsPerRow` float32 scales. */
  readonly scales: Float32Array;
  /** `rows * groupsPerRow` integer zero points in [0, 2^bits − 1]. */
  readonly zeros: Uint8Array;
  /**
   * Group of every column when groups are not contiguous (GPTQ act-order forms groups in the
   * permuted column order, like the reference's `g_idx`); absent means `floor(col / groupSize)`.
   */
  readonly groupIndex?: Uint32Array;
}

/** Round to the nearest integer, ties to even (like `torch.round` and numpy). */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d < 0.5) return f;
  if (d > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1;
}

/**
 * Check a spec against a matrix shape; throws `RangeError` naming the offending field.
 * Returns the effective group size in columns.
 */
export function validateSpec(spec: QuantizerSpec, cols: number): number {
  if (!Number.isInteger(spec.bits) || spec.bits < MIN_BITS || spec.bits > MAX_BITS) {
    throw new RangeError(
      `Cannot quantize to ${spec.bits} bits: bits must be an integer in [${MIN_BITS}, ${MAX_BITS}]`,
    );
  }
  if (spec.granularity !== "group") return cols;
  const g = spec.groupSize;
  if (g === undefined || !Number.isInteger(g) || g < 1) {
    throw new RangeError(`Group size must be a positive integer, got ${g}`);
  }
  return g;
}

/** The range `[lo, hi]` of `x[from..to)`, widened to include zero. */
export function rangeWithZero(
  x: ArrayLike<number>,
  from: number,
  to: number,
): { lo: number; hi: number } {
  let lo = 0;
  let hi = 0;
  for (let i = from; i < to; i++) {
    const v = x[i]!;
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  return { lo, hi };
}

/**
 * Scale and zero point for values in `[lo, hi]` (`lo ≤ 0 ≤ hi`): symmetric absmax
 * (`scale = max|x| / (2^(b−1) − 1)`, zero `2^(b−1)`) or asymmetric min-max with the zero point
 * rounded into the grid. An all-zero range gives scale 1 (symmetric) or the range [−1, 1].
 */
export function paramsForRange(
  lo: number,
  hi: number,
  bits: number,
  symmetric: boolean,
): { scale: number; zero: number } {
  const maxq = 2 ** bits - 1;
  if (symmetric) {
    const m = Math.max(-lo, hi);
    const half = 2 ** (bits - 1);
    const scale = m === 0 ? 1 : Math.fround(m / (half - 1));
    return { scale: scale === 0 ? 1 : scale, zero: half };
  }
  if (lo === 0 && hi === 0) {
    lo = -1;
    hi = 1;
  }
  // float32 arithmetic, as GPTQ's Quantizer on float32 tensors: (xmax − xmin) and the quotients
  // are each rounded to float32. A range below float32's smallest subnormal would give scale 0;
  // use that subnormal instead.
  const scale = Math.fround(Math.fround(hi - lo) / maxq) || F32_MIN_SUBNORMAL;
  const zero = Math.min(maxq, Math.max(0, roundHalfEven(Math.fround(-lo / scale))));
  return { scale, zero };
}

/**
 * Chooses `(scale, zero)` for the group `x[from..to)`: min-max ({@linkcode groupParams}) by
 * default; methods pass clipping searches.
 */
export type GroupParamsChooser = (
  x: ArrayLike<number>,
  from: number,
  to: number,
  bits: number,
  symmetric: boolean,
) => { scale: number; zero: number };

/** Scale and zero point for one group of values `x[from..to)` (strided by 1). */
export function groupParams(
  x: ArrayLike<number>,
  from: number,
  to: number,
  bits: number,
  symmetric: boolean,
): { scale: number; zero: number } {
  const { lo, hi } = rangeWithZero(x, from, to);
  return paramsForRange(lo, hi, bits, symmetric);
}

/**
 * The clipping search methods share: the range `[r·lo, r·hi]` of `x[from..to)` (zero kept in
 * range) for the ratio `r` among `ratios` with the least `Σ |fround(x̂) − x|^norm`; the min-max
 * range (`r = 1`) is tried first and wins ties. GPTQ's MSE grid and EAQuant's clipping search are
 * instances.
 */
export function clipRangeSearch(
  x: ArrayLike<number>,
  from: number,
  to: number,
  bits: number,
  symmetric: boolean,
  ratios: Iterable<number>,
  norm: number,
): { scale: number; zero: number } {
  const maxq = 2 ** bits - 1;
  const { lo, hi } = rangeWithZero(x, from, to);
  let best = paramsForRange(lo, hi, bits, symmetric);
  if (lo === 0 && hi === 0) return best;
  let bestErr = rangeError(x, from, to, best.scale, best.zero, maxq, norm, Infinity);
  for (const r of ratios) {
    // The shrunk range in float32, as GPTQ's `p * xmin` on a float32 tensor.
    const cand = paramsForRange(Math.fround(r * lo), Math.fround(r * hi), bits, symmetric);
    const err = rangeError(x, from, to, cand.scale, cand.zero, maxq, norm, bestErr);
    if (err < bestErr) {
      bestErr = err;
      best = cand;
    }
  }
  return best;
}

/** `Σ |fround(scale·(q − zero)) − x|^norm` over `x[from..to)`, stopping once it reaches `bound`. */
function rangeError(
  x: ArrayLike<number>,
  from: number,
  to: number,
  scale: number,
  zero: number,
  maxq: number,
  norm: number,
  bound: number,
): number {
  let err = 0;
  for (let i = from; i < to; i++) {
    const v = x[i]!;
    const d = Math.abs(Math.fround(scale * (quantizeValue(v, scale, zero, maxq) - zero)) - v);
    if (d !== 0) err += Math.pow(d, norm);
    if (err >= bound) return err;
  }
  return err;
}

/** The code of one value under `(scale, zero)`. */
export function quantizeValue(x: number, scale: number, zero: number, maxq: number): number {
  const q = roundHalfEven(Math.fround(x / scale)) + zero;
  return q < 0 ? 0 : q > maxq ? maxq : q;
}

/** Result of quantizing a matrix: the packed codes and the dequantized float32 values. */
export interface QuantizedMatrix {
  readonly packed: PackedWeight;
  /** `scale · (q − zero)` for every element, row-major like the input. */
  readonly dequantized: Float32Array;
}

/**
 * Quantize a row-major `[rows][cols]` matrix with round-to-nearest.
 *
 * @example Per-channel 4-bit
 * ```ts
 * import { quantizeMatrix } from "./quantizer.ts";
 * const w = new Float32Array([0.5, -1, 0.25, 1]);
 * const { packed } = quantizeMatrix(w, 2, 2, { bits: 4, granularity: "channel", symmetric: false });
 * if (packed.scales.length !== 2) throw new Error("one scale per row");
 * ```
 */
export function quantizeMatrix(
  data: Float32Array,
  rows: number,
  cols: number,
  spec: QuantizerSpec,
  choose: GroupParamsChooser = groupParams,
): QuantizedMatrix {
  if (data.length !== rows * cols) {
    throw new RangeError(`Matrix has ${data.length} values, expected ${rows}×${cols}`);
  }
  const groupSize = validateSpec(spec, cols);
  const groupsPerRow = Math.ceil(cols / groupSize);
  for (let i = 0; i < data.length; i++) {
    if (!Number.isFinite(data[i]!)) {
      throw new RangeError(
        `Cannot quantize: value ${data[i]} at row ${Math.floor(i / cols)}, column ${i % cols}`,
      );
    }
  }
  const maxq = 2 ** spec.bits - 1;
  const scales = new Float32Array(rows * groupsPerRow);
  const zeros = new Uint8Array(rows * groupsPerRow);
  if (spec.granularity === "tensor") {
    const p = choose(data, 0, data.length, spec.bits, spec.symmetric);
    scales.fill(p.scale);
    zeros.fill(p.zero);
  } else {
    for (let r = 0; r < rows; r++) {
      for (let g = 0; g < groupsPerRow; g++) {
        const from = r * cols + g * groupSize;
        const to = r * cols + Math.min(cols, (g + 1) * groupSize);
        const p = choose(data, from, to, spec.bits, spec.symmetric);
        scales[r * groupsPerRow + g] = p.scale;
        zeros[r * groupsPerRow + g] = p.zero;
      }
    }
  }
  const codes = new Uint8Array(rows * cols);
  const dequantized = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const gi = r * groupsPerRow + Math.floor(c / groupSize);
      const s = scales[gi]!;
      const z = zeros[gi]!;
      const q = quantizeValue(data[r * cols + c]!, s, z, maxq);
      codes[r * cols + c] = q;
      dequantized[r * cols + c] = s * (q - z);
    }
  }
  const packed = packCodes(codes, rows, cols, spec.bits, { groupSize, scales, zeros });
  return { packed, dequantized };
}

/** Codes per 32-bit word for a bit-width. */
export function codesPerWord(bits: number): number {
  return Math.floor(32 / bits);
}

/** Pack `[rows][cols]` codes (each < 2^bits) into the {@linkcode PackedWeight} layout. */
export function packCodes(
  codes: Uint8Array,
  rows: number,
  cols: number,
  bits: number,
  params: { groupSize: number; scales: Float32Array; zeros: Uint8Array },
): PackedWeight {
  const per = codesPerWord(bits);
  const wordsPerRow = Math.ceil(cols / per);
  const words = new Uint32Array(rows * wordsPerRow);
  const maxq = 2 ** bits - 1;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) {
      const q = codes[r * cols + c]!;
      if (q > maxq) throw new RangeError(`Code ${q} at (${r}, ${c}) does not fit in ${bits} bits`);
      const w = r * wordsPerRow + Math.floor(c / per);
      words[w] = (words[w]! | (q << ((c % per) * bits))) >>> 0;
    }
  }
  return {
    bits,
    rows,
    cols,
    groupSize: params.groupSize,
    groupsPerRow: Math.ceil(cols / params.groupSize),
    wordsPerRow,
    words,
    scales: params.scales,
    zeros: params.zeros,
  };
}

/** Unpack all codes of a {@linkcode PackedWeight} into a `[rows][cols]` byte array. */
export function unpackCodes(p: PackedWeight): Uint8Array {
  const per = codesPerWord(p.bits);
  const mask = 2 ** p.bits - 1;
  const out = new Uint8Array(p.rows * p.cols);
  for (let r = 0; r < p.rows; r++) {
    for (let c = 0; c < p.cols; c++) {
      const word = p.words[r * p.wordsPerRow + Math.floor(c / per)]!;
      out[r * p.cols + c] = (word >>> ((c % per) * p.bits)) & mask;
    }
  }
  return out;
}

/** Reconstruct float32 weights `scale · (q − zero)` from a packed matrix. */
export function dequantizePacked(p: PackedWeight): Float32Array {
  const codes = unpackCodes(p);
  const out = new Float32Array(p.rows * p.cols);
  for (let r = 0; r < p.rows; r++) {
    for (let c = 0; c < p.cols; c++) {
      const g = p.groupIndex ? p.groupIndex[c]! : Math.floor(c / p.groupSize);
      const gi = r * p.groupsPerRow + g;
      out[r * p.cols + c] = p.scales[gi]! * (codes[r * p.cols + c]! - p.zeros[gi]!);
    }
  }
  return out;
}

/**
 * Storage cost in bits per weight, counting codes, float32 scales, 8-bit zeros and, when present,
 * a 32-bit group index per column (the reference's `g_idx`).
 */
export function bitsPerWeight(p: PackedWeight): number {
  const gIdx = p.groupIndex ? p.groupIndex.length * 32 : 0;
  return (p.words.length * 32 + p.scales.length * 32 + p.zeros.length * 8 + gIdx) /
    (p.rows * p.cols);
}
